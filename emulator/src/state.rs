//! The emulated world: identities, clusters, machines, VM instances, extensions, attestation
//! providers and their policies, and in-flight operations. Public `*Spec` types are the seeding
//! vocabulary (Rust API, control API and seed files share them).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An Azure Local cluster (`Microsoft.AzureStackHCI/clusters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Full ARM id, `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.AzureStackHCI/clusters/{name}`.
    pub id: String,
    /// Azure region, e.g. `eastus`.
    pub location: String,
    /// `properties.aadTenantId`.
    pub aad_tenant_id: String,
    /// `properties.aadClientId` (optional).
    #[serde(default)]
    pub aad_client_id: Option<String>,
    /// `properties.isolatedVmAttestationConfiguration`; `None` leaves it out of the response.
    #[serde(default)]
    pub isolated_vm_attestation_configuration: Option<IsolatedVmAttestationConfiguration>,
}

/// The cluster's attestation configuration (read-only in ARM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolatedVmAttestationConfiguration {
    /// ARM id of the `Microsoft.Attestation/attestationProviders` resource.
    pub attestation_resource_id: String,
    /// Relying party service endpoint.
    pub relying_party_service_endpoint: String,
    /// MAA endpoint (the provider's attestUri).
    pub attestation_service_endpoint: String,
}

/// An Azure Local VM instance (`.../virtualMachineInstances/default`) of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VmSpec {
    /// `securityProfile.securityType`: `TrustedLaunch`, `ConfidentialVM`, or `None` (standard).
    pub security_type: Option<String>,
    /// `securityProfile.enableTPM`.
    #[serde(alias = "enableTPM")]
    pub enable_tpm: bool,
    /// `securityProfile.uefiSettings.secureBootEnabled`.
    pub secure_boot_enabled: bool,
    /// Network interface ARM ids (`networkProfile.networkInterfaces[].id`).
    pub network_interfaces: Vec<String>,
    /// `status.powerState` (`Running`, `Stopped`, `Deallocated`, ...).
    pub power_state: String,
    /// `storageProfile.osDisk.osType` (`Windows` or `Linux`).
    pub os_type: String,
    /// Custom location id for `extendedLocation` (derived from the machine when `None`).
    pub custom_location: Option<String>,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            security_type: Some("TrustedLaunch".into()),
            enable_tpm: true,
            secure_boot_enabled: true,
            network_interfaces: Vec::new(),
            power_state: "Running".into(),
            os_type: "Windows".into(),
            custom_location: None,
        }
    }
}

/// Properties of `attestationStatus/default` (all strings, as the RP returns them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AttestationStatusProps {
    /// `Enabled` / `Disabled` / `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attest_secure_boot_enabled: Option<String>,
    /// `Valid` / `Invalid` / `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_cert_validated: Option<String>,
    /// `Valid` / `Invalid` / `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_integrity_validated: Option<String>,
    /// `"0"` on Windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux_kernel_version: Option<String>,
    /// `Pending` / `Healthy` / `Unhealthy` / `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    /// Raw timestamp string, sent exactly as given (e.g. `6/12/2024 8:49:33 PM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Error message; serialised as `null` when absent, like the live RP.
    pub error_message: Option<String>,
    /// `Succeeded`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// CVM only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attest_hardware_platform: Option<String>,
    /// CVM only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attest_disk_security_encryption_type: Option<String>,
}

impl AttestationStatusProps {
    /// A healthy report with the given raw timestamp.
    pub fn healthy(timestamp: &str) -> Self {
        Self {
            attest_secure_boot_enabled: Some("Enabled".into()),
            attestation_cert_validated: Some("Valid".into()),
            boot_integrity_validated: Some("Valid".into()),
            linux_kernel_version: Some("0".into()),
            health_status: Some("Healthy".into()),
            timestamp: Some(timestamp.into()),
            error_message: None,
            provisioning_state: Some("Succeeded".into()),
            attest_hardware_platform: None,
            attest_disk_security_encryption_type: None,
        }
    }
}

/// How the guest extension's provisioning ends on a machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExtensionBehavior {
    /// Operations end `Succeeded`. The default.
    #[default]
    Succeed,
    /// Operations end `Failed` with this error (also shown in `instanceView.status`).
    Fail {
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// Operations never finish (`Creating` / `Updating` / `Deleting` forever).
    Stuck,
}

/// A `Microsoft.Attestation/attestationProviders` resource created directly (not via ARM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// Full ARM id.
    pub id: String,
    /// Region.
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Base64 (standard) DER certificates for `policySigningCertificates`; non-empty makes the
    /// provider Isolated.
    #[serde(default)]
    pub policy_signing_certificates: Vec<String>,
}

