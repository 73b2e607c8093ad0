//! The three custom resources of `guestattestation.dev/v1alpha1` and their shared field types.
//!
//! Validation lives in the schema: `maxLength`/`maxItems` on every string and list, and CEL rules
//! (checked by the API server at admission and offline by `validate_cel()` in unit tests) for ARM
//! resource IDs, durations, the reporting frequency and mutually exclusive fields.

pub mod common;
pub mod extension;
pub mod ids;
pub mod provider;
pub mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use common::{
    Condition, ConditionStatus, CredentialsRef, DeletionPolicy, KeySelector, LocalObjectReference,
    ManagementPolicy,
};
pub use extension::{
    ExtensionSettings, GuestAttestationExtension, GuestAttestationExtensionSpec,
    GuestAttestationExtensionStatus,
};
pub use provider::{
    AttestationProvider, AttestationProviderSpec, AttestationProviderStatus, AttestationType,
};
pub use status::{AttestationStatus, AttestationStatusSpec, AttestationStatusStatus, Health};

/// The API group of every kind.
pub const GROUP: &str = "guestattestation.dev";

/// Every CRD of the operator, in a stable order (crdgen writes them in this order).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        AttestationProvider::crd(),
        GuestAttestationExtension::crd(),
        AttestationStatus::crd(),
    ]
}

/// Renders every CRD as (file name, YAML), the form committed under `crds/`.
pub fn render_all() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.spec.names.plural);
            serde_yaml::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
