//! The cache of the two per-VM kinds, packed: each object is kept as its JSON compressed against
//! a dictionary (the JSON of a recent object of the same kind), and unpacked when a reconcile
//! runs.
//!
//! Why: a cached object is a struct of about 1 KB plus some forty separately allocated strings;
//! kube-runtime's reflector kept 4.5 KB a VM for the two kinds, most of what T1 allows. Objects
//! of one kind differ in a few ids, names and times, so against a dictionary each packs to a few
//! hundred bytes. Unpacking costs tens of microseconds, paid once per reconcile.
//!
//! It follows a watch as a reflector does: a relist is swapped in once complete, and the cache is
//! ready after its first full list.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// What the companions of a controller read of its cache.
pub trait View: Clone + Send + Sync + 'static {
    /// Objects cached.
    fn count(&self) -> usize;
    /// Their uids.
    fn uids(&self) -> Vec<String>;
    /// Bytes the cache holds for them, where it keeps count (the packed cache does).
    fn bytes(&self) -> usize {
        0
    }
}

impl<K> View for kube::runtime::reflector::Store<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    fn count(&self) -> usize {
        self.len()
    }

    fn uids(&self) -> Vec<String> {
        self.state()
            .iter()
            .filter_map(|o| o.meta().uid.clone())
            .collect()
    }
}

/// An object's namespace (shared by all the objects in it) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    namespace: Option<Arc<str>>,
    name: Box<str>,
}

impl Key {
    /// The reference kube's APIs take.
    #[cfg(test)]
    pub fn object_ref<K: Resource<DynamicType = ()>>(
        &self,
    ) -> kube::runtime::reflector::ObjectRef<K> {
        let r = kube::runtime::reflector::ObjectRef::new(&self.name);
        match &self.namespace {
            Some(ns) => r.within(ns),
            None => r,
        }
    }
}

/// Namespaces, one copy each.
#[derive(Debug, Default)]
pub struct Namespaces(HashSet<Arc<str>>);

impl Namespaces {
    /// The key of `namespace`/`name`.
    pub fn key(&mut self, namespace: Option<&str>, name: &str) -> Key {
        let namespace = namespace.map(|ns| {
            if let Some(shared) = self.0.get(ns) {
                Arc::clone(shared)
            } else {
                let shared: Arc<str> = ns.into();
                self.0.insert(Arc::clone(&shared));
                shared
            }
        });
        Key {
            namespace,
            name: name.into(),
        }
    }

    /// The key of `namespace`/`name` if `namespace` was seen (no object is in another).
    pub fn find(&self, namespace: Option<&str>, name: &str) -> Option<Key> {
        let namespace = match namespace {
            Some(ns) => Some(Arc::clone(self.0.get(ns)?)),
            None => None,
        };
        Some(Key {
            namespace,
            name: name.into(),
        })
    }

    /// Namespaces seen.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

/// One object, packed.
#[derive(Debug)]
struct Packed {
    uid: Option<Box<str>>,
    /// The dictionary it was packed against.
    dictionary: Arc<[u8]>,
    /// Its JSON, compressed, with its length first.
    bytes: Box<[u8]>,
}

impl Packed {
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

#[derive(Debug, Default)]
struct State {
    listed: bool,
    objects: HashMap<Key, Packed>,
    /// Packed bytes of `objects`.
    objects_bytes: usize,
    /// A relist in progress, swapped in when complete, and its packed bytes.
    relist: Option<(HashMap<Key, Packed>, usize)>,
    namespaces: Namespaces,
    /// The dictionaries still in use; the last is the current one.
    dictionaries: Vec<Arc<[u8]>>,
}

/// A packed cache of `K`, filled from a watch (see [`Cache::apply`]); cheap to clone (shared).
#[derive(Debug)]
pub struct Cache<K> {
    state: Arc<RwLock<State>>,
    listed: watch::Sender<bool>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            listed: self.listed.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            listed: watch::Sender::new(false),
            kind: PhantomData,
        }
    }
}