/// An extension placed directly on a machine (e.g. one installed "by hand").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    /// Extension name (e.g. `GuestAttestation`).
    pub name: String,
    /// Publisher.
    pub publisher: String,
    /// Extension type.
    #[serde(rename = "type")]
    pub extension_type: String,
    /// Handler version (default `1.0.1.30`).
    #[serde(default)]
    pub type_handler_version: Option<String>,
    /// `enableAutomaticUpgrade`.
    #[serde(default)]
    pub enable_automatic_upgrade: Option<bool>,
    /// Public settings.
    #[serde(default)]
    pub settings: Value,
    /// Provisioning state (default `Succeeded`).
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// Changes made to an extension "outside" the operator (drift).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionPatch {
    /// New public settings.
    pub settings: Option<Value>,
    /// New provisioning state.
    pub provisioning_state: Option<String>,
    /// New handler version.
    pub type_handler_version: Option<String>,
    /// New `enableAutomaticUpgrade`.
    pub enable_automatic_upgrade: Option<bool>,
    /// New publisher.
    pub publisher: Option<String>,
    /// New `instanceView.status.message`.
    pub status_message: Option<String>,
}

/// A federated credential on an app registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FederatedCredential {
    /// Required assertion `iss`, if any.
    pub issuer: Option<String>,
    /// Required assertion `sub`, if any.
    pub subject: Option<String>,
}

/// An attestation policy as stored by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPolicy {
    /// Policy text.
    pub text: String,
    /// The policy JWS as received (or generated for the default).
    pub jws: String,
    /// Whether the JWS was signed (RS256 with x5c).
    pub signed: bool,
    /// Whether this is the built-in default (never set, or reset).
    pub is_default: bool,
}

// ----- internal model -----

#[derive(Debug, Default)]
pub(crate) struct Client {
    pub(crate) secrets: Vec<String>,
    pub(crate) federated: Vec<FederatedCredential>,
}

#[derive(Debug, Default)]
pub(crate) struct Tenant {
    /// Keyed by lower-case client id.
    pub(crate) clients: HashMap<String, Client>,
}

#[derive(Debug, Default)]
pub(crate) struct ManagedIdentities {
    /// `Some(client id)` when a system-assigned identity is enabled.
    pub(crate) system: Option<String>,
    /// User-assigned identities (client ids, lower case).
    pub(crate) user: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) spec: ClusterSpec,
    pub(crate) cloud_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct InstanceView {
    pub(crate) code: String,
    pub(crate) level: String,
    pub(crate) display_status: String,
    pub(crate) message: String,
    pub(crate) time: SystemTime,
}

#[derive(Debug, Clone)]
#[allow(clippy::struct_field_names)] // `extension_type` mirrors the JSON `type`
pub(crate) struct Extension {
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) tags: Option<Value>,
    pub(crate) publisher: String,
    pub(crate) extension_type: String,
    pub(crate) type_handler_version: String,
    pub(crate) enable_automatic_upgrade: Option<bool>,
    pub(crate) auto_upgrade_minor_version: bool,
    pub(crate) settings: Value,
    pub(crate) force_update_tag: Option<String>,
    pub(crate) provisioning_state: String,
    pub(crate) instance_view: Option<InstanceView>,
    pub(crate) pending_op: Option<String>,
    /// Virtual time the last operation succeeded.
    pub(crate) succeeded_at: Option<SystemTime>,
}

impl Extension {
    pub(crate) fn is_guest_attestation(&self) -> bool {
        self.extension_type.eq_ignore_ascii_case("GuestAttestation")
    }
}

#[derive(Debug, Clone)]
pub(crate) enum StatusSource {
    /// Set through the API; rendered verbatim.
    Manual(AttestationStatusProps),
    /// Reported by the simulated guest at this virtual time.
    Simulated {
        at: SystemTime,
        props: AttestationStatusProps,
    },
}

#[derive(Debug)]
pub(crate) struct GuestState {
    /// The extension inside the guest still reports (can be stopped to make the status stale).
    pub(crate) reporting: bool,
    /// The simulation is off because a test set the status by hand.
    pub(crate) manual: bool,
    pub(crate) status: Option<StatusSource>,
    /// Virtual time of the last simulated report.
    pub(crate) last_report: Option<SystemTime>,
    /// Whether the guest was able to report at the last sync.
    pub(crate) was_active: bool,
}

