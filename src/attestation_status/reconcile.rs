//! The AttestationStatus reconciler: a short driver over named steps.
//!
//! 1. `parse_spec` — machine ID and durations (admission already checked them).
//! 2. `poll_if_due` — read Azure only when due (first sight, spec change, refresh interval,
//!    retry after failures); the result is remembered in memory, not in status.
//! 3. `render` (pure) — the status from the memory, the old status and `now`.
//! 4. `write_status` — server-side apply of the status, only when it changed; Events on
//!    health transitions.
//! 5. requeue at the earliest of the next poll and the stale flip.

use std::{sync::Arc, time::Duration};

use futures::TryStreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, events::EventType, watcher},
};
use tracing::{info, warn};

use super::assess::{AttestationFacts, Observation, VmFacts};
use super::render::{Failure, Input, render};
use super::schedule;
use crate::azure::{AzureApi, AzureClients, Error as AzureError, MachineId};
use crate::controller::companions::Companions;
use crate::controller::memory::Store;
use crate::controller::{Action, cache::Cache, runner};
use crate::controller::{Context, Error, azure_reason, duration};
use crate::crd::{AttestationStatus, AttestationStatusStatus, Health};
use crate::metrics::TransitionLabels;

const CONTROLLER: &str = "attestationstatus";

/// What the controller remembers of one object between reconciles.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// The latest successful read and its time (boxed: the memory of 10,000 objects is a table
    /// of this struct, and a box keeps its slots small).
    pub observation: Option<Box<(Observation, Timestamp)>>,
    /// The generation that read was made for.
    pub generation: Option<i64>,
    /// Failed reads in a row, the last one's time, and Azure's Retry-After.
    pub failures: u32,
    /// When the last failed read happened.
    pub last_failure: Option<Timestamp>,
    /// Azure's Retry-After on the last failure.
    pub retry_after: Option<Duration>,
    /// The failure being reported.
    pub failure: Option<Failure>,
    /// The VM instance as last read, and when: polls skip that read while it cannot matter
    /// (`schedule::vm_read_needed`).
    pub vm: Option<(VmFacts, Timestamp)>,
}

/// The controller's context: the shared one plus its memory.
pub struct StatusContext<C: AzureClients> {
    /// Shared context.
    pub ctx: Context<C>,
    /// Per-object memory.
    pub memory: Store<Memory>,
}

impl<C: AzureClients> StatusContext<C> {
    /// Wraps a shared context.
    pub fn new(ctx: Context<C>) -> Self {
        Self {
            ctx,
            memory: Store::default(),
        }
    }
}

/// The spec, parsed.
struct Spec {
    machine: MachineId,
    refresh: Duration,
    stale_after: Duration,
}

fn parse_spec(obj: &AttestationStatus) -> Result<Spec, String> {
    let machine =
        MachineId::parse(&obj.spec.machine_id).map_err(|e| format!("spec.machineId: {e}"))?;
    let refresh = duration::parse("spec.refreshInterval", &obj.spec.refresh_interval)
        .map_err(|e| e.to_string())?;
    let stale_after =
        duration::parse("spec.staleAfter", &obj.spec.stale_after).map_err(|e| e.to_string())?;
    Ok(Spec {
        machine,
        refresh,
        stale_after,
    })
}

/// Reconciles one AttestationStatus.
pub async fn reconcile<C: AzureClients>(
    obj: Arc<AttestationStatus>,
    sctx: Arc<StatusContext<C>>,
) -> Result<Action, Error> {
    sctx.ctx
        .reconcile_in_turn(CONTROLLER, &*obj, || reconcile_inner(&obj, &sctx))
        .await
}

