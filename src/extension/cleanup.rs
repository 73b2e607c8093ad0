//! Deleting a GuestAttestationExtension (the finalizer's cleanup branch; I/O). Observe and
//! Retain release the finalizer at once; Delete deletes the extension and follows the deletion
//! until Azure confirms it gone. The finalizer is released in every case that cannot make
//! progress, each with an Event saying why: the extension (or the machine) is gone, the spec
//! cannot be parsed, or nothing moved within `Settings::operation_timeout` of the deletion
//! request (credentials missing or rejected, Azure refusing, the extension stuck in Deleting).

use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use crate::controller::Action;
use tracing::{info, warn};

use super::compare;
use super::desired::EXTENSION_NAME;
use super::observe::{self, Operation, Progress};
use super::plan::{self, Cleanup, Release};
use super::reconcile::{ExtensionContext, HANDLE_LIFETIME, Memory, record_progress};
use super::render::{self, DEPLOYED, PREREQUISITES_MET, READY, Rest};
use super::report::write_status;
use crate::attestation_status::assess::human;
use crate::azure::{AzureApi, AzureClients, Error as AzureError, MachineId};
use crate::controller::conditions::Desired;
use crate::controller::{Context, azure_reason, context::delay};
use crate::crd::{ConditionStatus, GuestAttestationExtension};

/// `None`: the finalizer may go now; `Some(action)`: keep it and come back.
pub(super) type Cleaned = Result<Option<Action>, crate::controller::Error>;

pub(super) async fn cleanup<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    ns: &str,
) -> Cleaned {
    let ctx = &ectx.ctx;
    let uid = obj.uid().unwrap_or_default();
    let now = Timestamp::now();
    if let Some(r) = plan::cleanup_policy(obj.spec.management_policy, obj.spec.deletion_policy) {
        return release(obj, ectx, r, String::new()).await;
    }
    let Ok(machine) = MachineId::parse(&obj.spec.machine_id) else {
        return release(obj, ectx, Release::InvalidSpec, String::new()).await;
    };
    let bound = ctx.settings.operation_timeout;
    let elapsed = obj
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default();
    let mut memory = ectx.memory.get(&uid);
    let looked = look(ctx, obj, ns, &machine, memory.op.as_deref()).await;
    let (azure, progress, actual) = match looked {
        Ok(x) => x,
        Err(crate::controller::Error::Kube(e)) => return Err(e.into()),
        Err(e) => return cleanup_blocked(obj, ectx, memory, &e, elapsed, now).await,
    };
    record_progress(&mut memory, progress.as_ref(), now);
    let state = compare::state(actual.as_ref());
    let mut step = plan::cleanup(
        &state,
        memory.op.is_some(),
        memory.delete_attempted,
        elapsed,
        bound,
    );
    let mut pace = match progress {
        Some(Progress::Pending(retry_after)) => retry_after,
        _ => ctx.settings.scaled(plan::FOLLOW_INTERVAL),
    };
    // A deletion that failed is tried again after the same backoff as a failed deployment,
    // not at every poll.
    let retry_at = memory.last_deploy_failure.map(|t| {
        plan::after(
            t,
            ctx.settings
                .scaled(plan::deploy_retry_delay(memory.deploy_failures)),
        )
    });
    if step == Cleanup::Delete
        && let Some(at) = retry_at.filter(|at| *at > now)
    {
        step = Cleanup::Follow;
        pace = Duration::try_from(at.duration_since(now)).unwrap_or(pace);
    }
    match step {
        Cleanup::Release(r) => {
            let detail = format!(
                "the extension stayed {} longer than {}",
                render::fields(actual.as_ref())
                    .provisioning_state
                    .unwrap_or_else(|| "in place".to_owned()),
                human(bound)
            );
            return release(obj, ectx, r, detail).await;
        }
        Cleanup::Delete => match azure.begin_delete_extension(&machine, EXTENSION_NAME).await {
            Ok(lro) => {
                let lro = lro.with_deadline(SystemTime::now() + HANDLE_LIFETIME);
                pace = lro.retry_after();
                memory.op = Some(Box::new(Operation::Delete(lro)));
                memory.delete_attempted = true;
                ctx.publish(
                    obj,
                    EventType::Normal,
                    "Deleting",
                    "Delete",
                    &format!(
                        "deleting the GuestAttestation extension from {} (deletionPolicy Delete)",
                        machine.name()
                    ),
                )
                .await;
            }
            Err(e) => {
                return cleanup_blocked(obj, ectx, memory, &e.into(), elapsed, now).await;
            }
        },
        Cleanup::Follow => {}
    }
    let failure = memory
        .failure_detail
        .as_deref()
        .map(|d| match retry_at.filter(|at| *at > now) {
            Some(at) => format!("; the last deletion failed ({d}), next attempt at {at}"),
            None => format!("; the last deletion failed ({d})"),
        })
        .unwrap_or_default();
    write_deleting(obj, ctx, ns, actual.as_ref(), &memory, &failure, now).await?;
    ectx.memory.put(&uid, memory);
    Ok(Some(Action::requeue(pace.max(Duration::from_millis(100)))))
}

