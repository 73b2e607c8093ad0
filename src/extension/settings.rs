//! The extension settings, exactly as the product documentation writes them, and where their
//! endpoints come from (pure).
//!
//! The documented shape (case-sensitive keys; every value a string, booleans included):
//!
//! ```json
//! {"AttestationConfig": {
//!    "MaaSettings": {"maaEndpoint": "<attestationServiceEndpoint>", "maaTenantName": "DUMMY_Tenant_NewConfig"},
//!    "AscSettings": {"ascReportingEndpoint": "<relyingPartyServiceEndpoint>", "ascReportingFrequency": "4H"},
//!    "AzureStackSettings": {"clusterId": "<cluster.id>", "clusterAadTenantId": "<cluster.aadTenantId>"},
//!    "useCustomToken": "true", "disableAlerts": "false", "isAzureStack": "true"}}
//! ```

use std::fmt;

use serde_json::{Value, json};

use crate::azure::Cluster;
use crate::controller::conditions::find;
use crate::crd::{AttestationProvider, ConditionStatus, ExtensionSettings};

/// The four values the settings take from Azure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `MaaSettings.maaEndpoint`: the cluster's attestationServiceEndpoint, or the
    /// AttestationProvider's attestUri.
    pub maa_endpoint: String,
    /// `AscSettings.ascReportingEndpoint`: the cluster's relyingPartyServiceEndpoint.
    pub relying_party_endpoint: String,
    /// `AzureStackSettings.clusterId`: the cluster's ARM id.
    pub cluster_id: String,
    /// `AzureStackSettings.clusterAadTenantId`: the cluster's aadTenantId.
    pub cluster_aad_tenant_id: String,
}

fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The settings document of the extension. `isAzureStack` is always `"true"`: this operator
/// only deploys on Azure Local VMs.
pub fn render_settings(endpoints: &Endpoints, settings: &ExtensionSettings) -> Value {
    json!({
        "AttestationConfig": {
            "MaaSettings": {
                "maaEndpoint": endpoints.maa_endpoint,
                "maaTenantName": settings.maa_tenant_name,
            },
            "AscSettings": {
                "ascReportingEndpoint": endpoints.relying_party_endpoint,
                "ascReportingFrequency": settings.asc_reporting_frequency,
            },
            "AzureStackSettings": {
                "clusterId": endpoints.cluster_id,
                "clusterAadTenantId": endpoints.cluster_aad_tenant_id,
            },
            "useCustomToken": flag(settings.use_custom_token),
            "disableAlerts": flag(settings.disable_alerts),
            "isAzureStack": "true",
        }
    })
}

/// Why the settings cannot be rendered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceProblem {
    /// The Azure Local cluster does not exist.
    ClusterNotFound {
        /// The cluster's ARM id.
        cluster: String,
    },
    /// The cluster has no (complete) isolatedVmAttestationConfiguration: guest attestation is
    /// not set up on that Azure Local instance.
    AttestationNotConfigured {
        /// The cluster's ARM id.
        cluster: String,
        /// What is missing.
        missing: &'static str,
    },
    /// The cluster has no aadTenantId.
    TenantMissing {
        /// The cluster's ARM id.
        cluster: String,
    },
    /// The AttestationProvider named by spec.providerRef does not exist in this namespace.
    ProviderNotFound {
        /// Its name.
        name: String,
    },
    /// The AttestationProvider exists but is not Ready yet.
    ProviderNotReady {
        /// Its name.
        name: String,
        /// What it is waiting for.
        why: String,
    },
    /// The AttestationProvider has no clusterRef, so the relying-party endpoint, cluster id and
    /// tenant are unknown.
    ProviderWithoutCluster {
        /// Its name.
        name: String,
    },
}

