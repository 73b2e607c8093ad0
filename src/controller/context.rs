//! The controllers' context: Kubernetes client, Azure clients, event recorder, settings,
//! metrics; and the reconcile error with its reason.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use std::future::Future;

use tracing::Instrument;

use super::runner::Action;
use super::turns::Turns;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};

use super::events::{EventType, Publisher};

use crate::azure::{AzureClients, Credentials, Secret as SecretValue};
use crate::crd::CredentialsRef;
use crate::metrics::Metrics;

/// Operator settings that shape the controllers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconciles running at once per controller; the others wait their turn (first come,
    /// first served).
    pub concurrency: u16,
    /// Watch list page size.
    pub page_size: u32,
    /// Multiplies every refresh interval (tests use a small value; 1.0 in production).
    pub interval_scale: f64,
    /// How long Azure reads may fail before a VM's health turns Unknown / StatusUnavailable.
    pub failure_grace: Duration,
    /// A reconcile that takes longer is abandoned and retried.
    pub reconcile_timeout: Duration,
    /// A long-running Azure operation that stays in flight longer is reported as stuck.
    pub operation_timeout: Duration,
    /// Field manager name for server-side apply.
    pub field_manager: String,
    /// This replica's identity, for Events.
    pub instance: Option<String>,
    /// Export one attested-time gauge per VM (a label pair per object: off by default).
    pub per_vm_metrics: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            page_size: 50,
            interval_scale: 1.0,
            failure_grace: Duration::from_secs(15 * 60),
            reconcile_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30 * 60),
            field_manager: "guest-attestation-operator".to_owned(),
            instance: None,
            per_vm_metrics: false,
        }
    }
}

impl Settings {
    /// `d` scaled by `interval_scale`, never below 100 ms.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.interval_scale.max(0.0))
            .max(Duration::from_millis(100))
    }
}

/// Errors that end a reconcile (Azure trouble is mostly reported in status, not here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The Secret named by credentialsRef is missing or lacks a key.
    #[error("credentials Secret {name:?}: {problem}")]
    Credentials {
        /// Secret name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// An object has no namespace (all kinds are namespaced).
    #[error("object has no namespace")]
    NoNamespace,
    /// An Azure call failed in a way the reconcile could not absorb.
    #[error(transparent)]
    Azure(#[from] crate::azure::Error),
    /// The reconcile took longer than its bound.
    #[error("reconcile timed out after {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// A bounded CamelCase reason, for metrics and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesError",
            Self::Credentials { .. } => "CredentialsInvalid",
            Self::NoNamespace => "NoNamespace",
            Self::Azure(e) => super::azure_reason::reason(e),
            Self::Timeout(_) => "ReconcileTimeout",
        }
    }
}

