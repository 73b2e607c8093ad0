//! Which provider the spec names and what it should look like in Azure (pure): the target
//! (resourceId, or the cluster's isolatedVmAttestationConfiguration), the creation body of a
//! missing provider, whether a missing one may be created, and the PATCH that brings an adopted
//! provider in line.

use std::collections::BTreeMap;

use crate::azure::{
    AttestationProvider, AttestationProviderCreate, AttestationProviderCreateProperties,
    AttestationProviderPatch, AttestationProviderPatchProperties, Cluster, ClusterId,
    JsonWebKeySet, ProviderId, Toggle,
};
use crate::crd::provider::{AttestationProviderSpec, AttestationType, PublicNetworkAccess};
use crate::crd::{ManagementPolicy, provider::PolicySpec};

/// Where the spec says the provider is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `spec.resourceId`.
    Provider(ProviderId),
    /// `spec.clusterRef.resourceId`: the provider is the one the cluster names.
    Cluster(ClusterId),
}

/// The target of the spec; `Err` carries an InvalidSpec message (admission checks the same rules,
/// so this is defence in depth).
pub fn target(spec: &AttestationProviderSpec) -> Result<Target, String> {
    match (&spec.resource_id, &spec.cluster_ref) {
        (Some(id), None) => ProviderId::parse(id)
            .map(Target::Provider)
            .map_err(|e| format!("spec.resourceId: {e}")),
        (None, Some(c)) => ClusterId::parse(&c.resource_id)
            .map(Target::Cluster)
            .map_err(|e| format!("spec.clusterRef.resourceId: {e}")),
        _ => Err("exactly one of spec.resourceId and spec.clusterRef must be set".to_owned()),
    }
}

/// The provider to reconcile, and the region to create it in if it is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The provider's ARM id.
    pub id: ProviderId,
    /// `spec.location`, else the cluster's region.
    pub location: Option<String>,
}

/// Why a cluster does not lead to a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterProblem {
    /// The cluster has no `isolatedVmAttestationConfiguration.attestationResourceId`.
    NoProvider,
    /// It names something that is not a provider id.
    BadProviderId(String),
}

/// The provider a cluster names (`isolatedVmAttestationConfiguration.attestationResourceId`);
/// the location defaults to the cluster's.
pub fn through_cluster(
    spec_location: Option<&str>,
    cluster: &Cluster,
) -> Result<Resolved, ClusterProblem> {
    let raw = cluster
        .properties
        .isolated_vm_attestation_configuration
        .as_ref()
        .and_then(|c| c.attestation_resource_id.as_deref())
        .filter(|s| !s.trim().is_empty())
        .ok_or(ClusterProblem::NoProvider)?;
    let id = ProviderId::parse(raw).map_err(|e| ClusterProblem::BadProviderId(e.to_string()))?;
    Ok(Resolved {
        id,
        location: spec_location
            .map(str::to_owned)
            .or_else(|| cluster.location.clone()),
    })
}

/// What to do about a provider that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnMissing {
    /// Create it in this region.
    Create {
        /// The region.
        location: String,
    },
    /// Leave it missing, and say why.
    Leave {
        /// Why it is not created (for the EndpointReady message).
        why: String,
    },
}

/// Whether a missing provider is created: only under Manage, with recreateIfMissing, and when a
/// region is known.
pub fn on_missing(spec: &AttestationProviderSpec, location: Option<&str>) -> OnMissing {
    if spec.management_policy == ManagementPolicy::Observe {
        return OnMissing::Leave {
            why: "managementPolicy Observe never creates it".to_owned(),
        };
    }
    if !spec.recreate_if_missing {
        return OnMissing::Leave {
            why: "recreateIfMissing is false".to_owned(),
        };
    }
    match location {
        Some(l) => OnMissing::Create {
            location: l.to_owned(),
        },
        None => OnMissing::Leave {
            why: "it cannot be created without a region: set spec.location".to_owned(),
        },
    }
}

/// The Azure form of `publicNetworkAccess`.
pub fn toggle(access: PublicNetworkAccess) -> Toggle {
    match access {
        PublicNetworkAccess::Enabled => Toggle::Enabled,
        PublicNetworkAccess::Disabled => Toggle::Disabled,
    }
}

/// The PUT body of a provider the operator creates. `signing_certificates` (from
/// `spec.policySigningCertificates`) makes it Isolated; Azure honours them only at creation.
pub fn desired_provider(
    spec: &AttestationProviderSpec,
    location: &str,
    signing_certificates: Option<JsonWebKeySet>,
) -> AttestationProviderCreate {
    AttestationProviderCreate {
        location: location.to_owned(),
        tags: spec.tags.clone().unwrap_or_default(),
        properties: AttestationProviderCreateProperties {
            public_network_access: Some(toggle(spec.public_network_access)),
            tpm_attestation_authentication: None,
            policy_signing_certificates: signing_certificates,
        },
    }
}

