//! Metrics derived from the custom resources' status (I/O: one watch per kind and namespace),
//! for alerts that must survive a leader change: a new leader's counters start at zero, but the
//! objects' conditions are the truth. Only the leader runs it.
//!
//! Each object is reduced to a few short strings on arrival (no object is kept), and the gauges
//! are computed at scrape time:
//!
//! * `guest_attestation_resources{kind}`: objects per kind;
//! * `guest_attestation_resource_conditions{kind,condition,status,reason}`: objects per condition;
//! * `guest_attestation_resource_condition_oldest_transition_timestamp_seconds{…}`: the oldest
//!   `lastTransitionTime` of each such group (how long something has been stuck);
//! * `guest_attestation_resources_generation_pending{kind}`: objects whose latest spec the
//!   operator has not yet acted on (`status.observedGeneration < metadata.generation`);
//! * `guest_attestation_attestation_health{health,reason}`: AttestationStatus objects by health.
//!
//! Labels are bounded: kinds, condition types and reasons come from closed sets in the
//! controllers; a value that is not a short identifier (at most 64 ASCII letters and digits), or
//! one past the first 512 distinct values, is reported as `Other`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use crate::crd::{
    AttestationProvider, AttestationStatus, Condition, ConditionStatus, GuestAttestationExtension,
    Health,
};

/// One condition, reduced.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cond {
    type_: Arc<str>,
    status: &'static str,
    reason: Arc<str>,
    since: i64,
}

/// One object, reduced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    conditions: Vec<Cond>,
    generation_pending: bool,
    health: Option<(&'static str, Arc<str>)>,
}

/// Label values seen so far. They come from closed sets, so each is kept once for all objects
/// (a copy per object cost about 0.4 KiB a VM).
#[derive(Debug, Default)]
struct Values(Mutex<HashSet<Arc<str>>>);

impl Values {
    /// The label value for `value`: itself when it is a short identifier and fewer than `max`
    /// values are known, else `Other`; one shared copy.
    fn get(&self, value: &str, max: usize) -> Arc<str> {
        let short = value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric());
        let mut values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let value = if short && (values.len() < max || values.contains(value)) {
            value
        } else {
            "Other"
        };
        if let Some(v) = values.get(value) {
            return Arc::clone(v);
        }
        let v: Arc<str> = Arc::from(value);
        values.insert(Arc::clone(&v));
        v
    }
}

static VALUES: LazyLock<Values> = LazyLock::new(Values::default);

/// More distinct values than this are reported as `Other` (the sets are far smaller).
const MAX_VALUES: usize = 512;

fn bounded(value: &str) -> Arc<str> {
    VALUES.get(value, MAX_VALUES)
}