impl Default for GuestState {
    fn default() -> Self {
        Self {
            reporting: true,
            manual: false,
            status: None,
            last_report: None,
            was_active: false,
        }
    }
}

#[derive(Debug)]
#[allow(clippy::struct_field_names)] // `vm_id` is the ARM property name
pub(crate) struct Vm {
    pub(crate) spec: VmSpec,
    pub(crate) compromised: bool,
    pub(crate) vm_id: String,
}

#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) os_type: String,
    pub(crate) vm: Option<Vm>,
    /// Keyed by lower-case extension name.
    pub(crate) extensions: BTreeMap<String, Extension>,
    pub(crate) behavior: Option<ExtensionBehavior>,
    pub(crate) guest: GuestState,
}

#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) id: String,
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) tags: Option<Value>,
    pub(crate) public_network_access: String,
    pub(crate) tpm_attestation_authentication: String,
    /// DER certificates from `policySigningCertificates` (non-empty = Isolated).
    pub(crate) signing_certs: Vec<Vec<u8>>,
    /// Keyed by lower-case attestation type.
    pub(crate) policies: HashMap<String, StoredPolicy>,
    /// Self-signed instance certificate (DER) for `/certs` and the `kid`.
    pub(crate) instance_cert: Vec<u8>,
    pub(crate) kid: String,
}

impl Provider {
    pub(crate) fn is_isolated(&self) -> bool {
        !self.signing_certs.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpStatus {
    InProgress,
    Succeeded,
    Failed { code: String, message: String },
}

#[derive(Debug)]
pub(crate) struct Operation {
    pub(crate) id: String,
    pub(crate) kind: OpKind,
    /// Lower-case machine key and extension key.
    pub(crate) machine: String,
    pub(crate) extension: String,
    pub(crate) subscription: String,
    pub(crate) location: String,
    pub(crate) api_version: String,
    pub(crate) started: SystemTime,
    pub(crate) observed: u32,
    pub(crate) behavior: ExtensionBehavior,
    pub(crate) status: OpStatus,
    pub(crate) ended: Option<SystemTime>,
}

/// Everything behind the APIs.
#[derive(Debug, Default)]
pub(crate) struct World {
    /// Keyed by lower-case tenant id.
    pub(crate) tenants: HashMap<String, Tenant>,
    pub(crate) managed_identities: ManagedIdentities,
    /// Keyed by lower-case ARM id.
    pub(crate) clusters: BTreeMap<String, Cluster>,
    pub(crate) machines: BTreeMap<String, Machine>,
    pub(crate) providers: BTreeMap<String, Provider>,
    /// Keyed by operation id.
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) default_behavior: ExtensionBehavior,
}

impl World {
    /// Finds a provider by name (names are unique across the emulator, like DNS labels).
    pub(crate) fn provider_by_name(&self, name: &str) -> Option<&Provider> {
        self.providers
            .values()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn provider_by_name_mut(&mut self, name: &str) -> Option<&mut Provider> {
        self.providers
            .values_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// A parsed `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArmId {
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) name: String,
}

impl ArmId {
    /// Parses an id of the given namespace and type (case-insensitive); tolerates a missing
    /// leading slash.
    pub(crate) fn parse(id: &str, namespace: &str, rtype: &str) -> Option<Self> {
        let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
        match segs.as_slice() {
            [s, sub, r, rg, p, ns, t, name]
                if s.eq_ignore_ascii_case("subscriptions")
                    && r.eq_ignore_ascii_case("resourceGroups")
                    && p.eq_ignore_ascii_case("providers")
                    && ns.eq_ignore_ascii_case(namespace)
                    && t.eq_ignore_ascii_case(rtype) =>
            {
                Some(Self {
                    subscription: (*sub).to_owned(),
                    resource_group: (*rg).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => None,
        }
    }

    /// Canonical id string.
    pub(crate) fn render(&self, namespace: &str, rtype: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{namespace}/{rtype}/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// Lower-case key.
    pub(crate) fn key(&self, namespace: &str, rtype: &str) -> String {
        self.render(namespace, rtype).to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_id_parse_is_case_insensitive() {
        let id = ArmId::parse(
            "subscriptions/S1/resourcegroups/RG/providers/microsoft.hybridcompute/MACHINES/vm1",
            "Microsoft.HybridCompute",
            "machines",
        )
        .expect("parse");
        assert_eq!(id.name, "vm1");
        assert_eq!(
            id.render("Microsoft.HybridCompute", "machines"),
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.HybridCompute/machines/vm1"
        );
        assert!(ArmId::parse("/subscriptions/s/resourceGroups/r", "a", "b").is_none());
    }
}
