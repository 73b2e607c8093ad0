//! The controller loop of the two per-VM kinds, in place of kube-runtime's `Controller`.
//!
//! Why not kube-runtime's: at fleet scale it kept, per object, a scheduler entry, a pending-set
//! entry and a delay-queue slot keyed by full `ObjectRef` clones (1.2 KB), and a table of
//! reconciles in flight sized by the cold start that never shrinks (1.6 KB); and since its own
//! concurrency limit serves its backlog in hash order, objects had to wait for a fair turn as
//! reconciles in flight, all polled on every wake (docs/performance.md). Here objects wait in one
//! queue ordered by time then arrival, keyed by a small index, and at most `concurrency`
//! reconciles are in flight, each a task of its own.
//!
//! What kube-runtime guarantees, kept: one reconcile per object at a time (a trigger during a run
//! runs it again after); the earliest of several requests wins; nothing runs before the cache has
//! its first full list; an object gone from the cache is not reconciled; a graceful shutdown stops
//! giving turns and waits for the reconciles running.
//!
//! A known leak, small: an object deleted while the watch was down (seen only as missing from the
//! relist, with no Delete event) keeps its slot, about 150 bytes, until it is next due; for good
//! if it was waiting only for a change.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::{Cache, Key, Namespaces};
use tokio::time::Instant;
use tracing::{Instrument, error, warn};

/// What a reconcile asks for next: to run again after a while, or only on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `duration` (sooner if a change comes first).
    #[must_use]
    pub const fn requeue(duration: Duration) -> Self {
        Self {
            requeue_after: Some(duration),
        }
    }

    /// Run again only when a change is seen.
    #[must_use]
    pub const fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// When to run again, if not on a change.
    #[must_use]
    pub const fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

impl From<Action> for kube::runtime::controller::Action {
    fn from(a: Action) -> Self {
        match a.requeue_after {
            Some(d) => Self::requeue(d),
            None => Self::await_change(),
        }
    }
}

/// How long to wait before running again an object whose reconcile panicked.
const AFTER_PANIC: Duration = Duration::from_secs(30);

/// One object's place in the queue.
#[derive(Debug)]
struct Slot {
    key: Arc<Key>,
    /// When it is due and its arrival number; while it runs, a request waiting for the run to end.
    due: Option<(Instant, u64)>,
    running: bool,
}

/// The queue: objects by index, due ones ordered by (time, arrival).
#[derive(Debug, Default)]
struct Queue {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    index: HashMap<Arc<Key>, usize>,
    namespaces: Namespaces,
    due: BTreeMap<(Instant, u64), usize>,
    arrivals: u64,
}

impl Queue {
    fn slot(&mut self, i: usize) -> Option<&mut Slot> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// The index of `namespace`/`name`, made on first sight.
    fn intern(&mut self, namespace: Option<&str>, name: &str) -> usize {
        let key = self.namespaces.key(namespace, name);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let key = Arc::new(key);
        let slot = Slot {
            key: Arc::clone(&key),
            due: None,
            running: false,
        };
        let i = if let Some(i) = self.free.pop() {
            self.slots[i] = Some(slot);
            i
        } else {
            self.slots.push(Some(slot));
            self.slots.len() - 1
        };
        self.index.insert(key, i);
        i
    }

    /// Asks for object `i` to run at `at`; the earliest request wins. While it runs, the request
    /// waits for the run to end.
    fn schedule(&mut self, i: usize, at: Instant) {
        let arrival = self.arrivals;
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        match slot.due {
            Some((t, _)) if t <= at => return,
            Some(old) if !slot.running => {
                self.due.remove(&old);
            }
            _ => {}
        }
        self.arrivals += 1;
        slot.due = Some((at, arrival));
        if !slot.running {
            self.due.insert((at, arrival), i);
        }
    }

    /// The first object due at `now`, marked running; `None` if none is.
    fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let entry = self.due.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let i = entry.remove();
        if let Some(slot) = self.slot(i) {
            slot.due = None;
            slot.running = true;
        }
        Some(i)
    }

    /// When the first object is due.
    fn next_due(&self) -> Option<Instant> {
        self.due.first_key_value().map(|((t, _), _)| *t)
    }

    /// Object `i`'s run ended: a request made while it ran goes into the queue, then `next`.
    fn finished(&mut self, i: usize, next: Option<Instant>) {
        let Some(slot) = self.slot(i) else { return };
        slot.running = false;
        if let Some(waiting) = slot.due.take() {
            self.schedule(i, waiting.0);
        }
        if let Some(at) = next {
            self.schedule(i, at);
        }
    }

    /// Forgets object `i` (gone from the cache, not running, not due).
    fn forget(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i).and_then(Option::take) {
            if let Some(d) = slot.due {
                self.due.remove(&d);
            }
            self.index.remove(&slot.key);
            self.free.push(i);
        }
    }

    fn key(&self, i: usize) -> Option<&Key> {
        Some(&self.slots.get(i)?.as_ref()?.key)
    }

    /// Objects known (running, due or waiting for a change).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

