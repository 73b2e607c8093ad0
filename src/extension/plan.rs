//! What to do next (pure): deploy, follow an operation in flight, retry a failed deployment
//! later, leave a matching extension alone, and on delete: remove, follow or give up. Also the
//! timing: when a failed deployment is retried, when an operation counts as stuck, when Azure
//! is looked at again.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::compare::{Assessment, State};
use crate::crd::{DeletionPolicy, ManagementPolicy};

/// Azure sends no events: an extension that matches is looked at again after this long (scaled
/// by `Settings::interval_scale`, ±10 % jitter per object, raised with the fleet to fit the read
/// budget) to catch drift. A drift check of a settled extension reads the extension alone (T5:
/// one GET per VM per drift interval), matching AttestationStatus's default refresh interval.
pub const DRIFT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// How long the machine, VM instance and cluster read by a full look are reused by later looks
/// while the prerequisites hold (12 drift intervals). Changes that matter at once (the spec, a
/// provider's endpoint) trigger a full look; the rest (a VM's security profile, the cluster's
/// endpoints) shows within this bound, and in AttestationStatus sooner.
pub const FULL_LOOK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// How long a full look's surroundings are reused: `full` (the scaled `FULL_LOOK_INTERVAL`), and
/// never fewer than as many drift checks once the fleet floor has raised the drift interval to
/// `drift`; otherwise every drift check of a large fleet would be a full look (the 1,000-VM
/// benchmark saw just that).
pub fn full_look_interval(full: Duration, drift: Duration) -> Duration {
    let checks = FULL_LOOK_INTERVAL.as_secs() / DRIFT_INTERVAL.as_secs();
    full.max(drift * u32::try_from(checks).unwrap_or(u32::MAX))
}

/// Whether the next look reads the machine, VM instance and cluster again, or reuses those of
/// the full look at `last_full` (`reusable`: kept because every prerequisite held), for at most
/// `interval`.
pub fn full_look_due(
    last_full: Option<Timestamp>,
    reusable: bool,
    now: Timestamp,
    interval: Duration,
) -> bool {
    !reusable || last_full.is_none_or(|t| after(t, interval) <= now)
}

/// How often an operation that is not ours (no handle in memory) is followed through the
/// extension's own provisioningState.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(10);

/// Once an operation is reported stuck, it is polled at this pace (it may still finish).
pub const STUCK_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Why the extension is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutReason {
    /// First deployment.
    Create,
    /// It was deployed and has been removed outside the operator.
    Redeploy,
    /// It was changed outside the operator (settings, version pin, publisher, upgrade flag).
    Repair,
    /// The spec (or the cluster's endpoints) changed.
    Update,
    /// The last deployment failed; trying again after the backoff.
    Retry,
}

impl PutReason {
    /// The Event reason.
    pub fn event_reason(self) -> &'static str {
        match self {
            Self::Create => "Deploying",
            Self::Redeploy | Self::Repair => "DriftDetected",
            Self::Update => "Updating",
            Self::Retry => "RetryingDeployment",
        }
    }

    /// Whether the Event is a Warning (something happened that nobody asked for).
    pub fn is_warning(self) -> bool {
        matches!(self, Self::Redeploy | Self::Repair)
    }

    /// The Event's opening words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Create => "deploying the GuestAttestation extension",
            Self::Redeploy => "the extension was removed outside the operator; deploying it again",
            Self::Repair => "the extension was changed outside the operator; putting it back",
            Self::Update => "the desired extension changed; updating it",
            Self::Retry => "the last deployment failed; trying again",
        }
    }
}

/// The next step of an extension that is not being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// An operation is in flight (ours or not): follow it, write nothing.
    Follow,
    /// PUT the extension.
    Put(PutReason),
    /// The deployment failed; try again at this instant.
    RetryLater(Timestamp),
    /// Nothing to write: it matches, or Observe mode only reports.
    Nothing,
}

