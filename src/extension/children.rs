//! The AttestationStatus a GuestAttestationExtension creates and owns (I/O on Kubernetes
//! only), so that `kubectl get ats` lists every VM that has the extension. Same name as the
//! GuestAttestationExtension, same machineId and credentialsRef, an owner reference to it
//! (garbage collection removes it with its owner), written with server-side apply.

use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};

use super::owned::{Owned, Seen};
use crate::crd::{AttestationStatus, GuestAttestationExtension};

/// What `ensure` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do, or done.
    Ok,
    /// An AttestationStatus of that name exists and is not ours to take: why.
    Conflict(String),
}

/// Whether `ats` is controlled by `owner` (None: it has no controller).
fn controlled_by(ats: &Seen, owner: &GuestAttestationExtension) -> Option<bool> {
    let uid = owner.uid()?;
    Some(*ats.controller.as_ref()? == uid)
}

/// Whether the stored object already says what we would apply (pure).
fn up_to_date(ats: &Seen, owner: &GuestAttestationExtension) -> bool {
    controlled_by(ats, owner) == Some(true)
        && ats.machine_id == owner.spec.machine_id
        && ats.credentials_ref == owner.spec.credentials_ref
}

/// Creates, adopts or corrects the owned AttestationStatus when `wanted` (createStatus and the
/// extension exists in Azure); deletes the one we own when createStatus was turned off. An
/// object of that name owned by someone else, or for another machine, is left alone.
/// `cache` is what the controller's watch has seen of the AttestationStatuses: once it has
/// listed them, the existing object is read from it (one API read less per reconcile); a view a
/// moment behind costs at most an idempotent apply.
pub async fn ensure(
    client: &kube::Client,
    field_manager: &str,
    owner: &GuestAttestationExtension,
    ns: &str,
    wanted: bool,
    cache: Option<&Owned>,
) -> Result<Outcome, kube::Error> {
    let api: Api<AttestationStatus> = Api::namespaced(client.clone(), ns);
    let name = owner.name_any();
    let existing = match cache.and_then(|c| c.get(ns, &name)) {
        Some(seen) => seen,
        None => api.get_opt(&name).await?.as_ref().map(Seen::from),
    };
    if !owner.spec.create_status {
        if let Some(ats) = existing
            && controlled_by(&ats, owner) == Some(true)
        {
            api.delete(&name, &DeleteParams::default()).await?;
        }
        return Ok(Outcome::Ok);
    }
    if !wanted {
        return Ok(Outcome::Ok);
    }
    if let Some(ats) = &existing {
        if up_to_date(ats, owner) {
            return Ok(Outcome::Ok);
        }
        match controlled_by(ats, owner) {
            Some(false) => {
                return Ok(Outcome::Conflict(format!(
                    "the AttestationStatus {name} is controlled by another object; createStatus leaves it alone"
                )));
            }
            None if !ats.machine_id.eq_ignore_ascii_case(&owner.spec.machine_id) => {
                return Ok(Outcome::Conflict(format!(
                    "the AttestationStatus {name} exists for another machine ({}); createStatus leaves it alone",
                    ats.machine_id
                )));
            }
            // Ours (to correct) or unowned for the same machine (to adopt).
            _ => {}
        }
    }
    let Some(owner_ref) = owner.controller_owner_ref(&()) else {
        return Ok(Outcome::Ok);
    };
    let mut spec = serde_json::json!({"machineId": owner.spec.machine_id});
    if let Some(c) = &owner.spec.credentials_ref {
        spec["credentialsRef"] = serde_json::json!({"name": c.name});
    }
    let patch = serde_json::json!({
        "apiVersion": "guestattestation.dev/v1alpha1",
        "kind": "AttestationStatus",
        "metadata": {"name": name, "ownerReferences": [owner_ref]},
        "spec": spec,
    });
    api.patch(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gae() -> GuestAttestationExtension {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
            "metadata": {"name": "vm1", "namespace": "ns", "uid": "u-1"},
            "spec": {"machineId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm1",
                     "clusterId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c1",
                     "credentialsRef": {"name": "azure-sp"}}
        }))
        .unwrap()
    }

    fn ats(owner_uid: Option<&str>, machine: &str) -> Seen {
        let mut v = serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
            "metadata": {"name": "vm1", "namespace": "ns"},
            "spec": {"machineId": machine, "credentialsRef": {"name": "azure-sp"}}
        });
        if let Some(uid) = owner_uid {
            v["metadata"]["ownerReferences"] = serde_json::json!([{
                "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
                "name": "vm1", "uid": uid, "controller": true}]);
        }
        Seen::from(&serde_json::from_value::<AttestationStatus>(v).unwrap())
    }

    #[test]
    fn ownership() {
        let owner = gae();
        let m = owner.spec.machine_id.clone();
        assert!(up_to_date(&ats(Some("u-1"), &m), &owner));
        assert_eq!(controlled_by(&ats(Some("u-2"), &m), &owner), Some(false));
        assert_eq!(controlled_by(&ats(None, &m), &owner), None);
        assert!(!up_to_date(&ats(Some("u-1"), "/other"), &owner));
    }
}