/// Per-object exponential backoff for failed reconciles: 5 s × 2ⁿ, capped at 5 min.
#[derive(Debug, Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// The delay after another failure of `key`.
    pub fn next(&self, key: &str) -> Duration {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Forgets `key` after a success.
    pub fn reset(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// 5 s × 2^(n-1), capped at 5 min (n ≥ 1).
pub fn delay(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

/// Shared by the reconcilers of one controller.
pub struct Context<C: AzureClients> {
    /// Kubernetes client.
    pub client: Client,
    /// Azure clients (per credentials).
    pub azure: C,
    /// Publishes the controller's Events.
    pub events: Publisher,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Reconcile-failure backoff.
    pub backoff: Backoff,
    /// The fleet's size, shared by the controllers, to raise intervals to the read budget.
    pub fleet: Arc<super::fleet::Fleet>,
    /// Reconciles take turns here (see [`Context::reconcile_in_turn`]).
    turns: Turns,
}

impl<C: AzureClients> Context<C> {
    /// A context for `controller` (the Events' reporting controller).
    pub fn new(
        client: Client,
        azure: C,
        settings: Settings,
        metrics: Arc<Metrics>,
        controller: &str,
    ) -> Self {
        Self {
            turns: Turns::new(settings.concurrency),
            events: Publisher::new(
                client.clone(),
                format!("guest-attestation-operator/{controller}"),
                settings.instance.clone(),
            ),
            client,
            azure,
            settings,
            metrics,
            backoff: Backoff::default(),
            fleet: Arc::default(),
        }
    }

    /// Runs one reconcile when its turn comes ([`Turns`]: at most `--concurrency` at once, first
    /// come, first served). `work` is built only once the turn has come, so a waiting reconcile
    /// holds no more than its handles. The reconcile is counted, bounded by the reconcile
    /// timeout, and resets the object's backoff when it succeeds. Once the controller is
    /// stopping, waiting reconciles return without running.
    pub async fn reconcile_in_turn<K, F, Fut, E, A>(
        &self,
        controller: &'static str,
        obj: &K,
        work: F,
    ) -> Result<A, E>
    where
        K: kube::Resource,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<A, E>>,
        E: From<Error>,
        A: From<Action>,
    {
        let Some(_turn) = self.turns.take().await else {
            return Ok(Action::await_change().into());
        };
        // The span too is made only now: thousands of reconciles may be waiting.
        let meta = obj.meta();
        let span = tracing::info_span!(
            "reconcile",
            namespace = meta.namespace.as_deref(),
            name = meta.name.as_deref(),
            generation = meta.generation,
        );
        let _guard = self.metrics.reconcile(controller);
        let timeout = self.settings.reconcile_timeout;
        let result = Box::pin(tokio::time::timeout(timeout, work()).instrument(span))
            .await
            .map_err(|_| Error::Timeout(timeout))?;
        if result.is_ok() {
            self.backoff.reset(meta.uid.as_deref().unwrap_or_default());
        }
        result
    }

    /// `shutdown`, after which no more turns are given (see [`Turns::closing`]).
    pub fn closing_turns<S>(&self, shutdown: S) -> impl Future<Output = ()> + Send + Sync + 'static
    where
        S: Future<Output = ()> + Send + Sync + 'static,
    {
        self.turns.closing(shutdown)
    }

    /// `interval` (already scaled), raised to what the fleet's size allows within the read
    /// budget; the floor is exported as a metric.
    pub fn fleet_interval(&self, interval: Duration) -> Duration {
        let floor = self.fleet.min_interval();
        self.metrics
            .refresh_floor
            .set(i64::try_from(floor.as_secs()).unwrap_or(i64::MAX));
        self.metrics
            .cache_bytes
            .set(i64::try_from(self.fleet.cache_bytes()).unwrap_or(i64::MAX));
        interval.max(floor)
    }

    /// Shares `fleet` with the other controllers (each context has its own otherwise).
    #[must_use]
    pub fn with_fleet(mut self, fleet: Arc<super::fleet::Fleet>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Publishes an Event about `obj` (a failure to publish is logged: an Event is never worth a
    /// failed reconcile).
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) where
        K: kube::Resource<DynamicType = ()>,
    {
        if let Err(e) = self
            .events
            .publish(type_, reason, action, note, &obj.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, reason, "publishing an Event failed");
        }
    }

    /// Server-side applies `status` to `obj`'s status subresource (in `ns`) as `manager`, unless it equals
    /// the current one (T5: no API-server write when nothing changed); counts the write or the
    /// skip for `controller`. Returns whether it wrote.
    pub async fn apply_status<K, S>(
        &self,
        obj: &K,
        ns: &str,
        current: Option<&S>,
        status: &S,
        controller: &'static str,
        manager: &str,
    ) -> Result<bool, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: PartialEq + serde::Serialize,
    {
        let labels = crate::metrics::ControllerLabels { controller };
        if current == Some(status) {
            self.metrics
                .status_writes_skipped
                .get_or_create(&labels)
                .inc();
            return Ok(false);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let name = obj.meta().name.as_deref().unwrap_or_default();
        api.patch_status(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        self.metrics.status_writes.get_or_create(&labels).inc();
        Ok(true)
    }

    /// The Azure client for a resource: its credentialsRef Secret (same namespace only), or
    /// the operator's own identity.
    pub async fn azure_for(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> Result<C::Client, Error> {
        let Some(r) = credentials_ref else {
            return Ok(self.azure.operator_client()?);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets
            .get_opt(&r.name)
            .await?
            .ok_or_else(|| Error::Credentials {
                name: r.name.clone(),
                problem: "not found in this namespace",
            })?;
        let key =
            |k: &'static str| -> Result<String, Error> {
                let data = secret.data.as_ref().and_then(|d| d.get(k)).ok_or_else(|| {
                    Error::Credentials {
                        name: r.name.clone(),
                        problem: missing_key(k),
                    }
                })?;
                String::from_utf8(data.0.clone())
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| Error::Credentials {
                        name: r.name.clone(),
                        problem: "a key is not UTF-8",
                    })
            };
        Ok(self.azure.client_for(Credentials::ClientSecret {
            tenant_id: key("tenantId")?,
            client_id: key("clientId")?,
            client_secret: SecretValue::new(key("clientSecret")?),
            authority_host: None,
        }))
    }
}

fn missing_key(k: &str) -> &'static str {
    match k {
        "tenantId" => "has no key tenantId",
        "clientId" => "has no key clientId",
        _ => "has no key clientSecret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(delay(1), Duration::from_secs(5));
        assert_eq!(delay(2), Duration::from_secs(10));
        assert_eq!(delay(7), Duration::from_secs(300));
        assert_eq!(delay(u32::MAX), Duration::from_secs(300));
        let b = Backoff::default();
        assert_eq!(b.next("a"), Duration::from_secs(5));
        assert_eq!(b.next("a"), Duration::from_secs(10));
        b.reset("a");
        assert_eq!(b.next("a"), Duration::from_secs(5));
    }

    #[test]
    fn scaled_intervals() {
        let s = Settings {
            interval_scale: 0.001,
            ..Settings::default()
        };
        assert_eq!(
            s.scaled(Duration::from_secs(1800)),
            Duration::from_millis(1800)
        );
        assert_eq!(s.scaled(Duration::from_secs(1)), Duration::from_millis(100));
    }
}