/// What the plan depends on.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// spec.managementPolicy.
    pub policy: ManagementPolicy,
    /// Desired vs actual.
    pub assessment: &'a Assessment,
    /// The controller holds the handle of an operation it started.
    pub op_in_flight: bool,
    /// Hash of the desired extension.
    pub desired_hash: &'a str,
    /// status.settingsHash: what was last applied or found in sync.
    pub applied_hash: Option<&'a str>,
    /// The extension existed before (status had a provisioningState).
    pub was_deployed: bool,
    /// Prerequisites are unmet: nothing may be written.
    pub blocked: bool,
    /// When a failed deployment may be retried (None: at once).
    pub retry_at: Option<Timestamp>,
    /// Now.
    pub now: Timestamp,
}

/// Decides the next step. Observe never writes; an operation in flight is never interrupted;
/// a matching extension is never written.
pub fn plan(i: &Inputs<'_>) -> Plan {
    if i.op_in_flight || matches!(i.assessment.state, State::InProgress(_)) {
        return Plan::Follow;
    }
    if i.policy == ManagementPolicy::Observe || i.blocked {
        return Plan::Nothing;
    }
    // A change on our side (spec, or the endpoints the settings come from) since the last
    // apply, as opposed to a change made in Azure.
    let ours_changed = i.applied_hash != Some(i.desired_hash);
    match &i.assessment.state {
        State::Missing if i.was_deployed && !ours_changed => Plan::Put(PutReason::Redeploy),
        State::Missing => Plan::Put(PutReason::Create),
        State::Failed { .. } if ours_changed => Plan::Put(PutReason::Update),
        State::Failed { .. } => match i.retry_at {
            Some(at) if at > i.now => Plan::RetryLater(at),
            _ => Plan::Put(PutReason::Retry),
        },
        State::Succeeded if i.assessment.differences.is_empty() => Plan::Nothing,
        State::Succeeded if ours_changed => Plan::Put(PutReason::Update),
        State::Succeeded => Plan::Put(PutReason::Repair),
        State::InProgress(_) => Plan::Follow,
    }
}

/// The delay before retrying after `failures` failed deployments in a row: 1 min × 2ⁿ⁻¹,
/// capped at 1 h (before scaling). A failing extension handler rarely heals in seconds, and every
/// attempt is an ARM write.
pub fn deploy_retry_delay(failures: u32) -> Duration {
    let mins = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs((mins * 60).min(3600))
}

/// Whether an operation in flight since `started` has outlasted `timeout`.
pub fn stuck(started: Option<Timestamp>, now: Timestamp, timeout: Duration) -> bool {
    started.is_some_and(|s| {
        Duration::try_from(now.duration_since(s)).is_ok_and(|elapsed| elapsed > timeout)
    })
}

/// `t` + `d`, saturating.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Why the finalizer is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// deletionPolicy Retain: the extension stays.
    Retain,
    /// managementPolicy Observe: the operator never writes to Azure, so it does not delete.
    Observe,
    /// The extension is not (or no longer) on the machine, or the machine is gone.
    Gone,
    /// The spec cannot be parsed, so there is nothing the operator could delete.
    InvalidSpec,
    /// Deletion could not make progress for longer than the bound (credentials broken, Azure
    /// refusing, the extension stuck in Deleting): released so the object never hangs.
    GaveUp,
}

impl Release {
    /// The Event reason.
    pub fn event_reason(self) -> &'static str {
        match self {
            Self::Retain | Self::Observe => "Retained",
            Self::Gone => "Deleted",
            Self::InvalidSpec | Self::GaveUp => "FinalizerReleased",
        }
    }

    /// Whether the Event is a Warning (the extension may remain in Azure against the policy).
    pub fn is_warning(self) -> bool {
        matches!(self, Self::InvalidSpec | Self::GaveUp)
    }
}

/// The next step of an extension whose object is being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Release the finalizer.
    Release(Release),
    /// Start deleting the extension.
    Delete,
    /// An operation is in flight (a delete, or a create that must end first): follow it.
    Follow,
}

/// The policies decide first; otherwise the extension is deleted and followed until Azure
/// confirms it gone, within `bound` of the deletion request.
pub fn cleanup_policy(policy: ManagementPolicy, deletion: DeletionPolicy) -> Option<Release> {
    match (policy, deletion) {
        (ManagementPolicy::Observe, _) => Some(Release::Observe),
        (_, DeletionPolicy::Retain) => Some(Release::Retain),
        (ManagementPolicy::Manage, DeletionPolicy::Delete) => None,
    }
}

