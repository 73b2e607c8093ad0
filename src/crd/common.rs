//! Field types shared by the three kinds.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the same namespace holding a service principal: keys `tenantId`, `clientId` and
/// `clientSecret`. A resource never reads a Secret of another namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of the Secret, in the namespace of this resource.
    #[x_kube(validation = kube::core::Rule::new(DNS_SUBDOMAIN_RULE).message("credentialsRef.name must be a Kubernetes object name: lower-case letters, digits, '-' and '.', at most 253 characters"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference by name to another object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object, in the namespace of this resource.
    #[x_kube(validation = kube::core::Rule::new(DNS_SUBDOMAIN_RULE).message("name must be a Kubernetes object name: lower-case letters, digits, '-' and '.', at most 253 characters"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a ConfigMap or Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// Name of the ConfigMap or Secret, in the namespace of this resource.
    #[x_kube(validation = kube::core::Rule::new(DNS_SUBDOMAIN_RULE).message("name must be a Kubernetes object name: lower-case letters, digits, '-' and '.', at most 253 characters"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within it.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("key must consist of letters, digits, '-', '_' or '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// CEL: a DNS-1123 subdomain (the name rule of ConfigMaps and Secrets).
pub(crate) const DNS_SUBDOMAIN_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// Whether the operator may write to Azure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and repair the Azure resource so that it matches the spec.
    #[default]
    Manage,
    /// Never write to Azure; report what differs in the status, conditions and Events.
    Observe,
}

/// What deleting the Kubernetes resource does to the Azure resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the Azure resource in place.
    Retain,
    /// Delete the Azure resource, then release the finalizer.
    Delete,
}

/// A condition in the shape of Kubernetes `metav1.Condition`, with its bounds, so every field of
/// the CRDs is bounded and GitOps tools (kstatus, Argo CD) read it as they read built-in kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. Ready.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// The .metadata.generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // No `minimum`: k8s-openapi holds bounds as f64, so the file would say 0.0, the API server
    // stores 0, and a second server-side apply of the same file would conflict.
    pub observed_generation: Option<i64>,
    /// When the status last changed.
    pub last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// A CamelCase reason for the last transition.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// A human-readable message (never holds secrets).
    #[schemars(length(max = 32768))]
    pub message: String,
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet, or work in flight.
    Unknown,
}
