//! The GuestAttestationExtension reconciler: a short driver over named steps. The finalizer
//! (`guestattestation.dev/extension`) splits it into `apply` and `cleanup`.
//!
//! `apply`:
//! 1. `parse_spec` — machine and cluster ids (admission already checked them).
//! 2. `resolve_source` — spec.clusterId, or the AttestationProvider of spec.providerRef.
//! 3. `due` — Azure is looked at on first sight, on a spec or source change, when the operation
//!    in flight is due for a poll, and every `DRIFT_INTERVAL`; the reconcile that our own status
//!    write triggers finds nothing due and only checks the owned AttestationStatus.
//! 4. `observe::read` — machine, VM instance, cluster (reused from the last full look while the
//!    prerequisites hold: `plan::full_look_due`), one poll of the operation, extension.
//! 5. `desired::target` + `compare` + `plan` (pure) — what to write, if anything.
//! 6. `put` — the PUT; its operation handle is kept in memory and polled at the next due
//!    reconcile after Azure's Retry-After (no reconcile ever waits on Azure).
//! 7. `render` (pure) + `write_status` — server-side apply of the status when it changed;
//!    Events on condition transitions.
//! 8. `children::ensure` — the owned AttestationStatus.
//!
//! `cleanup` (deletion): Observe and Retain release at once; Delete deletes the extension,
//! follows the deletion until Azure confirms it gone, and gives up (releasing, with a Warning)
//! when no progress is possible within `Settings::operation_timeout` of the deletion request.

use std::{collections::HashMap, sync::Arc, time::Duration, time::SystemTime};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, events::EventType, reflector::ObjectRef, watcher},
};
use tracing::warn;

use super::children;
use super::compare::{self, Assessment};
use super::desired::{self, EXTENSION_NAME, TargetFacts};
use super::observe::{self, Facts, Operation, Progress, Source, Surroundings};
use super::owned::Owned;
use super::plan::{self, Inputs, Plan, PutReason};
use super::render::{self, DEPLOYED, DeployInputs, PREREQUISITES_MET, READY, Rest};
use super::report::write_status;
use super::settings::provider_source;
use crate::attestation_status::schedule::jitter;
use crate::azure::{AzureApi, AzureClients, ClusterId, Error as AzureError, MachineId};
use crate::controller::companions::Companions;
use crate::controller::conditions::Desired;
use crate::controller::memory::Store;
use crate::controller::{Action, cache::Cache, runner};
use crate::controller::{Context, Digest, azure_reason, context::delay};
use crate::crd::{
    AttestationProvider, AttestationStatus, ConditionStatus, GuestAttestationExtension,
};

/// The controller's name (metrics label, Events' reporting controller).
pub const CONTROLLER: &str = "guestattestationextension";

/// The finalizer that holds a deleted object until its extension is dealt with.
pub const FINALIZER: &str = "guestattestation.dev/extension";

/// How far out the client-side deadline of a followed operation is set: the controller decides
/// itself when an operation is stuck (`Settings::operation_timeout`) and keeps following it.
pub(super) const HANDLE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the controller remembers of one object between reconciles (lost on restart, which
/// costs at most one extra look at Azure: the status holds what must survive).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// The operation the controller started and follows (boxed, as the next field: most
    /// objects have neither, and the memory of 10,000 objects is a table of this struct).
    pub op: Option<Box<Operation>>,
    /// A deletion was started for this object.
    pub delete_attempted: bool,
    /// When Azure is due to be looked at again.
    pub next_check: Option<Timestamp>,
    /// The generation and settings source the last look was made for.
    pub checked: Option<(Option<i64>, Digest)>,
    /// Failed deployments in a row.
    pub deploy_failures: u32,
    /// When the last deployment failed.
    pub last_deploy_failure: Option<Timestamp>,
    /// Azure's error of the last failed operation.
    pub failure_detail: Option<String>,
    /// Failed looks at Azure (or credentials) in a row.
    pub read_failures: u32,
    /// The AttestationStatus conflict already reported.
    pub conflict_reported: Option<String>,
    /// The machine, VM and endpoints of the last full look and its time, kept while the
    /// prerequisites hold, so drift checks and operation polls read the extension alone.
    pub surroundings: Option<Box<(observe::Surroundings, Timestamp)>>,
}

