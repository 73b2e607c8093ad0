//! Which AttestationProviders another object's change concerns (pure): the providers whose policy
//! comes from a ConfigMap, and the provider a GuestAttestationExtension holds while that provider
//! waits to be deleted. The controller maps watch events through these, so a ConfigMap edit rolls
//! out at once and a blocked deletion resumes as soon as its last holder is gone.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{AttestationProvider, GuestAttestationExtension};

/// The providers in `namespace` whose `spec.policy.configMapKeyRef` names the ConfigMap `name`.
pub fn providers_using_config_map(
    providers: &[Arc<AttestationProvider>],
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<AttestationProvider>> {
    providers
        .iter()
        .filter(|p| p.namespace().as_deref() == namespace)
        .filter(|p| {
            p.spec
                .policy
                .as_ref()
                .and_then(|pol| pol.config_map_key_ref.as_ref())
                .is_some_and(|r| r.name == name)
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The provider an extension references, when that provider is being deleted (only then does an
/// extension's change matter to it: the deletion may be waiting for this extension to go).
pub fn deleting_provider_held_by(
    providers: &[Arc<AttestationProvider>],
    extension: &GuestAttestationExtension,
) -> Option<ObjectRef<AttestationProvider>> {
    let name = &extension.spec.provider_ref.as_ref()?.name;
    let ns = extension.namespace();
    providers
        .iter()
        .find(|p| &p.name_any() == name && p.namespace() == ns)
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| ObjectRef::from_obj(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(
        ns: &str,
        name: &str,
        cm: Option<&str>,
        deleting: bool,
    ) -> Arc<AttestationProvider> {
        let policy =
            cm.map(|c| serde_json::json!({"configMapKeyRef": {"name": c, "key": "policy"}}));
        let mut meta = serde_json::json!({"name": name, "namespace": ns});
        if deleting {
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationProvider",
                "metadata": meta,
                "spec": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Attestation/attestationProviders/p", "policy": policy}
            }))
            .unwrap(),
        )
    }

    fn extension(ns: &str, provider: Option<&str>) -> GuestAttestationExtension {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
            "metadata": {"name": "gae", "namespace": ns},
            "spec": {
                "machineId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm1",
                "providerRef": provider.map(|p| serde_json::json!({"name": p}))
            }
        }))
        .unwrap()
    }

    #[test]
    fn config_maps_map_to_the_providers_that_read_them() {
        let all = vec![
            provider("a", "p1", Some("policy"), false),
            provider("a", "p2", Some("other"), false),
            provider("a", "p3", None, false),
            provider("b", "p4", Some("policy"), false),
        ];
        let hits = providers_using_config_map(&all, Some("a"), "policy");
        assert_eq!(hits, vec![ObjectRef::new("p1").within("a")]);
        assert!(providers_using_config_map(&all, Some("c"), "policy").is_empty());
    }

    #[test]
    fn extensions_matter_only_to_a_provider_being_deleted() {
        let all = vec![
            provider("a", "live", None, false),
            provider("a", "going", None, true),
            provider("b", "going", None, true),
        ];
        assert_eq!(
            deleting_provider_held_by(&all, &extension("a", Some("going"))),
            Some(ObjectRef::new("going").within("a"))
        );
        assert_eq!(
            deleting_provider_held_by(&all, &extension("a", Some("live"))),
            None
        );
        assert_eq!(deleting_provider_held_by(&all, &extension("a", None)), None);
        assert_eq!(
            deleting_provider_held_by(&all, &extension("c", Some("going"))),
            None
        );
    }
}