/// A new dictionary is taken when an object's JSON is this much longer than the current one:
/// objects grow as their status fills in, and a dictionary that covers it packs better. The
/// ratio bounds how often it changes (a handful of times in a cache's life).
const DICTIONARY_GROWTH: f64 = 1.25;

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    /// Takes in one event of the watch.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        match event {
            watcher::Event::Apply(o) => {
                if let Some((key, packed)) = state.pack(o) {
                    state.objects_bytes += packed.len();
                    if let Some(old) = state.objects.insert(key, packed) {
                        state.objects_bytes -= old.len();
                    }
                }
            }
            watcher::Event::Delete(o) => {
                let meta = o.meta();
                if let Some(key) = meta
                    .name
                    .as_deref()
                    .and_then(|name| state.namespaces.find(meta.namespace.as_deref(), name))
                    && let Some(old) = state.objects.remove(&key)
                {
                    state.objects_bytes -= old.len();
                }
            }
            watcher::Event::Init => state.relist = Some((HashMap::new(), 0)),
            watcher::Event::InitApply(o) => {
                if let Some((key, packed)) = state.pack(o) {
                    let (relist, bytes) = state.relist.get_or_insert_default();
                    *bytes += packed.len();
                    if let Some(old) = relist.insert(key, packed) {
                        *bytes -= old.len();
                    }
                }
            }
            watcher::Event::InitDone => {
                let (relisted, bytes) = state.relist.take().unwrap_or_default();
                state.objects = relisted;
                state.objects_bytes = bytes;
                state.listed = true;
                self.listed.send_replace(true);
            }
        }
    }

    /// The object `r` names, unpacked (the loop reads by [`Key`], see [`Cache::get_key`]).
    #[cfg(test)]
    pub fn get(&self, r: &kube::runtime::reflector::ObjectRef<K>) -> Option<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let key = state.namespaces.find(r.namespace.as_deref(), &r.name)?;
        state.objects.get(&key).and_then(unpack).map(Arc::new)
    }

    /// The object `key` names, unpacked.
    pub fn get_key(&self, key: &Key) -> Option<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.objects.get(key).and_then(unpack).map(Arc::new)
    }

    /// Every object, unpacked (for the rare reads of the whole cache).
    pub fn state(&self) -> Vec<Arc<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .objects
            .values()
            .filter_map(unpack)
            .map(Arc::new)
            .collect()
    }

    /// Resolves once the first full list is in (false if the cache can no longer be filled).
    pub async fn ready(&self) -> bool {
        let mut rx = self.listed.subscribe();
        rx.wait_for(|listed| *listed).await.is_ok()
    }
}

impl<K> View for Cache<K>
where
    K: Send + Sync + 'static,
{
    fn count(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .objects
            .len()
    }

    fn uids(&self) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .objects
            .values()
            .filter_map(|p| p.uid.as_deref().map(str::to_owned))
            .collect()
    }

    /// The packed objects and the dictionaries they use.
    fn bytes(&self) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let in_use = state
            .dictionaries
            .iter()
            .filter(|d| Arc::strong_count(d) > 1);
        state.objects_bytes + in_use.map(|d| d.len()).sum::<usize>()
    }
}

impl State {
    /// `o`'s key and packed form; `None` for an object without a name or that does not serialize
    /// (neither happens with objects from the API server).
    fn pack<K: Resource + Serialize>(&mut self, o: &K) -> Option<(Key, Packed)> {
        let meta = o.meta();
        let key = self
            .namespaces
            .key(meta.namespace.as_deref(), meta.name.as_deref()?);
        let json = serde_json::to_vec(o).ok()?;
        let dictionary = match self.dictionaries.last() {
            #[allow(clippy::cast_precision_loss)] // lengths of a few KB
            Some(d) if (json.len() as f64) <= d.len() as f64 * DICTIONARY_GROWTH => Arc::clone(d),
            _ => {
                // Forget the dictionaries no object uses any more (only this list holds them).
                self.dictionaries.retain(|d| Arc::strong_count(d) > 1);
                let d: Arc<[u8]> = json.as_slice().into();
                self.dictionaries.push(Arc::clone(&d));
                d
            }
        };
        let bytes = lz4_flex::block::compress_prepend_size_with_dict(&json, &dictionary);
        Some((
            key,
            Packed {
                uid: meta.uid.as_deref().map(Into::into),
                dictionary,
                bytes: bytes.into_boxed_slice(),
            },
        ))
    }
}

