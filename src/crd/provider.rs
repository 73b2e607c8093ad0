//! `AttestationProvider`: the Microsoft Azure Attestation (MAA) endpoint and its policy.
#![allow(clippy::duplicated_attributes)] // kube's derive takes one printcolumn(...) per column

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, CredentialsRef, DeletionPolicy, KeySelector, LocalObjectReference, ManagementPolicy,
};

/// Which provider, whether to create it when missing, and the policy to keep on it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "guestattestation.dev",
    version = "v1alpha1",
    kind = "AttestationProvider",
    shortname = "atp",
    category = "guestattestation",
    namespaced,
    cel,
    doc = "A Microsoft Azure Attestation (MAA) provider and its attestation policy: adopted, created or repaired, with the policy kept as declared and drift reported.",
    status = "AttestationProviderStatus",
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.attestUri",
        description = "The MAA endpoint (attestUri)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".status.policyState",
        description = "InSync, Drifted, Invalid or Unknown"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.resourceId) != has(self.clusterRef)").message("exactly one of spec.resourceId and spec.clusterRef must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderSpec {
    /// ARM resource ID of the provider:
    /// /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.Attestation/attestationProviders/<name>.
    /// Exclusive with clusterRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::SHAPE_RULE).message("spec.resourceId must be an ARM resource ID of the form /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.Attestation/attestationProviders/<name>"),
        validation = kube::core::Rule::new(super::ids::PROVIDER_RULE).message("spec.resourceId must name a Microsoft.Attestation/attestationProviders resource with a name of 3-24 letters, digits or hyphens: /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.Attestation/attestationProviders/<name>")
    )]
    #[schemars(length(min = 1, max = 512))]
    pub resource_id: Option<String>,

    /// The Azure Local cluster whose isolatedVmAttestationConfiguration.attestationResourceId
    /// names the provider. Exclusive with resourceId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,

    /// Azure region, used when the provider is created (e.g. eastus). Defaults to the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-zA-Z0-9 ]{1,64}$')").message("spec.location must be an Azure region name such as eastus"))]
    #[schemars(length(min = 1, max = 64))]
    pub location: Option<String>,

    /// Tags set on the provider when the operator creates or updates it (at most 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 50, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, k.size() <= 512)").message("spec.tags keys must be at most 512 characters"))]
    pub tags: Option<BTreeMap<String, String>>,

    /// Whether the provider accepts traffic from public networks. Guest attestation needs
    /// Enabled; Disabled is honoured with a warning.
    #[serde(default)]
    pub public_network_access: PublicNetworkAccess,

    /// PEM certificates that sign policies (makes the provider Isolated). Honoured only when
    /// the provider is created, as Azure does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_signing_certificates: Option<PolicySigningCertificates>,

    /// The attestation policy to keep on the provider. When absent, the policy is not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,

    /// Create the provider when it does not exist (Manage only). An Event says it was recreated.
    #[serde(default = "default_true")]
    pub recreate_if_missing: bool,

    /// Manage writes to Azure; Observe only reports.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// What deleting this resource does to the provider. Retain (default) leaves it: Azure Local
    /// owns this endpoint.
    #[serde(default = "default_retain")]
    pub deletion_policy: DeletionPolicy,

    /// Secret with a service principal in this namespace; the operator's identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,
}

fn default_true() -> bool {
    true
}

fn default_retain() -> DeletionPolicy {
    DeletionPolicy::Retain
}

/// The Azure Local cluster that names the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// ARM resource ID of the cluster:
    /// /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.AzureStackHCI/clusters/<name>.
    #[x_kube(
        validation = kube::core::Rule::new(super::ids::SHAPE_RULE).message("spec.clusterRef.resourceId must be an ARM resource ID of the form /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>"),
        validation = kube::core::Rule::new(super::ids::CLUSTER_RULE).message("spec.clusterRef.resourceId must name a Microsoft.AzureStackHCI/clusters resource: /subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>")
    )]
    #[schemars(length(min = 1, max = 512))]
    pub resource_id: String,
}

/// Whether the provider accepts public network traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PublicNetworkAccess {
    /// Reachable from public networks (needed by guest attestation).
    #[default]
    Enabled,
    /// Reachable through private endpoints only.
    Disabled,
}

/// Certificates that sign the provider's policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySigningCertificates {
    /// A Secret key in this namespace holding one or more PEM certificates.
    pub secret_ref: KeySelector,
}

/// The MAA attestation types (the data-plane specs' `attestationType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AttestationType {
    /// Azure guest attestation (Trusted Launch VMs).
    #[default]
    AzureGuest,
    /// Edge TPM virtualization-based security.
    Tpm,
    /// AMD SEV-SNP confidential VMs.
    SevSnpVm,
    /// Intel TDX confidential VMs.
    TdxVm,
    /// Intel SGX enclaves.
    SgxEnclave,
    /// Open Enclave.
    OpenEnclave,
}

/// The attestation policy, inline or from a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.text) != has(self.configMapKeyRef)").message("exactly one of spec.policy.text and spec.policy.configMapKeyRef must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Which attestation type the policy is for.
    #[serde(default)]
    pub attestation_type: AttestationType,

    /// The MAA data-plane api-version used for this provider's policy calls (YYYY-MM-DD,
    /// optionally -preview).
    #[serde(default = "default_maa_api_version")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$')").message("spec.policy.apiVersion must look like 2022-08-01 or 2025-06-01-preview"))]
    #[schemars(length(min = 10, max = 32))]
    pub api_version: String,

    /// The policy text (`version=1.0; authorizationrules {...}; issuancerules {...};`).
    /// Exclusive with configMapKeyRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub text: Option<String>,

    /// A ConfigMap key in this namespace holding the policy text. Exclusive with text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,

    /// For Isolated providers: a Secret in this namespace with `tls.key` (PKCS#8 PEM RSA key) and
    /// `tls.crt` (PEM chain) that sign the policy (RS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret_ref: Option<LocalObjectReference>,
}

fn default_maa_api_version() -> String {
    "2022-08-01".to_owned()
}

/// Observed state of an AttestationProvider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationProviderStatus {
    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// EndpointReady, PolicyInSync, PublicNetworkAccess (a warning when False) and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,

    /// The ARM resource ID of the provider (resolved through the cluster when clusterRef is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub resource_id: Option<String>,

    /// The provider's data-plane endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub attest_uri: Option<String>,

    /// AAD or Isolated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub trust_model: Option<String>,

    /// The provider's status in Azure: Ready, NotReady or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub provider_status: Option<String>,

    /// The provider's publicNetworkAccess in Azure: Enabled or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub public_network_access: Option<String>,

    /// InSync, Drifted, Invalid or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub policy_state: Option<String>,

    /// SHA-256 (hex) of the policy text last applied or found in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub applied_policy_hash: Option<String>,

    /// The x-ms-policy-token-hash MAA returned when the policy was last set (when it was found in
    /// sync without being set: the same hash of the policy token MAA holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub policy_token_hash: Option<String>,

    /// When the policy was last set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_policy_update_time: Option<Time>,
}