/// The controller's context: the shared one plus its memory.
pub struct ExtensionContext<C: AzureClients> {
    /// Shared context.
    pub ctx: Context<C>,
    /// Per-object memory.
    pub memory: Store<Memory>,
    /// What the watches of the AttestationStatuses have seen, per watched namespace (`None`:
    /// all), once `run` has started them.
    statuses: std::sync::Mutex<HashMap<Option<String>, Owned>>,
}

impl<C: AzureClients> ExtensionContext<C> {
    /// Wraps a shared context.
    pub fn new(ctx: Context<C>) -> Self {
        Self {
            ctx,
            memory: Store::default(),
            statuses: std::sync::Mutex::default(),
        }
    }

    /// What has been seen of the AttestationStatuses of `ns`.
    fn statuses_of(&self, ns: &str) -> Option<Owned> {
        let caches = self
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        caches
            .get(&Some(ns.to_owned()))
            .or_else(|| caches.get(&None))
            .cloned()
    }
}

/// Errors that end a reconcile (Azure trouble is reported in status, not here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step of the reconcile failed.
    #[error(transparent)]
    Reconcile(#[from] crate::controller::Error),
    /// Adding or removing the finalizer failed (a conflict is retried).
    #[error("updating the finalizer failed")]
    Finalizer(#[source] kube::Error),
    /// The finalizer patch could not be built.
    #[error("the finalizer patch cannot be built: {0}")]
    FinalizerPatch(&'static str),
}

impl Error {
    /// A bounded CamelCase reason, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Reconcile(e) => e.reason(),
            Self::Finalizer(_) => "FinalizerUpdateFailed",
            Self::FinalizerPatch(_) => "FinalizerInvalid",
        }
    }
}

type StepResult = Result<Action, crate::controller::Error>;

/// Reconciles one GuestAttestationExtension.
pub async fn reconcile<C: AzureClients>(
    obj: Arc<GuestAttestationExtension>,
    ectx: Arc<ExtensionContext<C>>,
) -> Result<Action, Error> {
    ectx.ctx
        .reconcile_in_turn(CONTROLLER, &*obj, || async {
            let ns = obj
                .namespace()
                .ok_or(crate::controller::Error::NoNamespace)?;
            dispatch(&obj, &ectx, &ns).await
        })
        .await
}

/// The finalizer: added before anything is written to Azure, removed only when cleanup says the
/// extension is dealt with. (kube's `finalizer` helper removes it whenever cleanup returns Ok,
/// which cannot express "still deleting, come back after Retry-After" without an error.)
async fn dispatch<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    ns: &str,
) -> Result<Action, Error> {
    let api: Api<GuestAttestationExtension> = Api::namespaced(ectx.ctx.client.clone(), ns);
    let index = obj.finalizers().iter().position(|f| f == FINALIZER);
    match (obj.metadata.deletion_timestamp.is_some(), index) {
        (false, Some(_)) => Ok(apply(obj, ectx, ns).await?),
        (false, None) => {
            add_finalizer(&api, obj).await?;
            // The update wakes the controller again, now with the finalizer.
            Ok(Action::await_change())
        }
        (true, Some(i)) => {
            if let Some(wait) = super::cleanup::cleanup(obj, ectx, ns).await? {
                return Ok(wait);
            }
            remove_finalizer(&api, obj, i).await?;
            Ok(Action::await_change())
        }
        (true, None) => Ok(Action::await_change()),
    }
}

/// JSON patch guarded by a test of the current list, so a concurrent change fails the patch
/// (and the reconcile is retried) instead of losing someone else's finalizer.
async fn add_finalizer(
    api: &Api<GuestAttestationExtension>,
    obj: &GuestAttestationExtension,
) -> Result<(), Error> {
    let ops = if obj.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    json_patch(api, obj, ops).await
}

async fn remove_finalizer(
    api: &Api<GuestAttestationExtension>,
    obj: &GuestAttestationExtension,
    index: usize,
) -> Result<(), Error> {
    let path = format!("/metadata/finalizers/{index}");
    let ops = serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, obj, ops).await
}

async fn json_patch(
    api: &Api<GuestAttestationExtension>,
    obj: &GuestAttestationExtension,
    ops: serde_json::Value,
) -> Result<(), Error> {
    let patch =
        serde_json::from_value(ops).map_err(|_| Error::FinalizerPatch("invalid JSON patch"))?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::<GuestAttestationExtension>::Json(patch),
    )
    .await
    .map_err(Error::Finalizer)?;
    Ok(())
}

