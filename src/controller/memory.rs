//! A controller's per-object memory: what it learned between reconciles (Azure observations, operations in
//! flight, backoff), keyed by uid. It is a cache, lost on restart by design: the status and Azure hold the
//! truth. Objects deleted without a last reconcile are pruned against the controller's cache now and then.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kube::runtime::reflector;
use kube::{Resource, ResourceExt};

/// How often memory of objects no longer cached is dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Per-uid memory of type `M`.
#[derive(Debug)]
pub struct Store<M> {
    map: Mutex<HashMap<String, M>>,
}

impl<M> Default for Store<M> {
    fn default() -> Self {
        Store {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<M: Clone + Default> Store<M> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, M>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The memory of an object (the default when there is none).
    pub fn get(&self, uid: &str) -> M {
        self.lock().get(uid).cloned().unwrap_or_default()
    }

    /// Keeps `m` as the memory of an object.
    pub fn put(&self, uid: &str, m: M) {
        self.lock().insert(uid.to_owned(), m);
    }

    /// Forgets an object.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Keeps only the objects in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        self.lock().retain(|uid, _| live.contains(uid));
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Every few minutes, forgets the objects no longer in `reader` (deleted ones get no reconcile to say so).
/// Runs until aborted.
pub async fn prune<K, M>(store: &Store<M>, reader: reflector::Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    M: Clone + Default,
{
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let live: HashSet<String> = reader.state().iter().filter_map(|o| o.uid()).collect();
        store.retain(&live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_prunes() {
        let s: Store<u32> = Store::default();
        assert_eq!(s.get("a"), 0);
        s.put("a", 1);
        s.put("b", 2);
        assert_eq!(s.get("a"), 1);
        s.forget("a");
        assert_eq!(s.get("a"), 0);
        s.put("c", 3);
        s.retain(&HashSet::from(["c".to_owned()]));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("b"), 0);
        assert_eq!(s.get("c"), 3);
    }
}
