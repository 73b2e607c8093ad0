//! The AttestationStatuses as the extension controller reads them, kept from a watch: per object
//! its controller's uid, its machine and its credentials, which is all `children::ensure`
//! compares. A cached AttestationStatus cost about 2 KiB a VM even without its status (the
//! struct alone is 840 bytes); this costs a few hundred bytes.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::crd::{AttestationStatus, CredentialsRef};

/// What `children::ensure` reads of an AttestationStatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The uid of its controller (the owner reference with `controller: true`), if any.
    pub controller: Option<String>,
    /// spec.machineId.
    pub machine_id: String,
    /// spec.credentialsRef.
    pub credentials_ref: Option<CredentialsRef>,
}

impl From<&AttestationStatus> for Seen {
    fn from(a: &AttestationStatus) -> Self {
        Self {
            controller: a
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone()),
            machine_id: a.spec.machine_id.clone(),
            credentials_ref: a.spec.credentials_ref.clone(),
        }
    }
}

type Key = (String, String);

fn key(a: &AttestationStatus) -> Key {
    (a.namespace().unwrap_or_default(), a.name_any())
}

#[derive(Debug, Default)]
struct State {
    /// The first list is complete (before it, callers read the API server).
    listed: bool,
    seen: HashMap<Key, Seen>,
    /// A relist in progress: swapped in when it is complete, as a reflector does.
    relist: Option<HashMap<Key, Seen>>,
}

/// The AttestationStatuses one watch has seen; cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Owned(Arc<RwLock<State>>);

impl Owned {
    /// `ns/name` as last seen (`Some(None)`: it does not exist), or `None` until the watch
    /// has listed every object once.
    pub fn get(&self, ns: &str, name: &str) -> Option<Option<Seen>> {
        let state = self.0.read().unwrap_or_else(PoisonError::into_inner);
        state
            .listed
            .then(|| state.seen.get(&(ns.to_owned(), name.to_owned())).cloned())
    }

    /// Takes in one event of the watch.
    pub fn apply(&self, event: &watcher::Event<AttestationStatus>) {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(a) => {
                state.seen.insert(key(a), Seen::from(a));
            }
            watcher::Event::Delete(a) => {
                state.seen.remove(&key(a));
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(a) => {
                state
                    .relist
                    .get_or_insert_default()
                    .insert(key(a), Seen::from(a));
            }
            watcher::Event::InitDone => {
                let relisted = state.relist.take().unwrap_or_default();
                state.seen = relisted;
                state.listed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ats(name: &str, owner: Option<&str>) -> AttestationStatus {
        let mut v = serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"machineId": format!("/m/{name}"), "credentialsRef": {"name": "azure-sp"}}
        });
        if let Some(uid) = owner {
            v["metadata"]["ownerReferences"] = serde_json::json!([
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "not-controller"},
                {"apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
                 "name": name, "uid": uid, "controller": true}]);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unknown_until_listed_then_follows_the_watch() {
        let owned = Owned::default();
        assert_eq!(owned.get("ns", "a"), None, "not listed yet");
        owned.apply(&watcher::Event::Init);
        owned.apply(&watcher::Event::InitApply(ats("a", Some("u-a"))));
        assert_eq!(owned.get("ns", "a"), None, "listing");
        owned.apply(&watcher::Event::InitDone);
        let a = owned.get("ns", "a").unwrap().unwrap();
        assert_eq!(a.controller.as_deref(), Some("u-a"));
        assert_eq!(a.machine_id, "/m/a");
        assert_eq!(a.credentials_ref.unwrap().name, "azure-sp");
        assert_eq!(owned.get("ns", "b"), Some(None), "listed: absent");
        assert_eq!(owned.get("other", "a"), Some(None), "namespaces apart");

        owned.apply(&watcher::Event::Apply(ats("b", None)));
        assert_eq!(owned.get("ns", "b").unwrap().unwrap().controller, None);
        owned.apply(&watcher::Event::Delete(ats("a", Some("u-a"))));
        assert_eq!(owned.get("ns", "a"), Some(None));

        // A relist replaces what was seen once complete; until then the old view answers.
        owned.apply(&watcher::Event::Init);
        owned.apply(&watcher::Event::InitApply(ats("c", None)));
        assert!(owned.get("ns", "b").unwrap().is_some());
        owned.apply(&watcher::Event::InitDone);
        assert_eq!(owned.get("ns", "b"), Some(None));
        assert!(owned.get("ns", "c").unwrap().is_some());
    }
}