impl SourceProblem {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClusterNotFound { .. } => "ClusterNotFound",
            Self::AttestationNotConfigured { .. } => "AttestationNotConfigured",
            Self::TenantMissing { .. } => "ClusterTenantMissing",
            Self::ProviderNotFound { .. } => "ProviderNotFound",
            Self::ProviderNotReady { .. } => "ProviderNotReady",
            Self::ProviderWithoutCluster { .. } => "ProviderWithoutCluster",
        }
    }
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClusterNotFound { cluster } => {
                write!(f, "the Azure Local cluster {cluster} does not exist")
            }
            Self::AttestationNotConfigured { cluster, missing } => write!(
                f,
                "guest attestation is not set up on the Azure Local instance {cluster}: its {missing} is missing \
                 (the instance sets it up itself when it supports guest attestation; see the AttestationProvider \
                 repair path)"
            ),
            Self::TenantMissing { cluster } => {
                write!(
                    f,
                    "the Azure Local cluster {cluster} reports no aadTenantId"
                )
            }
            Self::ProviderNotFound { name } => write!(
                f,
                "the AttestationProvider {name:?} (spec.providerRef) does not exist in this namespace"
            ),
            Self::ProviderNotReady { name, why } => write!(
                f,
                "waiting for the AttestationProvider {name:?} to become Ready: {why}"
            ),
            Self::ProviderWithoutCluster { name } => write!(
                f,
                "the AttestationProvider {name:?} has no spec.clusterRef, so the relying-party endpoint, cluster id \
                 and tenant are unknown: give it a clusterRef, or use spec.clusterId here"
            ),
        }
    }
}

/// The endpoints from the Azure Local cluster `cluster_id` (as named in the spec), taking the
/// MAA endpoint from `maa_endpoint` when an AttestationProvider gives it.
pub fn endpoints_from_cluster(
    cluster_id: &str,
    cluster: &Cluster,
    maa_endpoint: Option<&str>,
) -> Result<Endpoints, SourceProblem> {
    let named = || cluster.id.clone().unwrap_or_else(|| cluster_id.to_owned());
    let not_configured = |missing| SourceProblem::AttestationNotConfigured {
        cluster: named(),
        missing,
    };
    let non_empty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let config = cluster
        .properties
        .isolated_vm_attestation_configuration
        .as_ref()
        .ok_or_else(|| not_configured("isolatedVmAttestationConfiguration"))?;
    let maa = match maa_endpoint {
        Some(uri) => uri.to_owned(),
        None => non_empty(&config.attestation_service_endpoint).ok_or_else(|| {
            not_configured("isolatedVmAttestationConfiguration.attestationServiceEndpoint")
        })?,
    };
    let relying_party = non_empty(&config.relying_party_service_endpoint).ok_or_else(|| {
        not_configured("isolatedVmAttestationConfiguration.relyingPartyServiceEndpoint")
    })?;
    let tenant = non_empty(&cluster.properties.aad_tenant_id)
        .ok_or_else(|| SourceProblem::TenantMissing { cluster: named() })?;
    Ok(Endpoints {
        maa_endpoint: maa,
        relying_party_endpoint: relying_party,
        cluster_id: named(),
        cluster_aad_tenant_id: tenant,
    })
}

/// What a Ready AttestationProvider gives the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSource {
    /// Its status.attestUri (the MAA endpoint).
    pub attest_uri: String,
    /// Its spec.clusterRef.resourceId (the cluster for the other settings).
    pub cluster_id: String,
}

