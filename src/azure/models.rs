//! Typed ARM models at the api-versions of CONTRACTS.md (no I/O). Readers are tolerant: unknown fields are
//! ignored, every response field is optional, enum values compare case-insensitively and unknown values are kept
//! (`Other`), because Azure enums are extensible and the Azure Local RP re-cases some of them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

macro_rules! azure_enum {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $wire:literal $(| $alias:literal)* ),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
            /// A value this client does not know (Azure enums are extensible).
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $(
                    if s.eq_ignore_ascii_case($wire) $(|| s.eq_ignore_ascii_case($alias))* {
                        return Self::$variant;
                    }
                )+
                Self::Other(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

azure_enum!(
    /// ARM `provisioningState`.
    ProvisioningState {
        /// Done.
        Succeeded = "Succeeded",
        /// Ended in failure.
        Failed = "Failed",
        /// Cancelled.
        Canceled = "Canceled" | "Cancelled",
        /// Running.
        InProgress = "InProgress",
        /// Accepted, not started.
        Accepted = "Accepted",
        /// Being created.
        Creating = "Creating",
        /// Being updated.
        Updating = "Updating",
        /// Being deleted.
        Deleting = "Deleting",
    }
);

impl ProvisioningState {
    /// `Succeeded`, `Failed` or `Canceled`: the resource is not changing any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

azure_enum!(
    /// `Enabled` / `Disabled` settings (`publicNetworkAccess`, `tpmAttestationAuthentication`).
    Toggle {
        /// On.
        Enabled = "Enabled",
        /// Off.
        Disabled = "Disabled",
    }
);

azure_enum!(
    /// An attestation provider's `properties.status`.
    ProviderStatus {
        /// Usable.
        Ready = "Ready",
        /// Not yet usable.
        NotReady = "NotReady",
        /// Broken.
        Error = "Error",
    }
);

azure_enum!(
    /// An attestation provider's `properties.trustModel`.
    TrustModel {
        /// Entra-authorized policy management; unsigned policies allowed.
        Aad = "AAD",
        /// Signed policies required (the provider has policy signing certificates).
        Isolated = "Isolated",
    }
);

azure_enum!(
    /// An Arc machine's agent status.
    ArcMachineStatus {
        /// The agent is connected.
        Connected = "Connected",
        /// The agent has not reported recently.
        Disconnected = "Disconnected",
        /// The agent reports an error.
        Error = "Error",
        /// The agent's credentials expired.
        Expired = "Expired",
    }
);

azure_enum!(
    /// An Azure Local VM's power state.
    PowerState {
        /// Deallocated.
        Deallocated = "Deallocated",
        /// Deallocating.
        Deallocating = "Deallocating",
        /// Running.
        Running = "Running",
        /// Starting.
        Starting = "Starting",
        /// Stopped.
        Stopped = "Stopped",
        /// Stopping.
        Stopping = "Stopping",
        /// Paused.
        Paused = "Paused",
        /// Saved.
        Saved = "Saved",
        /// Unknown.
        Unknown = "Unknown",
    }
);

azure_enum!(
    /// A VM's security type.
    SecurityType {
        /// Trusted Launch (vTPM + Secure Boot).
        TrustedLaunch = "TrustedLaunch",
        /// Confidential VM.
        ConfidentialVm = "ConfidentialVM",
    }
);

azure_enum!(
    /// `attestationStatus.properties.healthStatus`.
    HealthStatus {
        /// Not yet evaluated.
        Pending = "Pending",
        /// Secure Boot and vTPM on, boot integrity verified.
        Healthy = "Healthy",
        /// Secure Boot or vTPM off, or boot integrity not verified.
        Unhealthy = "Unhealthy",
        /// No status available.
        Unknown = "Unknown",
    }
);

azure_enum!(
    /// `attestationCertValidated` / `bootIntegrityValidated`.
    Validity {
        /// Valid.
        Valid = "Valid",
        /// Invalid.
        Invalid = "Invalid",
        /// Unknown.
        Unknown = "Unknown",
    }
);

azure_enum!(
    /// `attestSecureBootEnabled`.
    SecureBootState {
        /// Secure Boot on.
        Enabled = "Enabled",
        /// Secure Boot off.
        Disabled = "Disabled",
        /// Unknown.
        Unknown = "Unknown",
    }
);

azure_enum!(
    /// An instance-view status level (the spec says `Info`; real payloads say `Information`).
    StatusLevel {
        /// Informational.
        Info = "Info" | "Information",
        /// Warning.
        Warning = "Warning",
        /// Error.
        Error = "Error",
    }
);

/// ARM `systemData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    /// Creation time (RFC 3339).
    pub created_at: Option<String>,
    /// Last modification time (RFC 3339).
    pub last_modified_at: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Microsoft.Attestation/attestationProviders (2021-06-01)

/// An attestation provider as ARM returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProvider {
    /// The ARM id.
    pub id: Option<String>,
    /// The provider name.
    pub name: Option<String>,
    /// `Microsoft.Attestation/attestationProviders`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The region.
    pub location: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: AttestationProviderProperties,
    /// ARM system data.
    pub system_data: Option<SystemData>,
}

impl AttestationProvider {
    /// Usable: `status` is `Ready` and `attestUri` is set.
    pub fn is_ready(&self) -> bool {
        self.properties.status == Some(ProviderStatus::Ready)
            && self
                .properties
                .attest_uri
                .as_deref()
                .is_some_and(|u| !u.is_empty())
    }
}

/// `StatusResult`: an attestation provider's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderProperties {
    /// `AAD` or `Isolated`.
    pub trust_model: Option<TrustModel>,
    /// `Ready`, `NotReady` or `Error`.
    pub status: Option<ProviderStatus>,
    /// The data-plane base URL, e.g. `https://myprov.eus.attest.azure.net`.
    pub attest_uri: Option<String>,
    /// Public network access.
    pub public_network_access: Option<Toggle>,
    /// TPM attestation authentication.
    pub tpm_attestation_authentication: Option<Toggle>,
}