/// The spec, parsed.
#[derive(Debug)]
struct Spec {
    machine: MachineId,
    cluster: Option<ClusterId>,
}

fn parse_spec(obj: &GuestAttestationExtension) -> Result<Spec, String> {
    let machine =
        MachineId::parse(&obj.spec.machine_id).map_err(|e| format!("spec.machineId: {e}"))?;
    let cluster = match &obj.spec.cluster_id {
        Some(c) => Some(ClusterId::parse(c).map_err(|e| format!("spec.clusterId: {e}"))?),
        None => None,
    };
    if cluster.is_none() && obj.spec.provider_ref.is_none() {
        return Err("one of spec.clusterId and spec.providerRef must be set".to_owned());
    }
    Ok(Spec { machine, cluster })
}

// ---------------------------------------------------------------------------------------------
// apply

async fn apply<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    ns: &str,
) -> StepResult {
    let ctx = &ectx.ctx;
    let uid = obj.uid().unwrap_or_default();
    let now = Timestamp::now();
    let spec = match parse_spec(obj) {
        Ok(s) => s,
        Err(problem) => {
            // Admission should have caught it; report and wait for a spec change.
            write_invalid_spec(obj, ctx, ns, &problem, now).await?;
            return Ok(Action::await_change());
        }
    };
    let source = resolve_source(obj, ctx, ns, &spec).await?;
    let mut memory = ectx.memory.get(&uid);
    let fingerprint = (obj.metadata.generation, source.fingerprint());
    if !due(&memory, &fingerprint, now) {
        ensure_children(obj, ectx, ns, &mut memory, was_deployed(obj)).await?;
        let wait = until(memory.next_check, now);
        ectx.memory.put(&uid, memory);
        return Ok(Action::requeue(wait));
    }
    if memory.checked.as_ref() != Some(&fingerprint) {
        // A new spec or settings source: everything is looked at afresh.
        memory.surroundings = None;
    }
    memory.checked = Some(fingerprint);
    let azure = match ctx.azure_for(ns, obj.spec.credentials_ref.as_ref()).await {
        Ok(a) => a,
        Err(crate::controller::Error::Kube(e)) => return Err(e.into()),
        Err(e) => return blocked(obj, ectx, ns, &spec, memory, &e, now).await,
    };
    let full = plan::full_look_due(
        memory.surroundings.as_deref().map(|(_, t)| *t),
        memory.surroundings.is_some(),
        now,
        plan::full_look_interval(
            ctx.settings.scaled(plan::FULL_LOOK_INTERVAL),
            ctx.fleet_interval(ctx.settings.scaled(plan::DRIFT_INTERVAL)),
        ),
    );
    let known = memory
        .surroundings
        .as_deref()
        .filter(|_| !full)
        .map(|(s, _)| s);
    // Wait for this look's reads in the requeue queue, not in a reconcile slot.
    let reads = observe::reads_needed(known.is_some(), memory.op.is_some());
    let azure = match azure.admit(spec.machine.subscription(), &uid, reads).await {
        Ok(a) => a,
        Err(e) => return blocked(obj, ectx, ns, &spec, memory, &e.into(), now).await,
    };
    let facts =
        match observe::read(&azure, &spec.machine, &source, memory.op.as_deref(), known).await {
            Ok(f) => f,
            Err(e) => return blocked(obj, ectx, ns, &spec, memory, &e.into(), now).await,
        };
    memory.read_failures = 0;
    record_progress(&mut memory, facts.progress.as_ref(), now);
    let step = decide(obj, ctx, &spec, &source, &facts, &memory, now);
    // Kept before the PUT: a PUT held for the write budget comes back to a one-read look.
    memory.surroundings = keep_surroundings(&step, &memory, facts.around, full, now);
    let step = match step.plan {
        Plan::Put(reason) => {
            match put(obj, ctx, &azure, &spec, step, reason, &mut memory, now).await {
                Ok(s) => s,
                Err(e) => return blocked(obj, ectx, ns, &spec, memory, &e.into(), now).await,
            }
        }
        _ => step,
    };
    let status = render::status(
        obj.status.as_ref(),
        obj.metadata.generation,
        now,
        step.conditions,
        step.rest,
    );
    write_status(obj, ctx, ns, status.clone()).await?;
    ensure_children(
        obj,
        ectx,
        ns,
        &mut memory,
        status.provisioning_state.is_some(),
    )
    .await?;
    memory.next_check = Some(step.next_check);
    ectx.memory.put(&uid, memory);
    Ok(Action::requeue(until(Some(step.next_check), now)))
}

