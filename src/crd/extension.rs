//! `GuestAttestationExtension`: the GuestAttestation extension on one Arc machine.
#![allow(clippy::duplicated_attributes)] // kube's derive takes one printcolumn(...) per column

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, CredentialsRef, DeletionPolicy, LocalObjectReference, ManagementPolicy,
};

/// The machine, where the attestation endpoints come from, and the extension settings.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "guestattestation.dev",
    version = "v1alpha1",
    kind = "GuestAttestationExtension",
    shortname = "gae",
    category = "guestattestation",
    namespaced,
    cel,
    doc = "The GuestAttestation extension on the Arc machine of one Trusted Launch Azure Local VM: prerequisites checked, settings rendered as documented, deployed, kept in place, and removed on delete.",
    status = "GuestAttestationExtensionStatus",
    printcolumn(
        name = "Machine",
        type_ = "string",
        json_path = ".status.machineName",
        description = "Name of the Arc machine"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.provisioningState",
        description = "The extension's provisioningState"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.typeHandlerVersion",
        description = "The extension's typeHandlerVersion"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.clusterId) != has(self.providerRef)").message("exactly one of spec.clusterId and spec.providerRef must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct GuestAttestationExtensionSpec {
    /// ARM resource ID of the VM's Arc machine:
    /// /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.HybridCompute/machines/<name>.
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::SHAPE_RULE).message("spec.machineId must be an ARM resource ID of the form /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.HybridCompute/machines/<machine name>"),
        validation = kube::core::Rule::new(super::ids::MACHINE_RULE).message("spec.machineId must name a Microsoft.HybridCompute/machines resource (the Arc machine of the VM): /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.HybridCompute/machines/<machine name>"),
        validation = kube::core::Rule::new("self == oldSelf").message("spec.machineId is immutable; create a new resource for another machine")
    )]
    #[schemars(length(min = 1, max = 512))]
    pub machine_id: String,

    /// ARM resource ID of the Azure Local cluster whose isolatedVmAttestationConfiguration gives
    /// the MAA and relying-party endpoints and whose id and aadTenantId go into the settings.
    /// Exclusive with providerRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::SHAPE_RULE).message("spec.clusterId must be an ARM resource ID of the form /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>"),
        validation = kube::core::Rule::new(super::ids::CLUSTER_RULE).message("spec.clusterId must name a Microsoft.AzureStackHCI/clusters resource: /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>")
    )]
    #[schemars(length(min = 1, max = 512))]
    pub cluster_id: Option<String>,

    /// An AttestationProvider in this namespace whose status.attestUri is the MAA endpoint; its
    /// clusterRef supplies the relying-party endpoint, cluster id and tenant. Exclusive with clusterId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<LocalObjectReference>,

    /// The extension settings (rendered with the documented case-sensitive keys).
    #[serde(default)]
    pub settings: ExtensionSettings,

    /// The extension publisher. Default: chosen from the VM's OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<Publisher>,

    /// Pin the extension's typeHandlerVersion (e.g. 1.0 or 1.0.1.30). Default: the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9]+([.][0-9]+){1,3}$')").message("spec.typeHandlerVersion must be a dotted version such as 1.0 or 1.0.1.30"))]
    #[schemars(length(min = 3, max = 32))]
    pub type_handler_version: Option<String>,

    /// Let Azure upgrade the extension automatically.
    #[serde(default = "default_true")]
    pub enable_automatic_upgrade: bool,

    /// Azure region of the extension. Default: the machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-zA-Z0-9 ]{1,64}$')").message("spec.location must be an Azure region name such as eastus"))]
    #[schemars(length(min = 1, max = 64))]
    pub location: Option<String>,

    /// Create and own the AttestationStatus of this machine.
    #[serde(default = "default_true")]
    pub create_status: bool,

    /// Manage writes to Azure; Observe only reports.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// What deleting this resource does to the extension: Delete (default) removes it.
    #[serde(default = "default_delete")]
    pub deletion_policy: DeletionPolicy,

    /// Secret with a service principal in this namespace; the operator's identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
}

fn default_true() -> bool {
    true
}

fn default_delete() -> DeletionPolicy {
    DeletionPolicy::Delete
}

/// Publishers of the GuestAttestation extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Publisher {
    /// Windows VMs.
    #[serde(rename = "Microsoft.Azure.Security.WindowsAttestation")]
    WindowsAttestation,
    /// Linux VMs.
    #[serde(rename = "Microsoft.Azure.Security.LinuxAttestation")]
    LinuxAttestation,
}

/// Typed extension settings; booleans are rendered as the strings "true"/"false".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSettings {
    /// MaaSettings.maaTenantName.
    #[serde(default = "default_tenant_name")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9_-]+$')").message("spec.settings.maaTenantName must be letters, digits, '_' or '-', like DUMMY_Tenant_NewConfig"))]
    #[schemars(length(min = 1, max = 128))]
    pub maa_tenant_name: String,

    /// AscSettings.ascReportingFrequency: whole hours from 1H to 8H (documented default 4H).
    /// Longer than 8H would make every VM look stale under the 8-hour rule.
    #[serde(default = "default_frequency")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-8]H$')").message("spec.settings.ascReportingFrequency must be a whole number of hours from 1H to 8H, such as 4H"))]
    #[schemars(length(min = 2, max = 3))]
    pub asc_reporting_frequency: String,

    /// useCustomToken.
    #[serde(default = "default_true")]
    pub use_custom_token: bool,

    /// disableAlerts.
    #[serde(default)]
    pub disable_alerts: bool,
}

impl Default for ExtensionSettings {
    fn default() -> Self {
        Self {
            maa_tenant_name: default_tenant_name(),
            asc_reporting_frequency: default_frequency(),
            use_custom_token: true,
            disable_alerts: false,
        }
    }
}

fn default_tenant_name() -> String {
    "DUMMY_Tenant_NewConfig".to_owned()
}

fn default_frequency() -> String {
    "4H".to_owned()
}

/// Observed state of a GuestAttestationExtension.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestAttestationExtensionStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// PrerequisitesMet, Deployed and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,

    /// The name of the Arc machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub machine_name: Option<String>,

    /// The extension's provisioningState (Creating, Updating, Succeeded, Failed, Deleting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub provisioning_state: Option<String>,

    /// The extension's typeHandlerVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub type_handler_version: Option<String>,

    /// The extension's instanceView.status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub instance_view_message: Option<String>,

    /// SHA-256 (hex) of what was last applied (settings, publisher, type, version pin, automatic
    /// upgrade), to tell a spec change from a change made outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub settings_hash: Option<String>,

    /// The long-running operation in flight (its Azure-AsyncOperation or Location URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub operation_url: Option<String>,

    /// When the operation in flight started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_started_time: Option<Time>,
}