/// The PUT body of an attestation provider (`AttestationServiceCreationParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderCreate {
    /// The region.
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Properties (always sent, possibly `{}`: the spec requires them).
    #[serde(default)]
    pub properties: AttestationProviderCreateProperties,
}

/// `AttestationServiceCreationSpecificParams`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderCreateProperties {
    /// Public network access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<Toggle>,
    /// TPM attestation authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_attestation_authentication: Option<Toggle>,
    /// Policy signing certificates; their presence makes the provider Isolated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_signing_certificates: Option<JsonWebKeySet>,
}

/// The PATCH body of an attestation provider (`AttestationServicePatchParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderPatch {
    /// Tags (replaces all tags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<AttestationProviderPatchProperties>,
}

/// `AttestationServicePatchSpecificParams`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderPatchProperties {
    /// Public network access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<Toggle>,
    /// TPM attestation authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_attestation_authentication: Option<Toggle>,
}

/// A JSON Web Key Set (RFC 7517): policy signing certificates, and an MAA instance's `/certs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonWebKeySet {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<JsonWebKey>,
}

/// One JSON Web Key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonWebKey {
    /// Key type, `RSA`.
    pub kty: String,
    /// Use, `sig`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, e.g. `RS256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Certificate chain, standard base64 DER, leaf first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
    /// RSA modulus (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Microsoft.AzureStackHCI/clusters (2025-10-01)

/// An Azure Local cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The ARM id (the extension's `clusterId`).
    pub id: Option<String>,
    /// The cluster name.
    pub name: Option<String>,
    /// `Microsoft.AzureStackHCI/clusters`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The region (the extension's location).
    pub location: Option<String>,
    /// Properties.
    #[serde(default)]
    pub properties: ClusterProperties,
}

/// The cluster properties the operator uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProperties {
    /// Provisioning state.
    pub provisioning_state: Option<ProvisioningState>,
    /// The cluster's Entra application id.
    pub aad_client_id: Option<String>,
    /// The cluster's Entra tenant (the extension's `clusterAadTenantId`).
    pub aad_tenant_id: Option<String>,
    /// Attestation configuration for isolated VMs (read-only).
    pub isolated_vm_attestation_configuration: Option<IsolatedVmAttestationConfiguration>,
}