/// The credentials, one poll of the operation in flight, and the extension.
async fn look<C: AzureClients>(
    ctx: &Context<C>,
    obj: &GuestAttestationExtension,
    ns: &str,
    machine: &MachineId,
    op: Option<&Operation>,
) -> Result<
    (
        C::Client,
        Option<Progress>,
        Option<crate::azure::MachineExtension>,
    ),
    crate::controller::Error,
> {
    let azure = ctx.azure_for(ns, obj.spec.credentials_ref.as_ref()).await?;
    let reads = observe::reads_needed(true, op.is_some());
    let azure = azure
        .admit(
            machine.subscription(),
            &obj.uid().unwrap_or_default(),
            reads,
        )
        .await?;
    let (progress, actual) = observe::progress_and_extension(&azure, machine, op, true).await?;
    Ok((azure, progress, actual))
}

/// The status while the extension is being deleted.
async fn write_deleting<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    ns: &str,
    actual: Option<&crate::azure::MachineExtension>,
    memory: &Memory,
    failure: &str,
    now: Timestamp,
) -> Result<(), crate::controller::Error> {
    let old = obj.status.clone().unwrap_or_default();
    let deployed = Desired::new(
        DEPLOYED,
        ConditionStatus::Unknown,
        "Deleting",
        format!(
            "deleting the extension (deletionPolicy Delete); the finalizer is released once Azure confirms it \
             gone, or after {} without progress{failure}",
            human(ctx.settings.operation_timeout)
        ),
    );
    let ready = Desired::new(
        READY,
        ConditionStatus::False,
        "Deleting",
        deployed.message.clone(),
    );
    let rest = Rest {
        fields: render::fields(actual),
        operation_url: memory.op.as_deref().and_then(Operation::status_url),
        ..Rest::of(&old)
    };
    let status = render::status(
        Some(&old),
        obj.metadata.generation,
        now,
        vec![
            render::carried(&old.conditions, PREREQUISITES_MET),
            deployed,
            ready,
        ],
        rest,
    );
    write_status(obj, ctx, ns, status).await
}

/// Deletion cannot make progress (credentials, Azure errors): retried with backoff, and the
/// finalizer is released once the deletion is older than the bound.
async fn cleanup_blocked<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    mut memory: Memory,
    error: &crate::controller::Error,
    elapsed: Duration,
    now: Timestamp,
) -> Cleaned {
    let ctx = &ectx.ctx;
    let message = azure_reason::message(error);
    if plan::give_up(elapsed, ctx.settings.operation_timeout) {
        return release(obj, ectx, Release::GaveUp, message).await;
    }
    if let crate::controller::Error::Azure(AzureError::Held { retry_after, .. }) = error {
        ectx.memory.put(&obj.uid().unwrap_or_default(), memory);
        return Ok(Some(Action::requeue(
            (*retry_after).max(Duration::from_millis(100)),
        )));
    }
    warn!(reason = error.reason(), error = %message, "deleting the extension is blocked");
    memory.read_failures = memory.read_failures.saturating_add(1);
    let retry_after = match error {
        crate::controller::Error::Azure(a) => a.retry_after(),
        _ => None,
    };
    let wait = ctx
        .settings
        .scaled(delay(memory.read_failures))
        .max(retry_after.unwrap_or_default());
    let old = obj.status.clone().unwrap_or_default();
    let ready = Desired::new(
        READY,
        ConditionStatus::False,
        error.reason(),
        format!("deleting the extension is blocked: {message}"),
    );
    let status = render::status(
        Some(&old),
        obj.metadata.generation,
        now,
        vec![
            render::carried(&old.conditions, PREREQUISITES_MET),
            render::carried(&old.conditions, DEPLOYED),
            ready,
        ],
        Rest::of(&old),
    );
    if let Some(ns) = obj.namespace() {
        write_status(obj, ctx, &ns, status).await?;
    }
    ectx.memory.put(&obj.uid().unwrap_or_default(), memory);
    Ok(Some(Action::requeue(wait)))
}

/// Lets the finalizer go (the caller removes it) with an Event saying why.
async fn release<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ectx: &ExtensionContext<C>,
    why: Release,
    detail: String,
) -> Cleaned {
    let machine = obj
        .spec
        .machine_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let note = match why {
        Release::Retain => format!("deletionPolicy Retain: the extension stays on {machine}"),
        Release::Observe => format!(
            "managementPolicy Observe: the operator never writes to Azure, so the extension on {machine} is left as it is"
        ),
        Release::Gone => format!("the GuestAttestation extension is gone from {machine}"),
        Release::InvalidSpec => {
            "spec.machineId cannot be parsed, so there is nothing the operator could delete"
                .to_owned()
        }
        Release::GaveUp => format!(
            "deleting the extension could not complete ({detail}); the finalizer is released so the object does \
             not hang, and the extension may remain on {machine}: check it with az connectedmachine extension show \
             --machine-name {machine} --name GuestAttestation and delete it by hand"
        ),
    };
    info!(reason = why.event_reason(), "releasing the finalizer");
    let type_ = if why.is_warning() {
        EventType::Warning
    } else {
        EventType::Normal
    };
    ectx.ctx
        .publish(obj, type_, why.event_reason(), "Delete", &note)
        .await;
    ectx.memory.forget(&obj.uid().unwrap_or_default());
    Ok(None)
}
