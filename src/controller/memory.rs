//! A controller's per-object memory: what it learned between reconciles (Azure observations, operations in
//! flight, backoff), keyed by uid. It is a cache, lost on restart by design: the status and Azure hold the
//! truth. Objects deleted without a last reconcile are pruned against the controller's cache now and then.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often memory of objects no longer cached is dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// The uids a controller's cache holds now.
type LiveUids = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// Per-uid memory of type `M`.
pub struct Store<M> {
    map: Mutex<HashMap<String, M>>,
    /// One per watched namespace: a controller runs once per namespace with one memory.
    caches: Mutex<Vec<LiveUids>>,
}

impl<M> Default for Store<M> {
    fn default() -> Self {
        Store {
            map: Mutex::new(HashMap::new()),
            caches: Mutex::new(Vec::new()),
        }
    }
}

impl<M> std::fmt::Debug for Store<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
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

    /// Adds a cache whose objects count as live when pruning.
    pub fn add_cache(&self, uids: impl Fn() -> Vec<String> + Send + Sync + 'static) {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(uids));
    }

    /// Forgets the objects in none of the caches.
    pub fn prune_now(&self) {
        let live: HashSet<String> = self
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|uids| uids())
            .collect();
        self.retain(&live);
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

/// Adds `reader` to the caches of `store`, then every few minutes forgets the objects in none of
/// them (deleted ones get no reconcile to say so). Runs until aborted.
pub async fn prune<M, V>(store: &Store<M>, reader: V)
where
    M: Clone + Default,
    V: super::cache::View,
{
    store.add_cache(move || reader.uids());
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        store.prune_now();
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

    #[test]
    fn pruning_keeps_what_any_namespace_cache_holds() {
        let s: Store<u32> = Store::default();
        for (uid, v) in [("ns1-a", 1), ("ns2-b", 2), ("gone", 3)] {
            s.put(uid, v);
        }
        s.add_cache(|| vec!["ns1-a".to_owned()]);
        s.add_cache(|| vec!["ns2-b".to_owned()]);
        s.prune_now();
        assert_eq!((s.get("ns1-a"), s.get("ns2-b"), s.len()), (1, 2, 2));
    }
}