/// The PATCH that brings an existing provider in line with the spec, if any is needed:
/// `publicNetworkAccess` as declared, and the declared tags set (tags the spec does not name, such
/// as those Azure Local puts on its own provider, are kept).
pub fn provider_patch(
    spec: &AttestationProviderSpec,
    observed: &AttestationProvider,
) -> Option<AttestationProviderPatch> {
    let want = toggle(spec.public_network_access);
    // Azure's default is Enabled.
    let has = observed
        .properties
        .public_network_access
        .clone()
        .unwrap_or(Toggle::Enabled);
    let properties = (has != want).then_some(AttestationProviderPatchProperties {
        public_network_access: Some(want),
        tpm_attestation_authentication: None,
    });
    let tags = spec.tags.as_ref().and_then(|declared| {
        let mut merged: BTreeMap<String, String> = observed.tags.clone();
        merged.extend(declared.iter().map(|(k, v)| (k.clone(), v.clone())));
        (merged != observed.tags).then_some(merged)
    });
    (properties.is_some() || tags.is_some())
        .then_some(AttestationProviderPatch { tags, properties })
}

/// The MAA path name of an attestation type (`/policies/{type}`).
pub fn attestation_type(t: AttestationType) -> &'static str {
    match t {
        AttestationType::AzureGuest => "AzureGuest",
        AttestationType::Tpm => "Tpm",
        AttestationType::SevSnpVm => "SevSnpVm",
        AttestationType::TdxVm => "TdxVm",
        AttestationType::SgxEnclave => "SgxEnclave",
        AttestationType::OpenEnclave => "OpenEnclave",
    }
}

/// Where the desired policy text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource<'a> {
    /// `spec.policy.text`.
    Inline(&'a str),
    /// `spec.policy.configMapKeyRef`.
    ConfigMap {
        /// ConfigMap name.
        name: &'a str,
        /// Key.
        key: &'a str,
    },
}