/// The cleanup step for deletionPolicy Delete, from the extension's state.
/// A deletion past `bound` is given up only once it has been tried (or is in flight), so an
/// operator that was down longer than the bound still deletes.
pub fn cleanup(
    state: &State,
    op_in_flight: bool,
    attempted: bool,
    elapsed: Duration,
    bound: Duration,
) -> Cleanup {
    if *state == State::Missing && !op_in_flight {
        return Cleanup::Release(Release::Gone);
    }
    let in_flight = op_in_flight || matches!(state, State::InProgress(_));
    if elapsed > bound && (attempted || in_flight) {
        return Cleanup::Release(Release::GaveUp);
    }
    match state {
        _ if in_flight => Cleanup::Follow,
        State::Missing | State::InProgress(_) => Cleanup::Follow,
        State::Succeeded | State::Failed { .. } => Cleanup::Delete,
    }
}

/// Whether a deletion that cannot make progress (an error before Azure answered) has waited
/// long enough to release the finalizer.
pub fn give_up(elapsed: Duration, bound: Duration) -> bool {
    elapsed > bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::compare::Difference;

    #[test]
    fn full_look_interval_keeps_twelve_drift_checks_under_the_fleet_floor() {
        let six_h = FULL_LOOK_INTERVAL;
        assert_eq!(full_look_interval(six_h, DRIFT_INTERVAL), six_h);
        // The floor raised drift checks to 69 min: full looks every 12 of them, not every one.
        let drift = Duration::from_secs(69 * 60);
        assert_eq!(full_look_interval(six_h, drift), drift * 12);
    }

    #[test]
    fn full_looks_only_when_unsettled_or_due() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let six_h = FULL_LOOK_INTERVAL;
        assert!(full_look_due(None, true, t0, six_h), "nothing known");
        assert!(
            full_look_due(Some(t0), false, t0, six_h),
            "prerequisites unmet"
        );
        assert!(!full_look_due(
            Some(t0),
            true,
            after(t0, Duration::from_secs(3600)),
            six_h
        ));
        assert!(
            full_look_due(Some(t0), true, after(t0, six_h), six_h),
            "due"
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn assessment(state: State, differences: Vec<Difference>) -> Assessment {
        Assessment { state, differences }
    }

    fn inputs(a: &Assessment) -> Inputs<'_> {
        Inputs {
            policy: ManagementPolicy::Manage,
            assessment: a,
            op_in_flight: false,
            desired_hash: "h1",
            applied_hash: Some("h1"),
            was_deployed: true,
            blocked: false,
            retry_at: None,
            now: ts("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn no_put_when_azure_matches() {
        let a = assessment(State::Succeeded, vec![]);
        assert_eq!(plan(&inputs(&a)), Plan::Nothing);
        // Even when the hash was never recorded (adopting a matching extension).
        let i = Inputs {
            applied_hash: None,
            was_deployed: false,
            ..inputs(&a)
        };
        assert_eq!(plan(&i), Plan::Nothing);
    }

    #[test]
    fn first_deploy_and_redeploy_after_removal() {
        let a = assessment(State::Missing, vec![]);
        let first = Inputs {
            applied_hash: None,
            was_deployed: false,
            ..inputs(&a)
        };
        assert_eq!(plan(&first), Plan::Put(PutReason::Create));
        assert_eq!(plan(&inputs(&a)), Plan::Put(PutReason::Redeploy));
    }

    #[test]
    fn drift_outside_is_repaired_and_spec_changes_update() {
        let a = assessment(State::Succeeded, vec![Difference::Settings]);
        assert_eq!(plan(&inputs(&a)), Plan::Put(PutReason::Repair));
        let changed = Inputs {
            desired_hash: "h2",
            ..inputs(&a)
        };
        assert_eq!(plan(&changed), Plan::Put(PutReason::Update));
    }

    #[test]
    fn observe_never_writes() {
        for state in [
            State::Missing,
            State::Succeeded,
            State::Failed {
                state: "Failed".into(),
                detail: None,
            },
        ] {
            let a = assessment(state, vec![Difference::Settings]);
            let i = Inputs {
                policy: ManagementPolicy::Observe,
                applied_hash: None,
                ..inputs(&a)
            };
            assert_eq!(plan(&i), Plan::Nothing);
        }
    }

    #[test]
    fn operations_in_flight_are_followed() {
        let a = assessment(State::InProgress("Creating".into()), vec![]);
        assert_eq!(plan(&inputs(&a)), Plan::Follow);
        let a = assessment(State::Missing, vec![]);
        let i = Inputs {
            op_in_flight: true,
            ..inputs(&a)
        };
        assert_eq!(plan(&i), Plan::Follow);
    }

    #[test]
    fn failures_retry_after_the_backoff_unless_the_spec_changed() {
        let a = assessment(
            State::Failed {
                state: "Failed".into(),
                detail: None,
            },
            vec![],
        );
        let later = ts("2026-01-01T00:01:00Z");
        let waiting = Inputs {
            retry_at: Some(later),
            ..inputs(&a)
        };
        assert_eq!(plan(&waiting), Plan::RetryLater(later));
        let due = Inputs {
            now: later,
            ..waiting.clone()
        };
        assert_eq!(plan(&due), Plan::Put(PutReason::Retry));
        let changed = Inputs {
            desired_hash: "h2",
            ..waiting
        };
        assert_eq!(plan(&changed), Plan::Put(PutReason::Update));
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(deploy_retry_delay(1), Duration::from_secs(60));
        assert_eq!(deploy_retry_delay(2), Duration::from_secs(120));
        assert_eq!(deploy_retry_delay(7), Duration::from_secs(3600));
        assert_eq!(deploy_retry_delay(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn stuck_after_the_timeout() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let timeout = Duration::from_secs(1800);
        assert!(!stuck(None, t0, timeout));
        assert!(!stuck(Some(t0), ts("2026-01-01T00:30:00Z"), timeout));
        assert!(stuck(Some(t0), ts("2026-01-01T00:30:01Z"), timeout));
        // A start in the future (clock skew) is not stuck.
        assert!(!stuck(Some(ts("2026-01-02T00:00:00Z")), t0, timeout));
    }

    #[test]
    fn deletion_policies() {
        assert_eq!(
            cleanup_policy(ManagementPolicy::Observe, DeletionPolicy::Delete),
            Some(Release::Observe)
        );
        assert_eq!(
            cleanup_policy(ManagementPolicy::Manage, DeletionPolicy::Retain),
            Some(Release::Retain)
        );
        assert_eq!(
            cleanup_policy(ManagementPolicy::Manage, DeletionPolicy::Delete),
            None
        );
    }

    #[test]
    fn deletion_steps() {
        let bound = Duration::from_secs(1800);
        let early = Duration::from_secs(5);
        let late = Duration::from_secs(1801);
        let failed = State::Failed {
            state: "Failed".into(),
            detail: None,
        };
        let deleting = State::InProgress("Deleting".into());
        assert_eq!(
            cleanup(&State::Missing, false, true, late, bound),
            Cleanup::Release(Release::Gone)
        );
        assert_eq!(
            cleanup(&State::Succeeded, false, false, early, bound),
            Cleanup::Delete
        );
        assert_eq!(cleanup(&failed, false, true, early, bound), Cleanup::Delete);
        assert_eq!(
            cleanup(&deleting, false, false, early, bound),
            Cleanup::Follow
        );
        assert_eq!(
            cleanup(&State::Succeeded, true, true, early, bound),
            Cleanup::Follow
        );
        assert_eq!(
            cleanup(&deleting, true, true, late, bound),
            Cleanup::Release(Release::GaveUp)
        );
        assert_eq!(
            cleanup(&deleting, false, false, late, bound),
            Cleanup::Release(Release::GaveUp),
            "stuck in Deleting past the bound"
        );
        // Late but never tried (the operator was down): try once.
        assert_eq!(
            cleanup(&State::Succeeded, false, false, late, bound),
            Cleanup::Delete
        );
        assert_eq!(
            cleanup(&failed, false, true, late, bound),
            Cleanup::Release(Release::GaveUp)
        );
        assert!(give_up(late, bound) && !give_up(early, bound));
    }
}
