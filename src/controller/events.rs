//! Events (events.k8s.io/v1) about the custom resources. The same event about the same object
//! again within six minutes of the last one joins its series (count, lastObservedTime), as
//! client-go does and `kubectl describe` shows ("x3 over 5m").
//!
//! What is kept for that is the event's name, count and time under a 16-byte digest of what
//! makes it the same (type, reason, action, note and object), never the Event itself:
//! kube-runtime's `Recorder`, used before, kept every Event it sent for six minutes in a table
//! that never shrank, and at 10,000 VMs that table was the operator's largest memory cost.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use tokio::time::Instant;

/// A repeat this soon after the last one joins its series.
const SERIES_WINDOW: Duration = Duration::from_mins(6);

/// How often events past the window are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Notes longer than this are cut (the API server caps them at 1 KiB).
const NOTE_MAX: usize = 1024;

/// What makes two events the same: a digest of their type, reason, action, note and object.
type Key = super::Digest;

/// One event sent, as much as its series needs.
#[derive(Debug)]
struct Sent {
    name: Box<str>,
    count: i32,
    last: Instant,
}

/// What to send for an event.
#[derive(Debug, PartialEq, Eq)]
enum Send {
    /// A new Event.
    Create,
    /// The series of the Event `name`, now `count` long.
    Repeat { name: Box<str>, count: i32 },
}

/// The events sent within the window (the deciding part, without I/O).
#[derive(Debug, Default)]
struct Series {
    sent: HashMap<Key, Sent>,
    swept: Option<Instant>,
}

impl Series {
    /// What to send for an event of `key` at `now`: a repeat within the window joins the series.
    fn next(&mut self, key: &Key, now: Instant) -> Send {
        self.sweep(now);
        match self.sent.get_mut(key) {
            Some(s) if now.saturating_duration_since(s.last) < SERIES_WINDOW => {
                s.count = s.count.saturating_add(1);
                s.last = now;
                Send::Repeat {
                    name: s.name.clone(),
                    count: s.count,
                }
            }
            _ => Send::Create,
        }
    }

    /// The Event `name` was created for `key`.
    fn created(&mut self, key: Key, name: Box<str>, now: Instant) {
        self.sent.insert(
            key,
            Sent {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// The Event of `key` is gone (expired on the server): the next one starts anew.
    fn forget(&mut self, key: &Key) {
        self.sent.remove(key);
    }

    /// Forgets events past the window, at most every [`SWEEP_EVERY`], and gives back the
    /// table's room once a burst (a cold start) is over.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.sent
            .retain(|_, s| now.saturating_duration_since(s.last) < SERIES_WINDOW);
        if self.sent.capacity() > 4 * self.sent.len() + 64 {
            self.sent.shrink_to_fit();
        }
    }
}

/// The Event's `type`.
fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// The digest of what makes two events the same.
fn key(type_: EventType, reason: &str, action: &str, note: &str, about: &ObjectReference) -> Key {
    super::digest(&[
        type_name(type_),
        reason,
        action,
        note,
        about.api_version.as_deref().unwrap_or_default(),
        about.kind.as_deref().unwrap_or_default(),
        about.namespace.as_deref().unwrap_or_default(),
        about.name.as_deref().unwrap_or_default(),
        about.uid.as_deref().unwrap_or_default(),
    ])
}

/// Publishes one controller's Events.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl Publisher {
    /// Events reported by `controller` (and `instance`, the pod; the controller when unknown).
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| controller.clone()),
            controller,
            series: Mutex::default(),
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes an event about `about`, or adds to its series when it repeats within the window.
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        about: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let note = super::conditions::truncate(note, NOTE_MAX);
        let key = key(type_, reason, action, &note, about);
        let ns = about.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let next = self.series().next(&key, Instant::now());
        if let Send::Repeat { name, count } = next {
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => self.series().forget(&key),
                Err(e) => return Err(e),
            }
        }
        let event = self.event(type_, reason, action, note, about);
        let name: Box<str> = event.metadata.name.as_deref().unwrap_or_default().into();
        api.create(&PostParams::default(), &event).await?;
        self.series().created(key, name, Instant::now());
        Ok(())
    }

    /// A new Event, named as client-go names them (object name, then the time in hex).
    fn event(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        about: &ObjectReference,
    ) -> Event {
        let now = Timestamp::now();
        Event {
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            event_time: Some(MicroTime(now)),
            note: Some(note),
            metadata: ObjectMeta {
                namespace: about.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    about.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            regarding: Some(about.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_name(type_).to_owned()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("guestattestation.dev/v1alpha1".into()),
            kind: Some("GuestAttestationExtension".into()),
            namespace: Some("ns".into()),
            name: Some("vm-1".into()),
            uid: Some(uid.into()),
            resource_version: Some("7".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_same_event_is_the_same_key_whatever_the_resource_version() {
        let a = key(EventType::Normal, "Deployed", "Deploy", "ok", &about("u1"));
        let mut later = about("u1");
        later.resource_version = Some("8".into());
        assert_eq!(
            a,
            key(EventType::Normal, "Deployed", "Deploy", "ok", &later)
        );
        for other in [
            key(EventType::Warning, "Deployed", "Deploy", "ok", &about("u1")),
            key(EventType::Normal, "Deploying", "Deploy", "ok", &about("u1")),
            key(EventType::Normal, "Deployed", "Delete", "ok", &about("u1")),
            key(
                EventType::Normal,
                "Deployed",
                "Deploy",
                "other",
                &about("u1"),
            ),
            key(EventType::Normal, "Deployed", "Deploy", "ok", &about("u2")),
        ] {
            assert_ne!(a, other);
        }
        // Fields are separated: moving text between them is another event.
        assert_ne!(
            key(EventType::Normal, "ab", "c", "", &about("u1")),
            key(EventType::Normal, "a", "bc", "", &about("u1"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_within_the_window_join_the_series() {
        let mut s = Series::default();
        let k = [1; 16];
        let t0 = Instant::now();
        assert_eq!(s.next(&k, t0), Send::Create);
        s.created(k, "vm-1.abc".into(), t0);
        let t1 = t0 + Duration::from_mins(5);
        let repeat = |count| Send::Repeat {
            name: "vm-1.abc".into(),
            count,
        };
        assert_eq!(s.next(&k, t1), repeat(2));
        // The window runs from the last repeat.
        let t2 = t1 + Duration::from_mins(5);
        assert_eq!(s.next(&k, t2), repeat(3));
        assert_eq!(s.next(&k, t2 + SERIES_WINDOW), Send::Create);
        s.forget(&k);
        assert_eq!(s.next(&k, t2 + SERIES_WINDOW), Send::Create);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_forgotten_and_its_room_given_back() {
        let mut s = Series::default();
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let mut k = [0; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            s.created(k, format!("vm-{i}.1").into(), t0);
        }
        assert!(s.sent.capacity() >= 10_000);
        // Within the window and before the next sweep, nothing is forgotten.
        let _ = s.next(&[9; 16], t0 + Duration::from_secs(1));
        assert_eq!(s.sent.len(), 10_000);
        let _ = s.next(&[9; 16], t0 + SERIES_WINDOW);
        assert!(s.sent.is_empty());
        assert!(s.sent.capacity() < 100, "{}", s.sent.capacity());
    }
}