/// Resolves spec.providerRef: the provider must exist, have an attestUri and be Ready
/// (EndpointReady, or Ready when it reports no EndpointReady), and name its cluster.
pub fn provider_source(
    name: &str,
    provider: Option<&AttestationProvider>,
) -> Result<ProviderSource, SourceProblem> {
    let provider = provider.ok_or_else(|| SourceProblem::ProviderNotFound {
        name: name.to_owned(),
    })?;
    let not_ready = |why: String| SourceProblem::ProviderNotReady {
        name: name.to_owned(),
        why,
    };
    let status = provider
        .status
        .as_ref()
        .ok_or_else(|| not_ready("it has no status yet".to_owned()))?;
    let endpoint = find(&status.conditions, "EndpointReady")
        .or_else(|| find(&status.conditions, "Ready"))
        .ok_or_else(|| not_ready("it reports no EndpointReady condition yet".to_owned()))?;
    if endpoint.status != ConditionStatus::True {
        return Err(not_ready(format!(
            "{} is {:?} ({}): {}",
            endpoint.type_, endpoint.status, endpoint.reason, endpoint.message
        )));
    }
    let attest_uri = status
        .attest_uri
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| not_ready("it reports no status.attestUri yet".to_owned()))?;
    let cluster_id = provider
        .spec
        .cluster_ref
        .as_ref()
        .map(|c| c.resource_id.clone())
        .ok_or_else(|| SourceProblem::ProviderWithoutCluster {
            name: name.to_owned(),
        })?;
    Ok(ProviderSource {
        attest_uri,
        cluster_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings example of the product documentation (../shared/seed/README.md), verbatim,
    /// with its placeholders.
    const DOCUMENTED: &str = r#"{"AttestationConfig": {
      "MaaSettings": {"maaEndpoint": "<attestationServiceEndpoint>", "maaTenantName": "DUMMY_Tenant_NewConfig"},
      "AscSettings": {"ascReportingEndpoint": "<relyingPartyServiceEndpoint>", "ascReportingFrequency": "4H"},
      "AzureStackSettings": {"clusterId": "<cluster.id>", "clusterAadTenantId": "<cluster.aadTenantId>"},
      "useCustomToken": "true", "disableAlerts": "false", "isAzureStack": "true"}}"#;

    /// The settings of the documented `az connectedmachine extension create` output
    /// (../shared/seed/000_7f5bd7a3ccefae1a.txt), with its non-default tenant name.
    const DOCUMENTED_OUTPUT: &str = r#"{
        "AttestationConfig": {
            "AscSettings": {
            "ascReportingEndpoint": "https://dp.stackhci.azure.com/eastus/igvmAttestation/validxxxxx",
            "ascReportingFrequency": "4H"
            },
            "AzureStackSettings": {
            "clusterAadTenantId": "xxxxxxxx--a9d3-41ba-88c3-796a643e3edd",
            "clusterId": "/subscriptions/<subscription id>/resourceGroups/<resource group name>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>"
            },
            "MaaSettings": {
            "maaEndpoint": "https://clustxxxxxxxxxxxxx.eus2e.attest.azure.net",
            "maaTenantName": "My_Tenant_NewConfig"
            },
            "disableAlerts": "false",
            "isAzureStack": "true",
            "useCustomToken": "true"
        }
        }"#;

    fn placeholders() -> Endpoints {
        Endpoints {
            maa_endpoint: "<attestationServiceEndpoint>".into(),
            relying_party_endpoint: "<relyingPartyServiceEndpoint>".into(),
            cluster_id: "<cluster.id>".into(),
            cluster_aad_tenant_id: "<cluster.aadTenantId>".into(),
        }
    }

    #[test]
    fn golden_defaults_render_the_documented_example() {
        let want: Value = serde_json::from_str(DOCUMENTED).unwrap();
        let got = render_settings(&placeholders(), &ExtensionSettings::default());
        assert_eq!(got, want);
        // The keys are case-sensitive and every value is a string.
        let text = serde_json::to_string(&got).unwrap();
        for key in [
            "\"AttestationConfig\"",
            "\"MaaSettings\"",
            "\"maaEndpoint\"",
            "\"maaTenantName\"",
            "\"AscSettings\"",
            "\"ascReportingEndpoint\"",
            "\"ascReportingFrequency\"",
            "\"AzureStackSettings\"",
            "\"clusterId\"",
            "\"clusterAadTenantId\"",
            "\"useCustomToken\":\"true\"",
            "\"disableAlerts\":\"false\"",
            "\"isAzureStack\":\"true\"",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        assert!(
            !text.contains(":true") && !text.contains(":false"),
            "{text}"
        );
    }

    #[test]
    fn golden_documented_output() {
        let want: Value = serde_json::from_str(DOCUMENTED_OUTPUT).unwrap();
        let endpoints = Endpoints {
            maa_endpoint: "https://clustxxxxxxxxxxxxx.eus2e.attest.azure.net".into(),
            relying_party_endpoint: "https://dp.stackhci.azure.com/eastus/igvmAttestation/validxxxxx".into(),
            cluster_id: "/subscriptions/<subscription id>/resourceGroups/<resource group name>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>".into(),
            cluster_aad_tenant_id: "xxxxxxxx--a9d3-41ba-88c3-796a643e3edd".into(),
        };
        let settings = ExtensionSettings {
            maa_tenant_name: "My_Tenant_NewConfig".into(),
            ..ExtensionSettings::default()
        };
        assert_eq!(render_settings(&endpoints, &settings), want);
    }

    #[test]
    fn the_seed_document_still_has_the_example() {
        // Where ../shared is laid out beside the repository (CI and dev), the example above must
        // still be the one the seed document shows.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed/README.md");
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let start = text.find("{\"AttestationConfig\"").unwrap();
        let end = start + text[start..].find("```").unwrap();
        let documented: Value = serde_json::from_str(text[start..end].trim()).unwrap();
        assert_eq!(
            documented,
            serde_json::from_str::<Value>(DOCUMENTED).unwrap()
        );
    }

    #[test]
    fn booleans_render_as_strings() {
        let s = ExtensionSettings {
            use_custom_token: false,
            disable_alerts: true,
            maa_tenant_name: "t".into(),
            asc_reporting_frequency: "8H".into(),
        };
        let v = render_settings(&placeholders(), &s);
        let c = &v["AttestationConfig"];
        assert_eq!(c["useCustomToken"], "false");
        assert_eq!(c["disableAlerts"], "true");
        assert_eq!(c["isAzureStack"], "true");
        assert_eq!(c["AscSettings"]["ascReportingFrequency"], "8H");
        assert_eq!(c["MaaSettings"]["maaTenantName"], "t");
    }

    fn cluster(config: Option<Value>) -> Cluster {
        let mut v = serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c1",
            "properties": {"aadTenantId": "tenant-1"}
        });
        if let Some(c) = config {
            v["properties"]["isolatedVmAttestationConfiguration"] = c;
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn endpoints_from_the_cluster() {
        let c = cluster(Some(serde_json::json!({
            "attestationResourceId": "/x",
            "relyingPartyServiceEndpoint": "https://rp",
            "attestationServiceEndpoint": "https://maa"
        })));
        let e = endpoints_from_cluster("/spec-id", &c, None).unwrap();
        assert_eq!(e.maa_endpoint, "https://maa");
        assert_eq!(e.relying_party_endpoint, "https://rp");
        assert!(e.cluster_id.ends_with("/clusters/c1"));
        assert_eq!(e.cluster_aad_tenant_id, "tenant-1");
        let e = endpoints_from_cluster("/spec-id", &c, Some("https://provider")).unwrap();
        assert_eq!(e.maa_endpoint, "https://provider");
    }

    #[test]
    fn cluster_without_attestation_configuration_is_not_set_up() {
        let err = endpoints_from_cluster("/spec-id", &cluster(None), None).unwrap_err();
        assert_eq!(err.reason(), "AttestationNotConfigured");
        let text = err.to_string();
        assert!(
            text.contains("guest attestation is not set up on the Azure Local instance"),
            "{text}"
        );
        assert!(text.contains("/clusters/c1"), "{text}");
        let partial = cluster(Some(
            serde_json::json!({"attestationServiceEndpoint": "https://maa"}),
        ));
        let err = endpoints_from_cluster("/spec-id", &partial, None).unwrap_err();
        assert!(err.to_string().contains("relyingPartyServiceEndpoint"));
    }

    fn provider(status: Option<Value>, cluster_ref: bool) -> AttestationProvider {
        let mut v = serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationProvider",
            "metadata": {"name": "p"},
            "spec": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Attestation/attestationProviders/p"}
        });
        if cluster_ref {
            v["spec"] = serde_json::json!({"clusterRef": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c1"}});
        }
        if let Some(s) = status {
            v["status"] = s;
        }
        serde_json::from_value(v).unwrap()
    }

    fn cond(type_: &str, status: &str) -> Value {
        serde_json::json!({"type": type_, "status": status, "reason": "R", "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn provider_must_exist_be_ready_and_name_its_cluster() {
        assert_eq!(
            provider_source("p", None).unwrap_err().reason(),
            "ProviderNotFound"
        );
        let p = provider(None, true);
        assert_eq!(
            provider_source("p", Some(&p)).unwrap_err().reason(),
            "ProviderNotReady"
        );
        let p = provider(
            Some(serde_json::json!({"conditions": [cond("EndpointReady", "False")]})),
            true,
        );
        let e = provider_source("p", Some(&p)).unwrap_err();
        assert_eq!(e.reason(), "ProviderNotReady");
        assert!(
            e.to_string()
                .contains("waiting for the AttestationProvider")
        );
        let ready = serde_json::json!({"attestUri": "https://maa", "conditions": [cond("EndpointReady", "True")]});
        let p = provider(Some(ready.clone()), false);
        assert_eq!(
            provider_source("p", Some(&p)).unwrap_err().reason(),
            "ProviderWithoutCluster"
        );
        let p = provider(Some(ready), true);
        let s = provider_source("p", Some(&p)).unwrap();
        assert_eq!(s.attest_uri, "https://maa");
        assert!(s.cluster_id.ends_with("/clusters/c1"));
        // Ready stands in for EndpointReady; an attestUri is still required.
        let p = provider(
            Some(serde_json::json!({"conditions": [cond("Ready", "True")]})),
            true,
        );
        assert!(
            provider_source("p", Some(&p))
                .unwrap_err()
                .to_string()
                .contains("attestUri")
        );
    }
}