/// The surroundings to reuse at the next look: kept while every prerequisite holds (so
/// following an operation, redeploying or repairing costs the extension reads alone), timed
/// from the last full look; dropped when something is unmet, so a fix is seen at the next look.
fn keep_surroundings(
    step: &Step,
    memory: &Memory,
    around: Surroundings,
    full: bool,
    now: Timestamp,
) -> Option<Box<(Surroundings, Timestamp)>> {
    let since = if full {
        Some(now)
    } else {
        memory.surroundings.as_deref().map(|(_, t)| *t)
    };
    step.desired
        .as_ref()
        .and(since)
        .map(|t| Box::new((around, t)))
}

/// Resolves where the settings come from; only Kubernetes errors end the reconcile.
async fn resolve_source<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    ns: &str,
    spec: &Spec,
) -> Result<Source, crate::controller::Error> {
    if let Some(c) = &spec.cluster {
        return Ok(Source::Cluster(c.clone()));
    }
    let Some(r) = &obj.spec.provider_ref else {
        return Ok(Source::Problem(
            super::settings::SourceProblem::ProviderNotFound {
                name: String::new(),
            },
        ));
    };
    let api: Api<AttestationProvider> = Api::namespaced(ctx.client.clone(), ns);
    let provider = api.get_opt(&r.name).await?;
    Ok(match provider_source(&r.name, provider.as_ref()) {
        Err(p) => Source::Problem(p),
        Ok(p) => match ClusterId::parse(&p.cluster_id) {
            Ok(cluster) => Source::Provider {
                name: r.name.clone(),
                attest_uri: p.attest_uri,
                cluster,
            },
            Err(_) => Source::Problem(super::settings::SourceProblem::ClusterNotFound {
                cluster: p.cluster_id,
            }),
        },
    })
}

/// Azure is due to be looked at: first sight, a spec or source change, or the scheduled time.
fn due(memory: &Memory, fingerprint: &(Option<i64>, Digest), now: Timestamp) -> bool {
    memory.checked.as_ref() != Some(fingerprint) || memory.next_check.is_none_or(|t| t <= now)
}

fn until(t: Option<Timestamp>, now: Timestamp) -> Duration {
    t.map_or(Duration::ZERO, |t| {
        Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
    })
    .max(Duration::from_millis(100))
}

fn was_deployed(obj: &GuestAttestationExtension) -> bool {
    obj.status
        .as_ref()
        .is_some_and(|s| s.provisioning_state.is_some())
}

/// Updates the memory with the poll of the operation in flight.
pub(super) fn record_progress(memory: &mut Memory, progress: Option<&Progress>, now: Timestamp) {
    match progress {
        None | Some(Progress::Pending(_)) => {}
        Some(Progress::Lost) => memory.op = None,
        Some(Progress::Succeeded) => {
            memory.op = None;
            memory.deploy_failures = 0;
            memory.last_deploy_failure = None;
            memory.failure_detail = None;
        }
        Some(Progress::Failed(detail)) => {
            memory.op = None;
            memory.deploy_failures = memory.deploy_failures.saturating_add(1);
            memory.last_deploy_failure = Some(now);
            memory.failure_detail = Some(detail.clone());
        }
    }
}

/// The outcome of the pure part of a look at Azure.
struct Step {
    plan: Plan,
    conditions: Vec<Desired>,
    rest: Rest,
    next_check: Timestamp,
    /// The extension to PUT and its hash, when everything holds.
    desired: Option<(crate::azure::MachineExtensionSpec, String)>,
    assessment: Assessment,
}