async fn reconcile_inner<C: AzureClients>(
    obj: &AttestationStatus,
    sctx: &StatusContext<C>,
) -> Result<Action, Error> {
    let ctx = &sctx.ctx;
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let uid = obj.uid().unwrap_or_default();
    let spec = match parse_spec(obj) {
        Ok(s) => s,
        Err(problem) => {
            // Admission should have caught it; report and wait for a spec change.
            write_invalid_spec(obj, ctx, &ns, &problem).await?;
            return Ok(Action::await_change());
        }
    };
    let refresh = ctx.fleet_interval(ctx.settings.scaled(spec.refresh));
    let mut memory = sctx.memory.get(&uid);
    let now = Timestamp::now();
    if poll_due(&memory, obj.metadata.generation, now, refresh, &uid) {
        let timing = Timing {
            now,
            refresh,
            stale_after: spec.stale_after,
        };
        if let Some(hold) = poll(obj, ctx, &ns, &spec.machine, &mut memory, timing).await {
            // Nothing was sent (Retry-After or rate limit): not an attempt; wait it out.
            sctx.memory.put(&uid, memory);
            return Ok(Action::requeue(hold.max(Duration::from_millis(100))));
        }
        sctx.memory.put(&uid, memory.clone());
    }
    let now = Timestamp::now();
    let rendered = render(&Input {
        old: obj.status.as_ref(),
        observation: memory.observation.as_deref().map(|(o, t)| (o, *t)),
        failure: memory.failure.as_ref(),
        generation: obj.metadata.generation,
        machine_name: spec.machine.name(),
        now,
        stale_after: spec.stale_after,
        failure_grace: ctx.settings.failure_grace,
    });
    if ctx.settings.per_vm_metrics {
        record_attested_time(ctx, &ns, obj, &rendered.status);
    }
    write_status(obj, ctx, &ns, rendered.status).await?;
    let next_poll = next_poll_at(&memory, refresh, &uid);
    // One second past the mark, so the reconcile finds it crossed.
    let flip = rendered.stale_at.and_then(|t| {
        t.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(1))
            .ok()
    });
    Ok(Action::requeue(schedule::requeue_after(
        now,
        &[next_poll, flip],
        refresh.max(Duration::from_secs(1)),
    )))
}

fn poll_due(
    m: &Memory,
    generation: Option<i64>,
    now: Timestamp,
    refresh: Duration,
    uid: &str,
) -> bool {
    if m.observation.is_none() && m.failure.is_none() || m.generation != generation {
        return true;
    }
    next_poll_at(m, refresh, uid).is_none_or(|t| t <= now)
}

fn next_poll_at(m: &Memory, refresh: Duration, uid: &str) -> Option<Timestamp> {
    match (m.failures, m.last_failure, m.observation.as_deref()) {
        (n, Some(last), _) if n > 0 => Some(schedule::next_retry(last, n, refresh, m.retry_after)),
        (_, _, Some((_, at))) => Some(schedule::next_poll(*at, refresh, uid)),
        _ => None,
    }
}

/// When a poll happens and the intervals that decide what it reads.
#[derive(Clone, Copy)]
struct Timing {
    now: Timestamp,
    refresh: Duration,
    stale_after: Duration,
}

/// Reads the attestation status (and the VM when needed). Returns Some(wait) when the client
/// held the request back without sending it.
async fn poll<C: AzureClients>(
    obj: &AttestationStatus,
    ctx: &Context<C>,
    ns: &str,
    machine: &MachineId,
    memory: &mut Memory,
    timing: Timing,
) -> Option<Duration> {
    let now = timing.now;
    if memory.generation != obj.metadata.generation {
        // The spec changed (maybe the machine): what was known of the VM no longer holds.
        memory.vm = None;
    }
    memory.generation = obj.metadata.generation;
    let known = memory.vm.clone();
    let reads = schedule::reads_to_book(
        known.as_ref().map(|(_, at)| *at),
        last_attested(memory.observation.as_deref()),
        now,
        timing.refresh,
        timing.stale_after,
    );
    let holder = obj.uid().unwrap_or_default();
    let result = async {
        let azure = ctx.azure_for(ns, obj.spec.credentials_ref.as_ref()).await?;
        let azure = azure.admit(machine.subscription(), &holder, reads).await?;
        read(&azure, machine, known, timing)
            .await
            .map_err(Error::from)
    }
    .await;
    match result {
        Ok((observation, vm)) => {
            memory.observation = Some(Box::new((observation, now)));
            memory.vm = vm;
            memory.failures = 0;
            memory.last_failure = None;
            memory.retry_after = None;
            memory.failure = None;
            None
        }
        Err(Error::Azure(AzureError::Held {
            retry_after,
            operation,
            ..
        })) => {
            if operation == crate::azure::GET_VM_INSTANCE {
                // The booking did not cover the VM read: book it next time.
                memory.vm = None;
            }
            Some(retry_after)
        }
        Err(e) => {
            let reason = e.reason();
            let message = azure_reason::message(&e);
            warn!(reason, error = %message, "reading Azure failed");
            memory.failures = memory.failures.saturating_add(1);
            memory.last_failure = Some(now);
            memory.retry_after = match &e {
                Error::Azure(a) => a.retry_after(),
                _ => None,
            };
            let since = memory
                .failure
                .as_ref()
                .map(|f| f.since)
                .or_else(|| failing_since(obj))
                .unwrap_or(now);
            memory.failure = Some(Failure {
                reason,
                message,
                since,
            });
            None
        }
    }
}