/// `IsolatedVmAttestationConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolatedVmAttestationConfiguration {
    /// The attestation provider's ARM id.
    pub attestation_resource_id: Option<String>,
    /// The region's relying-party endpoint (the extension's `ascReportingEndpoint`).
    pub relying_party_service_endpoint: Option<String>,
    /// The MAA endpoint (the extension's `maaEndpoint`).
    pub attestation_service_endpoint: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Microsoft.HybridCompute/machines (2025-01-13)

/// An Arc machine (an Azure Local VM's Arc projection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The ARM id.
    pub id: Option<String>,
    /// The machine name.
    pub name: Option<String>,
    /// `Microsoft.HybridCompute/machines`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The region.
    pub location: Option<String>,
    /// The machine kind (`HCI` for Azure Local VMs).
    pub kind: Option<String>,
    /// Properties.
    #[serde(default)]
    pub properties: MachineProperties,
}

/// The machine properties the operator uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineProperties {
    /// Provisioning state.
    pub provisioning_state: Option<ProvisioningState>,
    /// Agent status.
    pub status: Option<ArcMachineStatus>,
    /// `Windows` or `Linux`.
    pub os_type: Option<String>,
    /// OS name.
    pub os_name: Option<String>,
    /// The VM's SMBIOS id.
    pub vm_id: Option<String>,
    /// Arc agent version.
    pub agent_version: Option<String>,
    /// Last agent status change (RFC 3339).
    pub last_status_change: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Microsoft.AzureStackHCI/virtualMachineInstances (2025-06-01-preview)

/// An Azure Local VM instance (`.../virtualMachineInstances/default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInstance {
    /// The ARM id.
    pub id: Option<String>,
    /// `default`.
    pub name: Option<String>,
    /// `Microsoft.AzureStackHCI/virtualMachineInstances`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The custom location.
    pub extended_location: Option<ExtendedLocation>,
    /// Properties.
    #[serde(default)]
    pub properties: VmInstanceProperties,
}

/// An extended location.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedLocation {
    /// The custom location id.
    pub name: Option<String>,
    /// `CustomLocation`.
    #[serde(rename = "type")]
    pub location_type: Option<String>,
}

/// The VM instance properties the operator uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInstanceProperties {
    /// Provisioning state.
    pub provisioning_state: Option<ProvisioningState>,
    /// Security settings.
    pub security_profile: Option<SecurityProfile>,
    /// Runtime status.
    pub status: Option<VmInstanceStatus>,
    /// SMBIOS GUID (set for Trusted Launch and confidential VMs).
    pub vm_id: Option<String>,
    /// Instance view.
    pub instance_view: Option<VmInstanceView>,
    /// Network interfaces (attestation needs at least one).
    pub network_profile: Option<NetworkProfile>,
}

/// A VM's network profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// The attached network interfaces.
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterfaceRef>,
}

/// A reference to a network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterfaceRef {
    /// Its ARM id.
    pub id: Option<String>,
}

/// A VM's security profile. Keys are read case-insensitively (`enableTPM` in the spec, `enableTpm` from the CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfile {
    /// vTPM on.
    #[serde(rename = "enableTPM")]
    pub enable_tpm: Option<bool>,
    /// UEFI settings.
    pub uefi_settings: Option<UefiSettings>,
    /// `TrustedLaunch` or `ConfidentialVM`.
    pub security_type: Option<SecurityType>,
}

/// UEFI settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UefiSettings {
    /// Secure Boot on.
    pub secure_boot_enabled: Option<bool>,
}

fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn bool_ci<E: serde::de::Error>(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, E> {
    match get_ci(map, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        // some RPs send booleans as strings
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(E::custom(format_args!("{key} is not a boolean"))),
    }
}

impl<'de> Deserialize<'de> for SecurityProfile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = Map::deserialize(d)?;
        let uefi_settings = match get_ci(&map, "uefiSettings") {
            None => None,
            Some(Value::Object(u)) => Some(UefiSettings {
                secure_boot_enabled: bool_ci(u, "secureBootEnabled")?,
            }),
            Some(_) => return Err(D::Error::custom("uefiSettings is not an object")),
        };
        let security_type = match get_ci(&map, "securityType") {
            None => None,
            Some(Value::String(s)) => Some(SecurityType::from(s.as_str())),
            Some(_) => return Err(D::Error::custom("securityType is not a string")),
        };
        Ok(SecurityProfile {
            enable_tpm: bool_ci(&map, "enableTPM")?,
            uefi_settings,
            security_type,
        })
    }
}