type Run = Pin<Box<dyn Future<Output = (usize, Option<Duration>)> + Send>>;

/// Runs `reconcile` for the objects of `store` that `triggers` name, at most `concurrency` at
/// once, until `shutdown` resolves and the reconciles running have ended. A failed reconcile's
/// next run is what `error_policy` says.
pub async fn run<K, R, Fut, E, P>(
    cache: Cache<K>,
    triggers: impl Stream<Item = Result<ObjectRef<K>, watcher::Error>> + Send,
    concurrency: u16,
    reconcile: R,
    error_policy: P,
    shutdown: impl Future<Output = ()> + Send,
) where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: Fn(Arc<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Send + 'static,
    P: Fn(Arc<K>, &E) -> Action + Send + Sync + 'static,
{
    let limit = usize::from(concurrency.max(1));
    let error_policy = Arc::new(error_policy);
    let mut queue = Queue::default();
    let mut running: FuturesUnordered<Run> = FuturesUnordered::new();
    let (mut ready, mut stopping, mut watching) = (false, false, true);
    let until_ready = cache.ready();
    tokio::pin!(triggers, shutdown, until_ready);
    loop {
        if ready && !stopping {
            let now = Instant::now();
            while running.len() < limit {
                let Some(i) = queue.pop_due(now) else { break };
                let Some(obj) = queue.key(i).and_then(|k| cache.get_key(k)) else {
                    queue.forget(i);
                    continue;
                };
                running.push(start(i, obj, &reconcile, &error_policy));
            }
        }
        if stopping && running.is_empty() {
            return;
        }
        let next = queue
            .next_due()
            .filter(|_| ready && !stopping && running.len() < limit);
        tokio::select! {
            () = &mut shutdown, if !stopping => stopping = true,
            listed = &mut until_ready, if !ready => {
                if !listed {
                    // The cache's writer is gone: its watch has ended, so has this controller.
                    stopping = true;
                }
                ready = true;
            }
            Some((i, after)) = running.next(), if !running.is_empty() => {
                queue.finished(i, after.map(|d| Instant::now() + d));
            }
            trigger = triggers.next(), if watching && !stopping => match trigger {
                Some(Ok(r)) => {
                    let i = queue.intern(r.namespace.as_deref(), &r.name);
                    queue.schedule(i, Instant::now());
                }
                Some(Err(e)) => warn!(error = %e, "watch failed; retrying with backoff"),
                None => watching = false,
            },
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
    }
}

/// Object `i`'s reconcile as a task of its own, so the loop polls only what woke.
fn start<K, R, Fut, E, P>(i: usize, obj: Arc<K>, reconcile: &R, error_policy: &Arc<P>) -> Run
where
    K: Send + Sync + 'static,
    R: Fn(Arc<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Send + 'static,
    P: Fn(Arc<K>, &E) -> Action + Send + Sync + 'static,
{
    let work = reconcile(Arc::clone(&obj));
    let policy = Arc::clone(error_policy);
    let task = tokio::spawn(
        async move {
            match work.await {
                Ok(action) => action,
                Err(e) => policy(obj, &e),
            }
        }
        .in_current_span(),
    );
    Box::pin(async move {
        match task.await {
            Ok(action) => (i, action.requeue_after),
            Err(e) => {
                error!(error = %e, "reconcile panicked; running it again later");
                (i, Some(AFTER_PANIC))
            }
        }
    })
}

/// The objects to reconcile for each change of the controller's own kind.
pub fn trigger_self<K, S>(stream: S) -> impl Stream<Item = Result<ObjectRef<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()>,
    S: Stream<Item = Result<K, watcher::Error>>,
{
    stream.map(|r| r.map(|o| ObjectRef::from_obj(&o)))
}

/// The owners of kind `K` of each changed object (its owner references).
pub fn trigger_owners<K, C, S>(
    stream: S,
) -> impl Stream<Item = Result<ObjectRef<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()>,
    C: Resource,
    S: Stream<Item = Result<C, watcher::Error>>,
{
    trigger_mapped(stream, |child: C| {
        let meta = child.meta();
        meta.owner_references
            .iter()
            .flatten()
            .filter(|o| o.kind == K::kind(&()) && o.api_version == K::api_version(&()))
            .map(|o| {
                let r = ObjectRef::new(&o.name);
                match &meta.namespace {
                    Some(ns) => r.within(ns),
                    None => r,
                }
            })
            .collect()
    })
}

/// The objects that `map` names for each changed object of another kind.
pub fn trigger_mapped<K, O, S, F>(
    stream: S,
    map: F,
) -> impl Stream<Item = Result<ObjectRef<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()>,
    S: Stream<Item = Result<O, watcher::Error>>,
    F: Fn(O) -> Vec<ObjectRef<K>>,
{
    stream.flat_map(move |r| {
        let refs: Vec<_> = match r {
            Ok(o) => map(o).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(refs)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;
    use tokio::sync::mpsc;

    use super::*;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn the_queue_serves_by_time_then_arrival_and_the_earliest_request_wins() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        let [a, b, c] = ["a", "b", "c"].map(|n| q.intern(Some("ns"), n));
        assert_eq!(q.intern(Some("ns"), "b"), b, "one index per object");
        q.schedule(c, at(t0, 1));
        q.schedule(a, at(t0, 1));
        q.schedule(b, at(t0, 5));
        q.schedule(b, at(t0, 9)); // later: ignored
        assert_eq!(q.pop_due(t0), None, "nothing due yet");
        assert_eq!(q.pop_due(at(t0, 1)), Some(c), "same time: arrival order");
        assert_eq!(q.pop_due(at(t0, 1)), Some(a));
        assert_eq!(q.pop_due(at(t0, 1)), None);
        q.schedule(b, at(t0, 2)); // earlier: replaces
        assert_eq!(q.next_due(), Some(at(t0, 2)));
        assert_eq!(q.pop_due(at(t0, 9)), Some(b));
        assert_eq!(q.pop_due(at(t0, 9)), None, "b was due once");
    }

    #[test]
    fn a_request_during_a_run_waits_for_it_to_end() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        let a = q.intern(None, "a");
        q.schedule(a, t0);
        assert_eq!(q.pop_due(t0), Some(a));
        q.schedule(a, t0);
        assert_eq!(q.pop_due(at(t0, 1)), None, "never twice at once");
        q.finished(a, Some(at(t0, 60)));
        assert_eq!(
            q.next_due(),
            Some(t0),
            "the request made during the run wins"
        );
        assert_eq!(q.pop_due(t0), Some(a));
        q.finished(a, Some(at(t0, 60)));
        assert_eq!(q.next_due(), Some(at(t0, 60)), "then the requeue");
    }

    #[test]
    fn forgotten_objects_free_their_index() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        let a = q.intern(Some("ns"), "a");
        q.schedule(a, t0);
        assert_eq!(q.pop_due(t0), Some(a));
        q.forget(a);
        assert_eq!(q.len(), 0);
        let b = q.intern(Some("ns"), "b");
        assert_eq!(b, a, "the index is reused");
        assert_eq!(
            q.key(b).unwrap().object_ref::<ConfigMap>(),
            ObjectRef::new("b").within("ns")
        );
        assert_eq!(q.namespaces.count(), 1, "namespaces are shared");
    }

    /// A cache, a trigger channel and a recording reconcile that holds each run until released.
    struct Harness {
        cache: Cache<ConfigMap>,
        tx: mpsc::UnboundedSender<Result<ObjectRef<ConfigMap>, watcher::Error>>,
        log: Arc<Mutex<Vec<String>>>,
        done: tokio::task::JoinHandle<()>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    fn harness(concurrency: u16, requeue: Option<Duration>, hold: Duration) -> Harness {
        let cache = Cache::<ConfigMap>::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = Arc::clone(&log);
        let done = tokio::spawn(run(
            cache.clone(),
            tokio_stream(rx),
            concurrency,
            move |o: Arc<ConfigMap>| {
                let seen = Arc::clone(&seen);
                async move {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    seen.lock().unwrap().push(format!("+{name}"));
                    tokio::time::sleep(hold).await;
                    seen.lock().unwrap().push(format!("-{name}"));
                    if name.starts_with("fail") {
                        return Err(std::io::Error::other("boom"));
                    }
                    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
                }
            },
            |_, _: &std::io::Error| Action::requeue(Duration::from_secs(7)),
            async move {
                let _ = stopped.await;
            },
        ));
        Harness {
            cache,
            tx,
            log,
            done,
            stop: Some(stop),
        }
    }

    fn tokio_stream<T: Send + 'static>(
        mut rx: mpsc::UnboundedReceiver<T>,
    ) -> impl Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    impl Harness {
        fn list(&mut self, names: &[&str]) {
            self.cache.apply(&Event::Init);
            for n in names {
                self.cache.apply(&Event::InitApply(cm(n)));
            }
            self.cache.apply(&Event::InitDone);
        }

        fn trigger(&self, name: &str) {
            self.tx.send(Ok(ObjectRef::new(name).within("ns"))).unwrap();
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        async fn settle(&self) {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_runs_before_the_first_list_then_turns_go_in_order() {
        let mut h = harness(2, None, Duration::from_secs(1));
        for n in ["a", "b", "c", "d"] {
            h.trigger(n);
        }
        h.settle().await;
        assert!(h.log().is_empty(), "the cache is not listed yet");
        h.list(&["a", "b", "c", "d"]);
        h.settle().await;
        assert_eq!(h.log(), ["+a", "+b"], "two at once, in arrival order");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(h.log(), ["+a", "+b", "-a", "-b", "+c", "+d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_run_per_object_at_a_time_and_a_trigger_during_it_runs_it_again() {
        let mut h = harness(4, None, Duration::from_secs(1));
        h.list(&["a"]);
        h.trigger("a");
        h.settle().await;
        h.trigger("a");
        h.trigger("a");
        h.settle().await;
        assert_eq!(h.log(), ["+a"]);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            h.log(),
            ["+a", "-a", "+a", "-a"],
            "the two triggers ran once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requeues_and_error_policy_schedule_the_next_run() {
        let mut h = harness(4, Some(Duration::from_secs(60)), Duration::ZERO);
        h.list(&["a", "fail"]);
        h.trigger("a");
        h.trigger("fail");
        h.settle().await;
        assert_eq!(h.log(), ["+a", "-a", "+fail", "-fail"]);
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(h.log().len(), 6, "the failure retried after 7 s");
        tokio::time::sleep(Duration::from_secs(53)).await;
        let runs = |name: &str| h.log().iter().filter(|l| *l == name).count();
        assert_eq!(runs("+a"), 2, "a requeued after 60 s");
        assert_eq!(
            runs("+fail"),
            9,
            "the failure retried every 7 s: 0, 7, … 56"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn objects_gone_from_the_cache_are_not_run() {
        let mut h = harness(4, None, Duration::ZERO);
        h.list(&["a"]);
        h.trigger("gone");
        h.trigger("a");
        h.settle().await;
        assert_eq!(h.log(), ["+a", "-a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_runs_in_flight_and_starts_no_more() {
        let mut h = harness(1, None, Duration::from_secs(5));
        h.list(&["a", "b"]);
        h.trigger("a");
        h.trigger("b");
        h.settle().await;
        h.stop.take().unwrap().send(()).unwrap();
        h.settle().await;
        assert!(!h.done.is_finished(), "a is still running");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(h.done.is_finished());
        assert_eq!(h.log(), ["+a", "-a"], "b never started");
    }

    #[tokio::test]
    async fn owners_and_mapped_objects_are_triggered() {
        let mut child = cm("child");
        child.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: "u".into(),
                ..Default::default()
            },
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Secret".into(),
                name: "not-a-configmap".into(),
                uid: "v".into(),
                ..Default::default()
            },
        ]);
        let owners: Vec<_> = trigger_owners::<ConfigMap, _, _>(futures::stream::iter([Ok(child)]))
            .collect()
            .await;
        assert_eq!(owners.len(), 1);
        assert_eq!(
            owners[0].as_ref().unwrap(),
            &ObjectRef::new("owner").within("ns")
        );
        let mapped: Vec<_> =
            trigger_mapped(futures::stream::iter([Ok(cm("x"))]), |o: ConfigMap| {
                vec![ObjectRef::<ConfigMap>::new(&o.metadata.name.unwrap()).within("ns")]
            })
            .collect()
            .await;
        assert_eq!(mapped.len(), 1);
    }
}