/// Decides and renders (no I/O).
fn decide<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    spec: &Spec,
    source: &Source,
    facts: &Facts,
    memory: &Memory,
    now: Timestamp,
) -> Step {
    let settings = &ctx.settings;
    let old = obj.status.clone().unwrap_or_default();
    let actual = facts.actual.as_ref();
    let (desired, unmet, assessment) = evaluate(obj, facts);
    let retry_at = memory.last_deploy_failure.map(|t| {
        plan::after(
            t,
            settings.scaled(plan::deploy_retry_delay(memory.deploy_failures)),
        )
    });
    let plan = plan::plan(&Inputs {
        policy: obj.spec.management_policy,
        assessment: &assessment,
        op_in_flight: memory.op.is_some(),
        desired_hash: desired.as_ref().map_or("", |(_, h)| h.as_str()),
        applied_hash: old.settings_hash.as_deref(),
        was_deployed: old.provisioning_state.is_some(),
        blocked: desired.is_none(),
        retry_at,
        now,
    });
    let mut rest = Rest {
        machine_name: Some(spec.machine.name().to_owned()),
        fields: render::fields(actual),
        ..Rest::of(&old)
    };
    let following = plan == Plan::Follow;
    if following {
        rest.operation_url = memory.op.as_deref().and_then(Operation::status_url);
        // An operation seen for the first time (not ours, or ours before a restart) is timed
        // from now.
        rest.operation_started = rest.operation_started.or(Some(now));
    } else {
        rest.operation_url = None;
        rest.operation_started = None;
    }
    if let Some((_, hash)) = &desired
        && assessment.in_sync()
    {
        rest.settings_hash = Some(hash.clone());
    }
    let stuck = following && plan::stuck(rest.operation_started, now, settings.operation_timeout);
    let prereq = render::prerequisites(&unmet, &source.describe());
    let deployed = render::deployed(&DeployInputs {
        policy: obj.spec.management_policy,
        assessment: &assessment,
        actual,
        plan,
        blocked: desired.is_none(),
        put_started: None,
        put_rejected: None,
        failure_detail: memory.failure_detail.as_deref(),
        retry_at,
        operation_started: rest.operation_started,
        stuck,
        timeout: settings.operation_timeout,
        was_deployed: old.provisioning_state.is_some(),
        machine: spec.machine.name(),
    });
    let ready = render::ready(&prereq, &deployed, None);
    Step {
        plan,
        conditions: vec![prereq, deployed, ready],
        rest,
        next_check: next_check(obj, ctx, plan, facts.progress.as_ref(), stuck, now),
        desired,
        assessment,
    }
}

/// The extension to PUT (with its hash) or the unmet prerequisites, and desired vs actual.
#[allow(clippy::type_complexity)] // a triple read once, right away
fn evaluate(
    obj: &GuestAttestationExtension,
    facts: &Facts,
) -> (
    Option<(crate::azure::MachineExtensionSpec, String)>,
    Vec<super::preflight::Unmet>,
    Assessment,
) {
    let target = desired::target(
        &obj.spec,
        TargetFacts {
            machine: facts.around.machine.as_ref(),
            vm: facts.around.vm.as_ref(),
            endpoints: &facts.around.endpoints,
        },
    );
    let actual = facts.actual.as_ref();
    match target {
        Ok(d) => {
            let hash = desired::desired_hash(&d);
            let assessment = compare::compare(&d, actual);
            (Some((d, hash)), Vec::new(), assessment)
        }
        Err(unmet) => (
            None,
            unmet,
            Assessment {
                state: compare::state(actual),
                differences: Vec::new(),
            },
        ),
    }
}

/// When Azure is looked at next: the operation's Retry-After while following one (slower once
/// it is stuck), the retry of a failed deployment, else the drift check.
fn next_check<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    plan: Plan,
    progress: Option<&Progress>,
    stuck: bool,
    now: Timestamp,
) -> Timestamp {
    let settings = &ctx.settings;
    let drift_check = plan::after(
        now,
        ctx.fleet_interval(settings.scaled(plan::DRIFT_INTERVAL))
            .mul_f64(jitter(&obj.uid().unwrap_or_default())),
    );
    match plan {
        Plan::Follow => {
            let pace = match progress {
                Some(Progress::Pending(retry_after)) => *retry_after,
                _ => settings.scaled(plan::FOLLOW_INTERVAL),
            };
            let pace = if stuck {
                pace.max(settings.scaled(plan::STUCK_POLL_INTERVAL))
            } else {
                pace
            };
            plan::after(now, pace)
        }
        Plan::RetryLater(at) => at.min(drift_check),
        Plan::Put(_) | Plan::Nothing => drift_check,
    }
}