impl SecurityProfile {
    /// Secure Boot on.
    pub fn secure_boot_enabled(&self) -> Option<bool> {
        self.uefi_settings
            .as_ref()
            .and_then(|u| u.secure_boot_enabled)
    }
}

/// A VM instance's runtime status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInstanceStatus {
    /// Error code.
    pub error_code: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Power state.
    pub power_state: Option<PowerState>,
    /// Provisioning status.
    pub provisioning_status: Option<ProvisioningStatus>,
}

/// A VM instance's provisioning status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningStatus {
    /// The operation id.
    pub operation_id: Option<String>,
    /// `Succeeded`, `Failed` or `InProgress`.
    pub status: Option<ProvisioningState>,
}

/// A VM instance's instance view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInstanceView {
    /// The VM agent.
    pub vm_agent: Option<VmAgent>,
}

/// The VM agent's instance view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAgent {
    /// Agent version.
    pub vm_config_agent_version: Option<String>,
    /// Statuses.
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

/// An instance-view status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    /// Status code.
    pub code: Option<String>,
    /// Level.
    pub level: Option<StatusLevel>,
    /// Short text.
    pub display_status: Option<String>,
    /// Details.
    pub message: Option<String>,
    /// Time (RFC 3339).
    pub time: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// .../virtualMachineInstances/default/attestationStatus/default (2025-06-01-preview)

/// A VM's attestation status (`attestationStatus/default`; all properties read-only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAttestationStatus {
    /// The ARM id.
    pub id: Option<String>,
    /// `default`.
    pub name: Option<String>,
    /// The resource type (Azure re-cases it).
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// Properties.
    #[serde(default)]
    pub properties: VmAttestationStatusProperties,
    /// ARM system data.
    pub system_data: Option<SystemData>,
}

/// `AttestationStatusProperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAttestationStatusProperties {
    /// Secure Boot as attested.
    pub attest_secure_boot_enabled: Option<SecureBootState>,
    /// Whether the attestation certificate validated.
    pub attestation_cert_validated: Option<Validity>,
    /// Whether boot integrity validated.
    pub boot_integrity_validated: Option<Validity>,
    /// Linux kernel version (`"0"` on Windows).
    pub linux_kernel_version: Option<String>,
    /// Health.
    pub health_status: Option<HealthStatus>,
    /// When the relying party last validated a token: a free-form string (`2023/11/10 9:48`,
    /// `6/12/2024 8:49:33 PM`), parsed by the status controller.
    pub timestamp: Option<String>,
    /// Error message (may be null).
    pub error_message: Option<String>,
    /// Provisioning state.
    pub provisioning_state: Option<ProvisioningState>,
    /// Hardware platform (confidential VMs only).
    pub attest_hardware_platform: Option<String>,
    /// Disk encryption type (confidential VMs only).
    pub attest_disk_security_encryption_type: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Microsoft.HybridCompute/machines/extensions (2025-01-13)

/// A machine extension as ARM returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineExtension {
    /// The ARM id.
    pub id: Option<String>,
    /// The extension name, e.g. `GuestAttestation`.
    pub name: Option<String>,
    /// `Microsoft.HybridCompute/machines/extensions`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The region.
    pub location: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: MachineExtensionProperties,
}

/// A machine extension's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineExtensionProperties {
    /// Forces an update when changed.
    pub force_update_tag: Option<String>,
    /// e.g. `Microsoft.Azure.Security.WindowsAttestation`.
    pub publisher: Option<String>,
    /// e.g. `GuestAttestation`.
    #[serde(rename = "type")]
    pub extension_type: Option<String>,
    /// Handler version.
    pub type_handler_version: Option<String>,
    /// Automatic upgrade.
    pub enable_automatic_upgrade: Option<bool>,
    /// Minor-version upgrade.
    pub auto_upgrade_minor_version: Option<bool>,
    /// Public settings (the GuestAttestation `AttestationConfig`).
    pub settings: Option<Value>,
    /// Provisioning state (a free string in the spec).
    pub provisioning_state: Option<ProvisioningState>,
    /// Instance view.
    pub instance_view: Option<MachineExtensionInstanceView>,
}