fn status_str(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

fn reduce(
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[Condition],
    health: Option<(&'static str, Arc<str>)>,
) -> Summary {
    Summary {
        conditions: conditions
            .iter()
            .map(|c| Cond {
                type_: bounded(&c.type_),
                status: status_str(c.status),
                reason: bounded(&c.reason),
                since: c.last_transition_time.0.as_second(),
            })
            .collect(),
        generation_pending: match (generation, observed) {
            (Some(g), Some(o)) => o < g,
            (Some(_), None) => true,
            _ => false,
        },
        health,
    }
}

/// A kind whose status can be reduced.
pub trait Summarize {
    /// The kind's name, as in the `kind` label.
    const KIND: &'static str;
    /// The object, reduced.
    fn summarize(&self) -> Summary;
}

impl Summarize for AttestationStatus {
    const KIND: &'static str = "AttestationStatus";
    fn summarize(&self) -> Summary {
        let s = self.status.clone().unwrap_or_default();
        let health = s.health.map(|h| {
            let h = match h {
                Health::Healthy => "Healthy",
                Health::Unhealthy => "Unhealthy",
                Health::Unknown => "Unknown",
            };
            (h, bounded(s.reason.as_deref().unwrap_or("None")))
        });
        reduce(
            self.metadata.generation,
            s.observed_generation,
            &s.conditions,
            health,
        )
    }
}

impl Summarize for GuestAttestationExtension {
    const KIND: &'static str = "GuestAttestationExtension";
    fn summarize(&self) -> Summary {
        let s = self.status.clone().unwrap_or_default();
        reduce(
            self.metadata.generation,
            s.observed_generation,
            &s.conditions,
            None,
        )
    }
}

impl Summarize for AttestationProvider {
    const KIND: &'static str = "AttestationProvider";
    fn summarize(&self) -> Summary {
        let s = self.status.clone().unwrap_or_default();
        reduce(
            self.metadata.generation,
            s.observed_generation,
            &s.conditions,
            None,
        )
    }
}

/// What one watch has seen: its objects' summaries, and whether its first list completed.
#[derive(Debug, Default)]
struct Seen {
    objects: HashMap<String, Summary>,
    synced: bool,
}

/// The summaries of every watched kind and namespace; a Prometheus collector.
#[derive(Debug, Default)]
pub struct StatusMetrics {
    /// (kind, namespace or "*") → what that watch has seen.
    watches: Mutex<BTreeMap<(&'static str, String), Seen>>,
}

impl StatusMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), Seen>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when every registered watch has completed its first list.
    pub fn synced(&self) -> bool {
        let w = self.lock();
        !w.is_empty() && w.values().all(|s| s.synced)
    }

    /// Forgets everything (the leader stopped).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn register(&self, key: (&'static str, String)) {
        self.lock().entry(key).or_default();
    }

    fn apply(&self, key: &(&'static str, String), event: Change) {
        let mut w = self.lock();
        let Some(seen) = w.get_mut(key) else {
            return;
        };
        match event {
            Change::Upsert(id, s) => {
                seen.objects.insert(id, s);
            }
            Change::Remove(id) => {
                seen.objects.remove(&id);
            }
            Change::Relist(objects) => {
                seen.objects = objects;
                seen.synced = true;
            }
        }
    }

    /// Watches `K` in `namespace` (None = all) until `stop` turns true.
    pub async fn watch<K>(
        self: Arc<Self>,
        client: Client,
        namespace: Option<String>,
        page_size: u32,
        mut stop: watch::Receiver<bool>,
    ) where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Summarize
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let key = (K::KIND, namespace.clone().unwrap_or_else(|| "*".to_owned()));
        self.register(key.clone());
        let api: Api<K> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let mut stream = std::pin::pin!(
            watcher(api, watcher::Config::default().page_size(page_size)).default_backoff()
        );
        let id = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        let mut relist: Option<HashMap<String, Summary>> = None;
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = stop.wait_for(|s| *s) => return,
            };
            match event {
                None => return,
                Some(Err(e)) => {
                    warn!(kind = K::KIND, error = %e, "status metrics watch failed; retrying");
                }
                Some(Ok(watcher::Event::Init)) => relist = Some(HashMap::new()),
                Some(Ok(watcher::Event::InitApply(o))) => {
                    if let Some(r) = relist.as_mut() {
                        r.insert(id(&o), o.summarize());
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    self.apply(&key, Change::Relist(relist.take().unwrap_or_default()));
                }
                Some(Ok(watcher::Event::Apply(o))) => {
                    self.apply(&key, Change::Upsert(id(&o), o.summarize()));
                }
                Some(Ok(watcher::Event::Delete(o))) => self.apply(&key, Change::Remove(id(&o))),
            }
        }
    }
}

enum Change {
    Upsert(String, Summary),
    Remove(String),
    Relist(HashMap<String, Summary>),
}

type CondKey = (&'static str, Arc<str>, &'static str, Arc<str>);