/// After a restart, failures began when the stored Fresh condition turned False.
fn failing_since(obj: &AttestationStatus) -> Option<Timestamp> {
    let fresh = crate::controller::conditions::find(&obj.status.as_ref()?.conditions, "Fresh")?;
    (fresh.status == crate::crd::ConditionStatus::False && fresh.reason != "Stale")
        .then_some(fresh.last_transition_time.0)
}

/// One poll: the attestationStatus, then the VM instance only when `schedule::vm_read_needed`
/// says it may matter (else the facts of an earlier read). Returns the VM facts to remember.
/// The attestation time of the last poll, if it had a usable one.
fn last_attested(observation: Option<&(Observation, Timestamp)>) -> Option<Timestamp> {
    match observation {
        Some((
            Observation::Vm {
                attestation: Some(a),
                ..
            },
            _,
        )) => a
            .timestamp
            .as_deref()
            .and_then(|t| super::timestamp::parse(t).ok()),
        _ => None,
    }
}

async fn read<A: AzureApi>(
    azure: &A,
    machine: &MachineId,
    known: Option<(VmFacts, Timestamp)>,
    timing: Timing,
) -> Result<(Observation, Option<(VmFacts, Timestamp)>), AzureError> {
    let attestation = azure
        .get_attestation_status(machine)
        .await?
        .map(|a| AttestationFacts::from_properties(&a.properties));
    let attested = attestation
        .as_ref()
        .and_then(|a| a.timestamp.as_deref())
        .and_then(|t| super::timestamp::parse(t).ok());
    let vm = match known {
        Some((vm, at))
            if !schedule::vm_read_needed(
                Some(at),
                attested,
                timing.now,
                timing.refresh,
                timing.stale_after,
            ) =>
        {
            (vm, at)
        }
        _ => match azure.get_vm_instance(machine).await? {
            None => return Ok((Observation::VmNotFound, None)),
            Some(vm) => (VmFacts::from_instance(&vm), timing.now),
        },
    };
    Ok((
        Observation::Vm {
            vm: vm.0.clone(),
            attestation,
        },
        Some(vm),
    ))
}

async fn write_invalid_spec<C: AzureClients>(
    obj: &AttestationStatus,
    ctx: &Context<C>,
    ns: &str,
    problem: &str,
) -> Result<(), Error> {
    let old = obj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.health = Some(Health::Unknown);
    status.reason = Some("InvalidSpec".to_owned());
    status.message = Some(problem.to_owned());
    status.observed_generation = obj.metadata.generation;
    status.conditions = crate::controller::conditions::merge(
        &old.conditions,
        vec![crate::controller::conditions::Desired::new(
            "Ready",
            crate::crd::ConditionStatus::False,
            "InvalidSpec",
            problem,
        )],
        obj.metadata.generation,
        Timestamp::now(),
    );
    write_status(obj, ctx, ns, status).await
}

/// Applies the status when it differs from the stored one, and reports health transitions.
async fn write_status<C: AzureClients>(
    obj: &AttestationStatus,
    ctx: &Context<C>,
    ns: &str,
    status: AttestationStatusStatus,
) -> Result<(), Error> {
    let manager = &ctx.settings.field_manager;
    if ctx
        .apply_status(obj, ns, obj.status.as_ref(), &status, CONTROLLER, manager)
        .await?
    {
        report_transition(obj, ctx, &status).await;
    }
    Ok(())
}

async fn report_transition<C: AzureClients>(
    obj: &AttestationStatus,
    ctx: &Context<C>,
    new: &AttestationStatusStatus,
) {
    let old = obj.status.as_ref();
    let (old_health, old_reason) = (
        old.and_then(|s| s.health),
        old.and_then(|s| s.reason.clone()),
    );
    if old_health == new.health && old_reason == new.reason {
        return;
    }
    let name = |h: Option<Health>| match h {
        Some(Health::Healthy) => "Healthy",
        Some(Health::Unhealthy) => "Unhealthy",
        Some(Health::Unknown) => "Unknown",
        None => "None",
    };
    ctx.metrics
        .health_transitions
        .get_or_create(&TransitionLabels {
            from: name(old_health),
            to: name(new.health),
        })
        .inc();
    let reason = new.reason.clone().unwrap_or_default();
    let type_ = if new.health == Some(Health::Healthy) {
        EventType::Normal
    } else {
        EventType::Warning
    };
    let note = new.message.clone().unwrap_or_default();
    info!(
        health = name(new.health),
        reason, "attestation health changed"
    );
    let reason = if reason == "Stale" {
        "StaleAttestation"
    } else {
        &reason
    };
    let note = format!("{} -> {}: {note}", name(old_health), name(new.health));
    ctx.publish(obj, type_, reason, "Assess", &note).await;
}