/// The source of the policy text (admission guarantees exactly one).
pub fn policy_source(policy: &PolicySpec) -> Result<PolicySource<'_>, String> {
    match (&policy.text, &policy.config_map_key_ref) {
        (Some(t), None) => Ok(PolicySource::Inline(t)),
        (None, Some(r)) => Ok(PolicySource::ConfigMap {
            name: &r.name,
            key: &r.key,
        }),
        _ => Err(
            "exactly one of spec.policy.text and spec.policy.configMapKeyRef must be set"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{AttestationProviderProperties, ClusterProperties};

    const PROV: &str = "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg1/providers/Microsoft.Attestation/attestationProviders/maa1";
    const CLUSTER: &str = "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg1/providers/Microsoft.AzureStackHCI/clusters/c1";

    fn spec(json: serde_json::Value) -> AttestationProviderSpec {
        serde_json::from_value(json).unwrap()
    }

    fn cluster(provider: Option<&str>) -> Cluster {
        serde_json::from_value(serde_json::json!({
            "id": CLUSTER, "location": "eastus",
            "properties": {"isolatedVmAttestationConfiguration": provider.map(|p| serde_json::json!({
                "attestationResourceId": p,
                "attestationServiceEndpoint": "https://maa1.eus.attest.azure.net",
                "relyingPartyServiceEndpoint": "https://rp"
            }))}
        }))
        .unwrap()
    }

    #[test]
    fn targets() {
        assert_eq!(
            target(&spec(serde_json::json!({"resourceId": PROV}))),
            Ok(Target::Provider(ProviderId::parse(PROV).unwrap()))
        );
        assert_eq!(
            target(&spec(
                serde_json::json!({"clusterRef": {"resourceId": CLUSTER}})
            )),
            Ok(Target::Cluster(ClusterId::parse(CLUSTER).unwrap()))
        );
        assert!(
            target(&spec(serde_json::json!({"resourceId": CLUSTER})))
                .unwrap_err()
                .starts_with("spec.resourceId")
        );
        assert!(target(&spec(serde_json::json!({}))).is_err());
    }

    #[test]
    fn the_cluster_names_the_provider_and_its_region() {
        let r = through_cluster(None, &cluster(Some(PROV))).unwrap();
        assert_eq!(r.id, ProviderId::parse(PROV).unwrap());
        assert_eq!(r.location.as_deref(), Some("eastus"));
        let r = through_cluster(Some("westeurope"), &cluster(Some(PROV))).unwrap();
        assert_eq!(r.location.as_deref(), Some("westeurope"));
        assert_eq!(
            through_cluster(None, &cluster(None)),
            Err(ClusterProblem::NoProvider)
        );
        assert_eq!(
            through_cluster(None, &cluster(Some(" "))),
            Err(ClusterProblem::NoProvider)
        );
        assert!(matches!(
            through_cluster(None, &cluster(Some(CLUSTER))),
            Err(ClusterProblem::BadProviderId(_))
        ));
        let bare = Cluster {
            properties: ClusterProperties::default(),
            ..Cluster::default()
        };
        assert_eq!(
            through_cluster(None, &bare),
            Err(ClusterProblem::NoProvider)
        );
    }

    #[test]
    fn missing_providers_are_created_only_when_allowed() {
        let manage = spec(serde_json::json!({"resourceId": PROV}));
        assert_eq!(
            on_missing(&manage, Some("eastus")),
            OnMissing::Create {
                location: "eastus".into()
            }
        );
        assert!(
            matches!(on_missing(&manage, None), OnMissing::Leave { why } if why.contains("spec.location"))
        );
        let observe = spec(serde_json::json!({"resourceId": PROV, "managementPolicy": "Observe"}));
        assert!(
            matches!(on_missing(&observe, Some("eastus")), OnMissing::Leave { why } if why.contains("Observe"))
        );
        let no = spec(serde_json::json!({"resourceId": PROV, "recreateIfMissing": false}));
        assert!(
            matches!(on_missing(&no, Some("eastus")), OnMissing::Leave { why } if why.contains("recreateIfMissing"))
        );
    }

    #[test]
    fn creation_body() {
        let s = spec(serde_json::json!({
            "resourceId": PROV, "tags": {"owner": "ops"}, "publicNetworkAccess": "Disabled"
        }));
        let certs = JsonWebKeySet {
            keys: vec![crate::azure::JsonWebKey {
                kty: "RSA".into(),
                x5c: vec!["MIIB".into()],
                ..Default::default()
            }],
        };
        let body = desired_provider(&s, "eastus", Some(certs.clone()));
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "location": "eastus",
                "tags": {"owner": "ops"},
                "properties": {
                    "publicNetworkAccess": "Disabled",
                    "policySigningCertificates": {"keys": [{"kty": "RSA", "x5c": ["MIIB"]}]}
                }
            })
        );
        // the spec requires properties even when empty of choices: publicNetworkAccess is always sent
        let minimal = desired_provider(
            &spec(serde_json::json!({"resourceId": PROV})),
            "eastus",
            None,
        );
        assert_eq!(
            serde_json::to_value(&minimal).unwrap(),
            serde_json::json!({"location": "eastus", "properties": {"publicNetworkAccess": "Enabled"}})
        );
    }

    #[test]
    fn patches_only_what_differs() {
        let observed = |pna: Option<&str>, tags: serde_json::Value| AttestationProvider {
            tags: serde_json::from_value(tags).unwrap(),
            properties: AttestationProviderProperties {
                public_network_access: pna.map(Toggle::from),
                ..Default::default()
            },
            ..Default::default()
        };
        let plain = spec(serde_json::json!({"resourceId": PROV}));
        assert_eq!(
            provider_patch(
                &plain,
                &observed(Some("Enabled"), serde_json::json!({"azl": "1"}))
            ),
            None
        );
        assert_eq!(
            provider_patch(&plain, &observed(None, serde_json::json!({}))),
            None
        );
        let p = provider_patch(&plain, &observed(Some("Disabled"), serde_json::json!({}))).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"properties": {"publicNetworkAccess": "Enabled"}})
        );
        let tagged = spec(serde_json::json!({"resourceId": PROV, "tags": {"owner": "ops"}}));
        let p = provider_patch(
            &tagged,
            &observed(Some("Enabled"), serde_json::json!({"azl": "1"})),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"tags": {"azl": "1", "owner": "ops"}})
        );
        assert_eq!(
            provider_patch(
                &tagged,
                &observed(
                    Some("Enabled"),
                    serde_json::json!({"azl": "1", "owner": "ops"})
                )
            ),
            None
        );
    }

    #[test]
    fn attestation_type_names_match_the_crd_enum() {
        for t in [
            AttestationType::AzureGuest,
            AttestationType::Tpm,
            AttestationType::SevSnpVm,
            AttestationType::TdxVm,
            AttestationType::SgxEnclave,
            AttestationType::OpenEnclave,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), attestation_type(t));
        }
    }

    #[test]
    fn policy_sources() {
        let p: PolicySpec =
            serde_json::from_value(serde_json::json!({"text": "version=1.0;"})).unwrap();
        assert_eq!(policy_source(&p), Ok(PolicySource::Inline("version=1.0;")));
        let p: PolicySpec = serde_json::from_value(
            serde_json::json!({"configMapKeyRef": {"name": "cm", "key": "policy.txt"}}),
        )
        .unwrap();
        assert_eq!(
            policy_source(&p),
            Ok(PolicySource::ConfigMap {
                name: "cm",
                key: "policy.txt"
            })
        );
    }
}