/// Sends the PUT and turns the step into "in progress" (or "refused"). Retryable errors and
/// authorization failures are returned, to be reported as a blocker and retried with backoff.
#[allow(clippy::too_many_arguments)] // the driver's state, passed explicitly
async fn put<C: AzureClients, A: AzureApi>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    azure: &A,
    spec: &Spec,
    mut step: Step,
    reason: PutReason,
    memory: &mut Memory,
    now: Timestamp,
) -> Result<Step, AzureError> {
    let Some((desired, hash)) = step.desired.clone() else {
        return Ok(step);
    };
    // Wait for the write budget in the requeue queue, holding this object's place, not in a slot.
    let azure = azure
        .admit_write(spec.machine.subscription(), &obj.uid().unwrap_or_default())
        .await?;
    let deploy_inputs = |put_started, put_rejected, retry_at, started| DeployInputs {
        policy: obj.spec.management_policy,
        assessment: &step.assessment,
        actual: None,
        plan: step.plan,
        blocked: false,
        put_started,
        put_rejected,
        failure_detail: None,
        retry_at,
        operation_started: started,
        stuck: false,
        timeout: ctx.settings.operation_timeout,
        was_deployed: false,
        machine: spec.machine.name(),
    };
    let deployed = match azure
        .begin_put_extension(&spec.machine, EXTENSION_NAME, &desired)
        .await
    {
        Ok(lro) => {
            let lro = lro.with_deadline(SystemTime::now() + HANDLE_LIFETIME);
            let op = Operation::Put(lro);
            step.rest.operation_url = op.status_url();
            step.rest.operation_started = Some(now);
            step.rest.settings_hash = Some(hash);
            step.rest.fields.provisioning_state = Some(
                if step.assessment.state == compare::State::Missing {
                    "Creating"
                } else {
                    "Updating"
                }
                .to_owned(),
            );
            step.next_check = plan::after(now, op.retry_after());
            memory.op = Some(Box::new(op));
            memory.failure_detail = None;
            let detail = describe_put(reason, &step.assessment);
            ctx.publish(
                obj,
                if reason.is_warning() {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason.event_reason(),
                "Deploy",
                &detail,
            )
            .await;
            render::deployed(&deploy_inputs(Some(reason), None, None, Some(now)))
        }
        Err(e) if refused(&e) => {
            // Azure refused this body: a failed deployment, retried after the backoff.
            memory.deploy_failures = memory.deploy_failures.saturating_add(1);
            memory.last_deploy_failure = Some(now);
            let retry_at = plan::after(
                now,
                ctx.settings
                    .scaled(plan::deploy_retry_delay(memory.deploy_failures)),
            );
            step.next_check = retry_at;
            step.rest.operation_url = None;
            step.rest.operation_started = None;
            let message = azure_reason::message(&e);
            render::deployed(&deploy_inputs(None, Some(&message), Some(retry_at), None))
        }
        Err(e) => return Err(e),
    };
    let prereq = step.conditions[0].clone();
    let ready = render::ready(&prereq, &deployed, None);
    step.conditions = vec![prereq, deployed, ready];
    Ok(step)
}

/// A PUT answered with a client error that another identical PUT would get again (400, 404,
/// 422...): not throttling, not authorization, not a conflict with an operation in flight.
fn refused(e: &AzureError) -> bool {
    matches!(e, AzureError::Api { status, .. }
        if (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 409 | 429))
}

fn describe_put(reason: PutReason, assessment: &Assessment) -> String {
    let list: Vec<String> = assessment
        .differences
        .iter()
        .map(ToString::to_string)
        .collect();
    if list.is_empty() {
        reason.describe().to_owned()
    } else {
        format!("{}: {}", reason.describe(), list.join("; "))
    }
}

/// Azure (or the credentials) could not be used: what was known stays, Ready says why, and the
/// look is retried with backoff (never sooner than Azure's Retry-After). A request the client
/// held back (Retry-After or rate limit) was not sent: wait it out without writing.
async fn blocked<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    ns: &str,
    spec: &Spec,
    mut memory: Memory,
    error: &crate::controller::Error,
    now: Timestamp,
) -> StepResult {
    let ctx = &ectx.ctx;
    let uid = obj.uid().unwrap_or_default();
    if let crate::controller::Error::Azure(AzureError::Held { retry_after, .. }) = error {
        // What was known stays (a held drift check stays a drift check); the look is due again then.
        memory.next_check = Some(plan::after(now, *retry_after));
        ectx.memory.put(&uid, memory);
        return Ok(Action::requeue(
            (*retry_after).max(Duration::from_millis(100)),
        ));
    }
    let reason = error.reason();
    let message = azure_reason::message(error);
    warn!(reason, error = %message, "looking at Azure failed");
    memory.read_failures = memory.read_failures.saturating_add(1);
    let retry_after = match error {
        crate::controller::Error::Azure(a) => a.retry_after(),
        _ => None,
    };
    let wait = ctx
        .settings
        .scaled(delay(memory.read_failures))
        .max(retry_after.unwrap_or_default());
    memory.next_check = Some(plan::after(now, wait));
    let old = obj.status.clone().unwrap_or_default();
    let blocker = Desired::new(READY, ConditionStatus::False, reason, message);
    let prereq = render::carried(&old.conditions, PREREQUISITES_MET);
    let deployed = render::carried(&old.conditions, DEPLOYED);
    let ready = render::ready(&prereq, &deployed, Some(&blocker));
    let rest = Rest {
        machine_name: Some(spec.machine.name().to_owned()),
        ..Rest::of(&old)
    };
    let status = render::status(
        Some(&old),
        obj.metadata.generation,
        now,
        vec![prereq, deployed, ready],
        rest,
    );
    write_status(obj, ctx, ns, status).await?;
    ectx.memory.put(&uid, memory);
    Ok(Action::requeue(wait))
}