fn unpack<K: DeserializeOwned>(p: &Packed) -> Option<K> {
    let json =
        lz4_flex::block::decompress_size_prepended_with_dict(&p.bytes, &p.dictionary).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::ObjectRef;

    use super::*;

    fn cm(name: &str, data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            data: Some([("k".to_owned(), data.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn r(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("ns")
    }

    #[tokio::test]
    async fn follows_the_watch_as_a_reflector_does() {
        let cache = Cache::<ConfigMap>::default();
        let ready = tokio::spawn({
            let c = cache.clone();
            async move { c.ready().await }
        });
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(cm("a", "1")));
        assert!(cache.get(&r("a")).is_none(), "listing");
        assert!(!ready.is_finished());
        cache.apply(&watcher::Event::InitDone);
        assert!(ready.await.unwrap());
        assert_eq!(
            *cache.get(&r("a")).unwrap(),
            cm("a", "1"),
            "unpacks as it was"
        );

        cache.apply(&watcher::Event::Apply(cm("b", "2")));
        cache.apply(&watcher::Event::Apply(cm("a", "3")));
        assert_eq!(*cache.get(&r("a")).unwrap(), cm("a", "3"));
        assert_eq!(cache.count(), 2);
        let mut uids = cache.uids();
        uids.sort();
        assert_eq!(uids, ["uid-a", "uid-b"]);
        cache.apply(&watcher::Event::Delete(cm("a", "3")));
        assert!(cache.get(&r("a")).is_none());
        assert!(
            cache.get(&ObjectRef::new("b").within("other")).is_none(),
            "namespaces apart"
        );

        // A relist replaces the objects once complete; until then the old view answers.
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(cm("c", "4")));
        assert!(cache.get(&r("b")).is_some());
        cache.apply(&watcher::Event::InitDone);
        assert!(cache.get(&r("b")).is_none());
        assert_eq!(cache.state().len(), 1);

        // What it holds is counted through replacements, deletions and relists.
        let one = cache.bytes();
        cache.apply(&watcher::Event::Apply(cm("c", "4")));
        assert_eq!(cache.bytes(), one, "the same object again");
        cache.apply(&watcher::Event::Apply(cm("d", "5")));
        assert!(cache.bytes() > one);
        cache.apply(&watcher::Event::Delete(cm("d", "5")));
        assert_eq!(cache.bytes(), one);
        cache.apply(&watcher::Event::Delete(cm("c", "4")));
        assert_eq!(cache.bytes(), 0, "no object, no dictionary in use");
    }

    #[test]
    fn similar_objects_pack_small_against_the_dictionary() {
        let cache = Cache::<ConfigMap>::default();
        let long = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/";
        cache.apply(&watcher::Event::Apply(cm("vm-0", &format!("{long}vm-0"))));
        let first = cache.bytes();
        for i in 1..100 {
            let name = format!("vm-{i}");
            cache.apply(&watcher::Event::Apply(cm(&name, &format!("{long}{name}"))));
        }
        let per_object = (cache.bytes() - first) / 99;
        let raw = serde_json::to_vec(&cm("vm-1", &format!("{long}vm-1")))
            .unwrap()
            .len();
        assert!(
            per_object * 4 < raw,
            "{per_object} bytes packed of {raw} bytes of JSON"
        );
        assert_eq!(
            cache.get(&r("vm-42")).unwrap().data.as_ref().unwrap()["k"],
            format!("{long}vm-42")
        );
    }

    #[test]
    fn namespaces_are_shared() {
        let mut n = Namespaces::default();
        let a = n.key(Some("ns"), "a");
        let b = n.key(Some("ns"), "b");
        assert_eq!(n.count(), 1);
        assert!(Arc::ptr_eq(
            a.namespace.as_ref().unwrap(),
            b.namespace.as_ref().unwrap()
        ));
        assert_eq!(a.object_ref::<ConfigMap>(), r("a"));
    }
}