/// A machine extension's instance view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineExtensionInstanceView {
    /// Extension name.
    pub name: Option<String>,
    /// Extension type.
    #[serde(rename = "type")]
    pub extension_type: Option<String>,
    /// Handler version.
    pub type_handler_version: Option<String>,
    /// Status.
    pub status: Option<InstanceViewStatus>,
}

/// The PUT body of a machine extension (`MachineExtension` without read-only fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineExtensionSpec {
    /// The region of the Azure Local instance.
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    pub properties: MachineExtensionSpecProperties,
}

/// The writable properties of a machine extension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineExtensionSpecProperties {
    /// Forces an update when changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_update_tag: Option<String>,
    /// Publisher.
    pub publisher: String,
    /// Extension type.
    #[serde(rename = "type")]
    pub extension_type: String,
    /// Handler version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_handler_version: Option<String>,
    /// Automatic upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_automatic_upgrade: Option<bool>,
    /// Minor-version upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_minor_version: Option<bool>,
    /// Public settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

/// The outcome of deleting a resource that is not a long-running operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 200: it existed and is gone.
    Deleted,
    /// 202: accepted; it will be gone shortly.
    Accepted,
    /// 204 or 404: it did not exist.
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shared/` lies beside the repository (CI lays it out the same way).
    const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/azure-specs");

    fn example(path: &str) -> Option<Value> {
        let text = std::fs::read_to_string(format!("{SPECS}/{path}")).ok()?;
        let v: Value = serde_json::from_str(&text).unwrap();
        Some(v["responses"]["200"]["body"].clone())
    }

    #[test]
    fn enums_are_case_insensitive_and_open() {
        assert_eq!(
            ProvisioningState::from("succeeded"),
            ProvisioningState::Succeeded
        );
        assert_eq!(
            ProvisioningState::from("Cancelled"),
            ProvisioningState::Canceled
        );
        assert!(ProvisioningState::from("SUCCEEDED").is_terminal());
        assert!(!ProvisioningState::from("Creating").is_terminal());
        assert_eq!(
            ProvisioningState::from("Migrating"),
            ProvisioningState::Other("Migrating".into())
        );
        assert_eq!(StatusLevel::from("Information"), StatusLevel::Info);
        let s: SecurityType = serde_json::from_str("\"confidentialvm\"").unwrap();
        assert_eq!(s, SecurityType::ConfidentialVm);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"ConfidentialVM\"");
    }

    #[test]
    fn enable_tpm_is_read_case_insensitively() {
        for key in ["enableTPM", "enableTpm", "EnableTPM", "enabletpm"] {
            let json = format!(
                r#"{{"{key}": true, "UefiSettings": {{"secureBootEnabled": true}}, "securityType": "TrustedLaunch"}}"#
            );
            let p: SecurityProfile = serde_json::from_str(&json).unwrap();
            assert_eq!(p.enable_tpm, Some(true), "{key}");
            assert_eq!(p.secure_boot_enabled(), Some(true));
            assert_eq!(p.security_type, Some(SecurityType::TrustedLaunch));
        }
        let p: SecurityProfile = serde_json::from_str(r#"{"enableTPM": null}"#).unwrap();
        assert_eq!(p.enable_tpm, None);
        assert!(serde_json::from_str::<SecurityProfile>(r#"{"enableTPM": 3}"#).is_err());
        // written back with the spec's casing
        let out = serde_json::to_value(&p).unwrap();
        assert!(out.get("enableTPM").is_some());
    }

    #[test]
    fn provider_create_body_always_has_properties() {
        let body = AttestationProviderCreate {
            location: "eastus".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"location": "eastus", "properties": {}})
        );
    }

    #[test]
    fn extension_spec_serializes_without_read_only_fields() {
        let spec = MachineExtensionSpec {
            location: "eastus".into(),
            tags: BTreeMap::new(),
            properties: MachineExtensionSpecProperties {
                publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
                extension_type: "GuestAttestation".into(),
                enable_automatic_upgrade: Some(true),
                settings: Some(
                    serde_json::json!({"AttestationConfig": {"useCustomToken": "true"}}),
                ),
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({
                "location": "eastus",
                "properties": {
                    "publisher": "Microsoft.Azure.Security.WindowsAttestation",
                    "type": "GuestAttestation",
                    "enableAutomaticUpgrade": true,
                    "settings": {"AttestationConfig": {"useCustomToken": "true"}}
                }
            })
        );
    }

    #[test]
    fn spec_examples_parse() {
        // The examples are in ../shared; skip quietly where it is not laid out (the parsing is also covered by
        // the inline fixtures below).
        if let Some(body) = example("azurestackhci/StackHCI/2025-10-01/examples/GetCluster.json") {
            let c: Cluster = serde_json::from_value(body).unwrap();
            let iso = c.properties.isolated_vm_attestation_configuration.unwrap();
            assert!(
                iso.attestation_service_endpoint
                    .unwrap()
                    .starts_with("https://")
            );
        }
        if let Some(body) = example(
            "azurestackhci/StackHCIVM/2025-06-01-preview/examples/AttestationStatuses_Get.json",
        ) {
            let s: VmAttestationStatus = serde_json::from_value(body).unwrap();
            assert_eq!(s.properties.health_status, Some(HealthStatus::Unhealthy));
            assert_eq!(s.properties.timestamp.as_deref(), Some("2023/11/10 9:48"));
        }
        if let Some(body) = example(
            "azurestackhci/StackHCIVM/2025-06-01-preview/examples/VirtualMachineInstances_Get.json",
        ) {
            let v: VmInstance = serde_json::from_value(body).unwrap();
            assert_eq!(
                v.properties.provisioning_state,
                Some(ProvisioningState::Accepted)
            );
        }
        if let Some(body) =
            example("hybridcompute/2025-01-13/examples/extension/Extension_Get.json")
        {
            let e: MachineExtension = serde_json::from_value(body).unwrap();
            let status = e.properties.instance_view.unwrap().status.unwrap();
            assert_eq!(status.level, Some(StatusLevel::Info));
        }
        if let Some(body) =
            example("attestation/mgmt/2021-06-01/examples/Get_AttestationProvider.json")
        {
            let p: AttestationProvider = serde_json::from_value(body).unwrap();
            assert!(p.properties.attest_uri.is_some());
        }
    }

    #[test]
    fn documented_payloads_parse() {
        // the real (doc) attestation status: lower-cased type, null errorMessage
        let s: VmAttestationStatus = serde_json::from_str(
            r#"{"id":"/subscriptions/x/AttestationStatus/default","type":"microsoft.azurestackhci/virtualmachineinstances/attestationstatus",
               "properties":{"attestSecureBootEnabled":"Enabled","attestationCertValidated":"Valid","bootIntegrityValidated":"Valid",
               "errorMessage":null,"healthStatus":"Healthy","linuxKernelVersion":"0","provisioningState":"Succeeded","timestamp":"6/12/2024 8:49:33 PM"},
               "systemData":{"lastModifiedAt":"2024-06-12T20:49:33Z"}}"#,
        )
        .unwrap();
        assert_eq!(s.properties.health_status, Some(HealthStatus::Healthy));
        assert_eq!(s.properties.error_message, None);
        let p: AttestationProvider = serde_json::from_str(
            r#"{"name":"myattestationprovider","type":"Microsoft.Attestation/attestationProviders","location":"East US",
               "properties":{"attestUri":"https://myattestationprovider.eus.attest.azure.net","publicNetworkAccess":"Enabled",
               "status":"Ready","tpmAttestationAuthentication":"Enabled","trustModel":"AAD"},"tags":{"a":"b"}}"#,
        )
        .unwrap();
        assert!(p.is_ready());
        assert_eq!(p.properties.trust_model, Some(TrustModel::Aad));
    }
}