async fn write_invalid_spec<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    ns: &str,
    problem: &str,
    now: Timestamp,
) -> Result<(), crate::controller::Error> {
    let old = obj.status.clone().unwrap_or_default();
    let invalid = Desired::new(READY, ConditionStatus::False, "InvalidSpec", problem);
    let prereq = render::carried(&old.conditions, PREREQUISITES_MET);
    let deployed = render::carried(&old.conditions, DEPLOYED);
    let ready = render::ready(&prereq, &deployed, Some(&invalid));
    let status = render::status(
        Some(&old),
        obj.metadata.generation,
        now,
        vec![prereq, deployed, ready],
        Rest::of(&old),
    );
    write_status(obj, ctx, ns, status).await
}

/// The owned AttestationStatus; a conflict is reported once as a Warning Event.
async fn ensure_children<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    ns: &str,
    memory: &mut Memory,
    extension_exists: bool,
) -> Result<(), crate::controller::Error> {
    let ctx = &ectx.ctx;
    let outcome = children::ensure(
        &ctx.client,
        &ctx.settings.field_manager,
        obj,
        ns,
        extension_exists,
        ectx.statuses_of(ns).as_ref(),
    )
    .await?;
    match outcome {
        children::Outcome::Ok => memory.conflict_reported = None,
        children::Outcome::Conflict(why) => {
            if memory.conflict_reported.as_deref() != Some(why.as_str()) {
                ctx.publish(
                    obj,
                    EventType::Warning,
                    "AttestationStatusConflict",
                    "CreateStatus",
                    &why,
                )
                .await;
                memory.conflict_reported = Some(why);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// controller

/// Failed reconciles (Kubernetes errors, timeouts) back off per object: 5 s × 2ⁿ, capped at 5 min.
#[allow(clippy::needless_pass_by_value)] // the signature runner::run expects
pub fn error_policy<C: AzureClients>(
    obj: Arc<GuestAttestationExtension>,
    error: &Error,
    ectx: Arc<ExtensionContext<C>>,
) -> Action {
    let ctx = &ectx.ctx;
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

/// Runs the controller until `shutdown` resolves: watches GuestAttestationExtension objects
/// (all namespaces, or one; managedFields stripped before caching), the AttestationStatus
/// objects they own (a deleted one is recreated) and the AttestationProviders they reference (a
/// provider turning Ready triggers the deployment), with bounded concurrency.
pub async fn run<C: AzureClients>(
    ectx: Arc<ExtensionContext<C>>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ectx.ctx.client.clone();
    let (api, statuses, providers): (
        Api<GuestAttestationExtension>,
        Api<AttestationStatus>,
        Api<AttestationProvider>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let settings = &ectx.ctx.settings;
    let config = || watcher::Config::default().page_size(settings.page_size);
    let reader = Cache::<GuestAttestationExtension>::default();
    let stream = watcher(api, config())
        .default_backoff()
        .modify(crate::controller::strip_for_cache)
        .inspect_ok({
            let cache = reader.clone();
            move |event| cache.apply(event)
        })
        .touched_objects();
    let _companions = Companions::start(
        &ectx,
        |c| &c.memory,
        Some((
            Arc::clone(&ectx.ctx.fleet),
            crate::controller::scope(CONTROLLER, namespace.as_deref()),
        )),
        &reader,
    );
    // The AttestationStatuses: what ensure_children reads of each (owner, machine,
    // credentials), and the owners to wake when one changes.
    let owned = Owned::default();
    let status_stream = watcher(statuses, config())
        .default_backoff()
        .inspect_ok({
            let owned = owned.clone();
            move |event| owned.apply(event)
        })
        .touched_objects();
    ectx.statuses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(namespace.clone(), owned);
    let store = reader.clone();
    // Unpacks every extension per provider change: providers change rarely (an index by provider
    // would make it proportional to the extensions that reference it).
    let referencing = move |provider: AttestationProvider| {
        let (ns, name) = (provider.namespace(), provider.name_any());
        store
            .state()
            .into_iter()
            .filter(|g| {
                g.namespace() == ns && g.spec.provider_ref.as_ref().is_some_and(|r| r.name == name)
            })
            .map(|g| ObjectRef::from_obj(&*g))
            .collect::<Vec<_>>()
    };
    let triggers = futures::stream::select_all([
        runner::trigger_self(stream).boxed(),
        runner::trigger_owners(status_stream).boxed(),
        runner::trigger_mapped(
            watcher(providers, config())
                .default_backoff()
                .touched_objects(),
            referencing,
        )
        .boxed(),
    ]);
    let concurrency = settings.concurrency;
    let (on_change, on_error) = (Arc::clone(&ectx), Arc::clone(&ectx));
    runner::run(
        reader,
        triggers,
        concurrency,
        // Boxed: the reconcile is large, and only the tasks running hold one.
        move |o| Box::pin(reconcile(o, Arc::clone(&on_change))),
        move |o, e| error_policy(o, e, Arc::clone(&on_error)),
        ectx.ctx.closing_turns(shutdown),
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
    fn azure_is_looked_at_only_when_due() {
        let now = ts("2026-01-01T00:00:00Z");
        let fp = (Some(1), crate::controller::digest(&["c"]));
        assert!(due(&Memory::default(), &fp, now));
        let m = Memory {
            checked: Some(fp),
            next_check: Some(ts("2026-01-01T00:10:00Z")),
            ..Memory::default()
        };
        assert!(!due(&m, &fp, now), "our own status write finds nothing due");
        assert!(due(&m, &(Some(2), fp.1), now), "spec change");
        let other = crate::controller::digest(&["d"]);
        assert!(due(&m, &(Some(1), other), now), "source change");
        assert!(due(&m, &fp, ts("2026-01-01T00:10:00Z")), "scheduled");
    }

    #[test]
    fn refused_puts_are_client_errors_that_would_repeat() {
        let api = |status| AzureError::Api {
            service: crate::azure::Service::Arm,
            operation: "put_extension",
            status,
            code: None,
            message: None,
            retry_after: None,
            request_id: None,
        };
        assert!(refused(&api(400)));
        assert!(refused(&api(404)));
        for s in [401, 403, 409, 429, 500, 503] {
            assert!(!refused(&api(s)), "{s}");
        }
    }

    #[test]
    fn progress_updates_memory() {
        let now = ts("2026-01-01T00:00:00Z");
        let mut m = Memory::default();
        record_progress(&mut m, Some(&Progress::Failed("E: boom".into())), now);
        assert_eq!(m.deploy_failures, 1);
        assert_eq!(m.failure_detail.as_deref(), Some("E: boom"));
        record_progress(
            &mut m,
            Some(&Progress::Pending(Duration::from_secs(1))),
            now,
        );
        assert_eq!(m.deploy_failures, 1);
        record_progress(&mut m, Some(&Progress::Lost), now);
        assert_eq!(m.deploy_failures, 1, "a lost handle is not a failure");
        record_progress(&mut m, Some(&Progress::Succeeded), now);
        assert_eq!(m.deploy_failures, 0);
        assert!(m.failure_detail.is_none() && m.op.is_none());
    }

    #[test]
    fn spec_parsing() {
        let obj: GuestAttestationExtension = serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
            "metadata": {"name": "x"},
            "spec": {"machineId": "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm1",
                     "providerRef": {"name": "p"}}
        }))
        .unwrap();
        let s = parse_spec(&obj).unwrap();
        assert_eq!(s.machine.name(), "vm1");
        assert!(s.cluster.is_none());
        let mut bad = obj.clone();
        bad.spec.machine_id = "/nope".into();
        assert!(parse_spec(&bad).unwrap_err().contains("spec.machineId"));
    }
}