impl Collector for StatusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let w = self.lock();
        if w.is_empty() {
            return Ok(());
        }
        let mut objects: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut pending: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut conds: BTreeMap<CondKey, (i64, i64)> = BTreeMap::new();
        let mut health: BTreeMap<(&'static str, Arc<str>), i64> = BTreeMap::new();
        for ((kind, _), seen) in w.iter() {
            *objects.entry(kind).or_default() += i64::try_from(seen.objects.len()).unwrap_or(0);
            pending.entry(kind).or_default();
            for s in seen.objects.values() {
                if s.generation_pending {
                    *pending.entry(kind).or_default() += 1;
                }
                for c in &s.conditions {
                    let e = conds
                        .entry((kind, c.type_.clone(), c.status, c.reason.clone()))
                        .or_insert((0, i64::MAX));
                    e.0 += 1;
                    e.1 = e.1.min(c.since);
                }
                if let Some((h, r)) = &s.health {
                    *health.entry((h, r.clone())).or_default() += 1;
                }
            }
        }
        drop(w);
        let mut family = encoder.encode_descriptor(
            "resources",
            "Custom resources watched by the leader, by kind",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in &objects {
            ConstGauge::new(*n).encode(family.encode_family(&[("kind", *kind)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "resources_generation_pending",
            "Custom resources whose latest spec the operator has not acted on yet (status.observedGeneration < metadata.generation)",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in &pending {
            ConstGauge::new(*n).encode(family.encode_family(&[("kind", *kind)])?)?;
        }
        let labels = |(kind, type_, status, reason): &CondKey| {
            vec![
                ("kind", (*kind).to_owned()),
                ("condition", type_.to_string()),
                ("status", (*status).to_owned()),
                ("reason", reason.to_string()),
            ]
        };
        let mut family = encoder.encode_descriptor(
            "resource_conditions",
            "Custom resources by condition type, status and reason",
            None,
            MetricType::Gauge,
        )?;
        for (k, (n, _)) in &conds {
            ConstGauge::new(*n).encode(family.encode_family(&labels(k))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "resource_condition_oldest_transition_timestamp_seconds",
            "The oldest lastTransitionTime (Unix seconds) among the custom resources with this condition type, status and reason",
            None,
            MetricType::Gauge,
        )?;
        for (k, (_, since)) in &conds {
            ConstGauge::new(*since).encode(family.encode_family(&labels(k))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "attestation_health",
            "AttestationStatus objects by health (Healthy, Unhealthy, Unknown) and reason",
            None,
            MetricType::Gauge,
        )?;
        for ((h, r), n) in &health {
            ConstGauge::new(*n).encode(
                family.encode_family(&[("health", (*h).to_owned()), ("reason", r.to_string())])?,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::{encoding::text::encode, registry::Registry};

    #[allow(clippy::needless_pass_by_value)] // reads better at the call sites
    fn status(name: &str, generation: i64, body: serde_json::Value) -> AttestationStatus {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {"machineId": "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/m"},
            "status": body,
        }))
        .unwrap()
    }

    fn ready(status: &str, reason: &str, at: &str) -> serde_json::Value {
        serde_json::json!({"type": "Ready", "status": status, "reason": reason, "message": "", "lastTransitionTime": at})
    }

    #[test]
    fn gauges_from_summaries() {
        let m = Arc::new(StatusMetrics::default());
        let key = ("AttestationStatus", "ns".to_owned());
        m.register(key.clone());
        assert!(!m.synced());
        let a = status(
            "a",
            1,
            serde_json::json!({"observedGeneration": 1, "health": "Healthy", "reason": "Attested",
                "conditions": [ready("True", "Attested", "2026-01-01T00:00:00Z")]}),
        );
        let b = status(
            "b",
            2,
            serde_json::json!({"observedGeneration": 1, "health": "Unknown", "reason": "Stale",
                "conditions": [ready("False", "Stale", "2026-01-01T00:00:10Z")]}),
        );
        let c = status(
            "c",
            1,
            serde_json::json!({"observedGeneration": 1, "health": "Unknown", "reason": "Stale",
                "conditions": [ready("False", "Stale", "2026-01-01T00:00:05Z")]}),
        );
        let mut init = HashMap::new();
        init.insert("ns/a".to_owned(), a.summarize());
        init.insert("ns/b".to_owned(), b.summarize());
        m.apply(&key, Change::Relist(init));
        m.apply(&key, Change::Upsert("ns/c".into(), c.summarize()));
        assert!(m.synced());
        let mut registry = Registry::with_prefix("guest_attestation");
        registry.register_collector(Box::new(Arc::clone(&m)));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "guest_attestation_resources{kind=\"AttestationStatus\"} 3",
            "guest_attestation_resources_generation_pending{kind=\"AttestationStatus\"} 1",
            "guest_attestation_resource_conditions{kind=\"AttestationStatus\",condition=\"Ready\",status=\"False\",reason=\"Stale\"} 2",
            "guest_attestation_resource_condition_oldest_transition_timestamp_seconds{kind=\"AttestationStatus\",condition=\"Ready\",status=\"False\",reason=\"Stale\"} 1767225605",
            "guest_attestation_attestation_health{health=\"Unknown\",reason=\"Stale\"} 2",
            "guest_attestation_attestation_health{health=\"Healthy\",reason=\"Attested\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.apply(&key, Change::Remove("ns/b".into()));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("guest_attestation_resources{kind=\"AttestationStatus\"} 2"));
        m.clear();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.contains("guest_attestation_resources{"), "{text}");
    }

    #[test]
    fn reasons_are_bounded_and_shared() {
        assert_eq!(&*bounded("PolicyDrifted"), "PolicyDrifted");
        assert_eq!(&*bounded("has spaces"), "Other");
        assert_eq!(&*bounded(&"A".repeat(65)), "Other");
        assert!(
            Arc::ptr_eq(&bounded("Attested"), &bounded("Attested")),
            "one copy for all objects"
        );
        let values = Values::default();
        for i in 0..3 {
            let _ = values.get(&format!("Reason{i}"), 4);
        }
        assert_eq!(&*values.get("Known", 4), "Known");
        assert_eq!(
            &*values.get("NeverSeenBefore", 4),
            "Other",
            "the set is capped"
        );
        assert_eq!(&*values.get("Reason1", 4), "Reason1", "known values stay");
    }
}
