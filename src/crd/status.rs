//! `AttestationStatus`: the attestation health of one Azure Local VM, mirrored from Azure.
#![allow(clippy::duplicated_attributes)] // kube's derive takes one printcolumn(...) per column

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, CredentialsRef};

/// Which VM to watch, how often, and when its attestation counts as stale.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "guestattestation.dev",
    version = "v1alpha1",
    kind = "AttestationStatus",
    plural = "attestationstatuses",
    shortname = "ats",
    category = "guestattestation",
    namespaced,
    cel,
    doc = "The attestation health of one Azure Local VM, mirrored from Azure: Healthy, Unhealthy or Unknown with the secure-boot, certificate and boot-integrity fields. A Running VM whose attestation is older than spec.staleAfter (8h) is Unknown (Stale).",
    status = "AttestationStatusStatus",
    printcolumn(
        name = "Machine",
        type_ = "string",
        json_path = ".status.machineName",
        description = "Name of the Arc machine"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.health",
        description = "Healthy, Unhealthy or Unknown"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        description = "Why the health is what it is"
    ),
    printcolumn(
        name = "Secure-Boot",
        type_ = "string",
        json_path = ".status.attestSecureBootEnabled",
        description = "Secure Boot as attested"
    ),
    printcolumn(
        name = "Boot-Integrity",
        type_ = "string",
        json_path = ".status.bootIntegrityValidated",
        description = "Boot integrity as attested"
    ),
    printcolumn(
        name = "Attested",
        type_ = "date",
        json_path = ".status.attestedTime",
        description = "When Azure last validated the attestation"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AttestationStatusSpec {
    /// ARM resource ID of the Arc machine of the VM:
    /// /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.HybridCompute/machines/<name>.
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::SHAPE_RULE).message("spec.machineId must be an ARM resource ID of the form /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.HybridCompute/machines/<machine name>"),
        validation = kube::core::Rule::new(super::ids::MACHINE_RULE).message("spec.machineId must name a Microsoft.HybridCompute/machines resource (the Arc machine of the VM): /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.HybridCompute/machines/<machine name>")
    )]
    #[schemars(length(min = 1, max = 512))]
    pub machine_id: String,

    /// How often Azure is read, as a duration (`30m`, `1h`); between 1m and 24h.
    #[serde(default = "default_refresh_interval")]
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::DURATION_SHAPE_RULE).message("spec.refreshInterval must be a duration such as 30s, 5m or 1h30m"),
        validation = kube::core::Rule::new("!self.matches('^([0-9]+(s|m|h))+$') || (duration(self) >= duration('1m') && duration(self) <= duration('24h'))").message("spec.refreshInterval must be between 1m and 24h")
    )]
    #[schemars(length(min = 2, max = 32))]
    pub refresh_interval: String,

    /// How old the attestation of a Running VM may be before its health turns Unknown (Stale);
    /// between 1m and 168h. The product documentation's rule is 8h.
    #[serde(default = "default_stale_after")]
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::DURATION_SHAPE_RULE).message("spec.staleAfter must be a duration such as 8h or 90m"),
        validation = kube::core::Rule::new("!self.matches('^([0-9]+(s|m|h))+$') || (duration(self) >= duration('1m') && duration(self) <= duration('168h'))").message("spec.staleAfter must be between 1m and 168h")
    )]
    #[schemars(length(min = 2, max = 32))]
    pub stale_after: String,

    /// Secret with a service principal (`tenantId`, `clientId`, `clientSecret`) in this
    /// namespace. When absent, the operator's own identity is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
}

fn default_refresh_interval() -> String {
    "30m".to_owned()
}

fn default_stale_after() -> String {
    "8h".to_owned()
}

/// The attestation health of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Health {
    /// Secure Boot enabled, vTPM enabled, and boot integrity verification succeeded.
    Healthy,
    /// Secure Boot or vTPM not enabled, or boot integrity verification did not succeed.
    Unhealthy,
    /// Not known: not reported, stale, unreadable, or Azure unavailable.
    Unknown,
}

/// Observed state of an AttestationStatus.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationStatusStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Fresh (the data is current) and Ready (the health is Healthy and fresh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,

    /// Healthy, Unhealthy or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,

    /// Why the health is what it is: Attested, SecureBootDisabled, TpmDisabled,
    /// BootIntegrityNotValidated, CertificateNotValidated, AzureReportsUnhealthy, Stale,
    /// NotReported, StatusUnavailable, InvalidTimestamp, VmNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub reason: Option<String>,

    /// A human-readable explanation of the health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,

    /// The name of the Arc machine (the last segment of spec.machineId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub machine_name: Option<String>,

    /// Azure's own healthStatus: Pending, Healthy, Unhealthy or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub health_status: Option<String>,

    /// Secure Boot as attested: Enabled, Disabled or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub attest_secure_boot_enabled: Option<String>,

    /// Whether the attestation certificate was validated: Valid, Invalid or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub attestation_cert_validated: Option<String>,

    /// Whether boot integrity was validated: Valid, Invalid or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub boot_integrity_validated: Option<String>,

    /// The Linux kernel version reported by the extension ("0" on Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub linux_kernel_version: Option<String>,

    /// The error message Azure reported with the attestation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub error_message: Option<String>,

    /// When the attestation token was last validated by the relying party service, parsed (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_time: Option<Time>,

    /// The timestamp exactly as Azure reported it (e.g. `6/12/2024 8:49:33 PM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub raw_timestamp: Option<String>,

    /// The VM's power state (Running, Stopped, Deallocated, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub power_state: Option<String>,

    /// When Azure was last read for the values shown. Unchanged reads do not move it (the
    /// operator writes status only when something changed); Fresh tells whether reads succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_time: Option<Time>,

    /// The VM's security type (TrustedLaunch, ConfidentialVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub security_type: Option<String>,

    /// Whether the VM has its virtual TPM enabled (securityProfile.enableTPM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_enabled: Option<bool>,

    /// Whether the VM has Secure Boot enabled (securityProfile.uefiSettings.secureBootEnabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot_enabled: Option<bool>,
}