/// The per-VM gauge (opt-in: one series per object).
fn record_attested_time<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    obj: &AttestationStatus,
    status: &AttestationStatusStatus,
) {
    let labels = crate::metrics::VmLabels {
        namespace: ns.to_owned(),
        name: obj.name_any(),
    };
    match &status.attested_time {
        Some(t) => {
            ctx.metrics
                .vm_attested_time
                .get_or_create(&labels)
                .set(t.0.as_second());
        }
        None => {
            ctx.metrics.vm_attested_time.remove(&labels);
        }
    }
}

/// Failed reconciles (Kubernetes errors, timeouts) back off per object: 5 s × 2ⁿ, capped at 5 min.
#[allow(clippy::needless_pass_by_value)] // the signature runner::run expects
pub fn error_policy<C: AzureClients>(
    obj: Arc<AttestationStatus>,
    error: &Error,
    sctx: Arc<StatusContext<C>>,
) -> Action {
    let ctx = &sctx.ctx;
    ctx.metrics
        .reconcile_failures
        .get_or_create(&crate::metrics::FailureLabels {
            controller: CONTROLLER,
            reason: error.reason(),
        })
        .inc();
    warn!(name = obj.name_any(), reason = error.reason(), error = %error, "reconcile failed");
    Action::requeue(ctx.backoff.next(&obj.uid().unwrap_or_default()))
}

/// Runs the controller until `shutdown` resolves: watches AttestationStatus objects (all
/// namespaces, or one), strips managedFields before caching, bounded concurrency.
pub async fn run<C: AzureClients>(
    sctx: Arc<StatusContext<C>>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = sctx.ctx.client.clone();
    let api: Api<AttestationStatus> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let settings = &sctx.ctx.settings;
    let reader = Cache::<AttestationStatus>::default();
    let stream = watcher(
        api,
        watcher::Config::default().page_size(settings.page_size),
    )
    .default_backoff()
    .modify(crate::controller::strip_for_cache)
    .inspect_ok({
        let cache = reader.clone();
        move |event| cache.apply(event)
    })
    .touched_objects();
    let _companions = Companions::start(
        &sctx,
        |c| &c.memory,
        Some((
            Arc::clone(&sctx.ctx.fleet),
            crate::controller::scope(CONTROLLER, namespace.as_deref()),
        )),
        &reader,
    );
    let (on_change, on_error) = (Arc::clone(&sctx), Arc::clone(&sctx));
    runner::run(
        reader,
        runner::trigger_self(stream),
        settings.concurrency,
        // Boxed: the reconcile is large, and only the tasks running hold one.
        move |o| Box::pin(reconcile(o, Arc::clone(&on_change))),
        move |o, e| error_policy(o, e, Arc::clone(&on_error)),
        sctx.ctx.closing_turns(shutdown),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn first_sight_and_spec_changes_poll_at_once() {
        let now = ts("2026-01-01T00:00:00Z");
        assert!(poll_due(
            &Memory::default(),
            Some(1),
            now,
            Duration::from_secs(60),
            "u"
        ));
        let m = Memory {
            observation: Some(Box::new((Observation::VmNotFound, now))),
            generation: Some(1),
            ..Memory::default()
        };
        assert!(!poll_due(&m, Some(1), now, Duration::from_secs(60), "u"));
        assert!(poll_due(&m, Some(2), now, Duration::from_secs(60), "u"));
        assert!(poll_due(
            &m,
            Some(1),
            ts("2026-01-01T00:01:07Z"),
            Duration::from_secs(60),
            "u"
        ));
    }

    #[test]
    fn failures_retry_with_backoff() {
        let now = ts("2026-01-01T00:00:00Z");
        let m = Memory {
            failures: 2,
            last_failure: Some(now),
            generation: Some(1),
            failure: Some(Failure {
                reason: "X",
                message: String::new(),
                since: now,
            }),
            ..Memory::default()
        };
        assert_eq!(
            next_poll_at(&m, Duration::from_secs(1800), "u"),
            Some(ts("2026-01-01T00:00:10Z"))
        );
    }
}
