//! The status of a GuestAttestationExtension (pure; `now` is a parameter): the conditions
//! `PrerequisitesMet`, `Deployed` and the `Ready` summary, and the extension's fields as Azure
//! reports them. Messages hold no changing clock values, so an unchanged situation renders an
//! unchanged status and nothing is written.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::compare::{self, Assessment, State};
use super::plan::{Plan, PutReason};
use super::preflight::{Unmet, summary};
use crate::attestation_status::assess::human;
use crate::azure::MachineExtension;
use crate::controller::conditions::{Desired, MAX_MESSAGE, find, merge, truncate};
use crate::crd::{Condition, ConditionStatus, GuestAttestationExtensionStatus, ManagementPolicy};

/// Condition type: the VM and the settings source allow a deployment.
pub const PREREQUISITES_MET: &str = "PrerequisitesMet";
/// Condition type: the extension is on the machine as specified.
pub const DEPLOYED: &str = "Deployed";
/// Condition type: the summary GitOps tools read.
pub const READY: &str = "Ready";

/// The PrerequisitesMet condition.
pub fn prerequisites(unmet: &[Unmet], source: &str) -> Desired {
    if unmet.is_empty() {
        Desired::new(
            PREREQUISITES_MET,
            ConditionStatus::True,
            "PrerequisitesMet",
            format!("Trusted Launch VM with vTPM and Secure Boot enabled; settings from {source}"),
        )
    } else {
        let (reason, message) = summary(unmet);
        Desired::new(PREREQUISITES_MET, ConditionStatus::False, reason, message)
    }
}

/// What the Deployed condition depends on.
#[derive(Clone, Debug)]
pub struct DeployInputs<'a> {
    /// spec.managementPolicy.
    pub policy: ManagementPolicy,
    /// Desired vs actual (state only, no differences, when nothing can be desired yet).
    pub assessment: &'a Assessment,
    /// The actual extension.
    pub actual: Option<&'a MachineExtension>,
    /// The plan made (Nothing when prerequisites block it).
    pub plan: Plan,
    /// Prerequisites are unmet: nothing is deployed.
    pub blocked: bool,
    /// A PUT was accepted in this reconcile, and why.
    pub put_started: Option<PutReason>,
    /// A PUT was refused by Azure (not retryable), with Azure's error.
    pub put_rejected: Option<&'a str>,
    /// Azure's error of the last failed operation, when the controller saw it fail.
    pub failure_detail: Option<&'a str>,
    /// When the next attempt after a failure is due (Manage).
    pub retry_at: Option<Timestamp>,
    /// When the operation in flight started.
    pub operation_started: Option<Timestamp>,
    /// It has been in flight longer than the operation timeout.
    pub stuck: bool,
    /// The operation timeout.
    pub timeout: Duration,
    /// The extension existed before (status had a provisioningState).
    pub was_deployed: bool,
    /// The machine's name.
    pub machine: &'a str,
}

/// The Deployed condition.
pub fn deployed(i: &DeployInputs<'_>) -> Desired {
    if i.put_started.is_some() {
        let state = if i.assessment.state == State::Missing {
            "Creating"
        } else {
            "Updating"
        };
        // The Event says why; the condition says what is happening, in the same words as
        // while following, so the reconcile after the PUT writes nothing new.
        return in_flight(i, state);
    }
    if let Some(error) = i.put_rejected {
        return Desired::new(
            DEPLOYED,
            ConditionStatus::False,
            "DeploymentFailed",
            format!("Azure refused the extension: {error}{}", next_attempt(i)),
        );
    }
    match &i.assessment.state {
        State::InProgress(s) => in_flight(i, s),
        _ if i.plan == Plan::Follow => in_flight(i, "InProgress"),
        _ => settled(i),
    }
}

fn started(i: &DeployInputs<'_>) -> String {
    i.operation_started
        .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
}

/// An operation in flight: in progress, or stuck past the timeout (with a hint).
fn in_flight(i: &DeployInputs<'_>, state: &str) -> Desired {
    if i.stuck {
        return Desired::new(
            DEPLOYED,
            ConditionStatus::False,
            "OperationStuck",
            format!(
                "the extension has stayed {state} longer than {} (since {}): the operation looks stuck. \
                 Check that the Arc agent of {machine} is Connected (az connectedmachine show) and the \
                 extension's state and logs (az connectedmachine extension show --machine-name {machine} \
                 --name GuestAttestation); the operator keeps following it and writes nothing until it ends",
                human(i.timeout),
                started(i),
                machine = i.machine,
            ),
        );
    }
    Desired::new(
        DEPLOYED,
        ConditionStatus::Unknown,
        "InProgress",
        format!(
            "{state} since {}: the operator follows the operation between reconciles",
            started(i)
        ),
    )
}

/// No operation in flight: failed, missing, drifted or deployed.
fn settled(i: &DeployInputs<'_>) -> Desired {
    let observe = i.policy == ManagementPolicy::Observe;
    let not = |reason: &str, message: String| {
        Desired::new(DEPLOYED, ConditionStatus::False, reason, message)
    };
    match &i.assessment.state {
        State::Failed { state, detail } => {
            let detail = i
                .failure_detail
                .or(detail.as_deref())
                .unwrap_or("Azure gave no details");
            let tail = if observe {
                " (Observe: the operator does not retry)".to_owned()
            } else if i.blocked {
                " (not retried until the prerequisites are met)".to_owned()
            } else {
                next_attempt(i)
            };
            not(
                "DeploymentFailed",
                format!("Azure reports the extension {state}: {detail}{tail}"),
            )
        }
        State::Missing if observe && i.was_deployed => not(
            "Drifted",
            "the extension was removed outside the operator (Observe: not deployed again)".into(),
        ),
        State::Missing if observe => not(
            "NotDeployed",
            "the extension is not on the machine (Observe: the operator does not deploy it)".into(),
        ),
        State::Missing if i.blocked => not(
            "NotDeployed",
            "the extension is not on the machine; it is deployed once the prerequisites are met"
                .into(),
        ),
        State::Missing => not("NotDeployed", "the extension is not on the machine".into()),
        State::Succeeded | State::InProgress(_) if !i.assessment.differences.is_empty() => {
            let list: Vec<String> = i
                .assessment
                .differences
                .iter()
                .map(ToString::to_string)
                .collect();
            not(
                "Drifted",
                format!(
                    "the extension differs from the spec: {}{}",
                    list.join("; "),
                    if observe {
                        " (Observe: not corrected)"
                    } else {
                        ""
                    }
                ),
            )
        }
        State::Succeeded | State::InProgress(_) => {
            let (version, publisher) = i.actual.map_or((None, None), |a| {
                (compare::actual_version(a), a.properties.publisher.clone())
            });
            Desired::new(
                DEPLOYED,
                ConditionStatus::True,
                "Deployed",
                format!(
                    "GuestAttestation {} from {} is Succeeded on {}",
                    version.as_deref().unwrap_or("(version not reported)"),
                    publisher.as_deref().unwrap_or("(publisher not reported)"),
                    i.machine
                ),
            )
        }
    }
}

fn next_attempt(i: &DeployInputs<'_>) -> String {
    i.retry_at
        .map_or_else(String::new, |t| format!("; next attempt at {t}"))
}

/// The Ready summary: a blocker (Azure unreadable, credentials broken) first, then unmet
/// prerequisites, then the deployment.
pub fn ready(prereq: &Desired, deployed: &Desired, blocker: Option<&Desired>) -> Desired {
    let from =
        |d: &Desired, status| Desired::new(READY, status, d.reason.clone(), d.message.clone());
    if let Some(b) = blocker {
        return from(b, ConditionStatus::False);
    }
    match (prereq.status, deployed.status) {
        (ConditionStatus::False, _) => from(prereq, ConditionStatus::False),
        (_, ConditionStatus::False) => from(deployed, ConditionStatus::False),
        (ConditionStatus::True, ConditionStatus::True) => from(deployed, ConditionStatus::True),
        (_, ConditionStatus::Unknown) => Desired::new(
            READY,
            ConditionStatus::Unknown,
            "Reconciling",
            deployed.message.clone(),
        ),
        (ConditionStatus::Unknown, _) => Desired::new(
            READY,
            ConditionStatus::Unknown,
            "Reconciling",
            prereq.message.clone(),
        ),
    }
}

/// A condition kept as it was (when Azure could not be read), or Unknown before the first look.
pub fn carried(old: &[Condition], type_: &'static str) -> Desired {
    find(old, type_).map_or_else(
        || {
            Desired::new(
                type_,
                ConditionStatus::Unknown,
                "Checking",
                "not checked yet",
            )
        },
        |c| Desired::new(type_, c.status, c.reason.clone(), c.message.clone()),
    )
}

/// The extension's fields as Azure reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// provisioningState.
    pub provisioning_state: Option<String>,
    /// typeHandlerVersion.
    pub type_handler_version: Option<String>,
    /// instanceView.status message.
    pub instance_view_message: Option<String>,
}

/// The fields of `actual` (all None when there is none).
pub fn fields(actual: Option<&MachineExtension>) -> Fields {
    let Some(a) = actual else {
        return Fields::default();
    };
    Fields {
        provisioning_state: a
            .properties
            .provisioning_state
            .as_ref()
            .map(|s| truncate(s.as_str(), 32)),
        type_handler_version: compare::actual_version(a).map(|v| truncate(&v, 32)),
        instance_view_message: a
            .properties
            .instance_view
            .as_ref()
            .and_then(|v| v.status.as_ref())
            .and_then(|s| s.message.as_deref())
            .map(|m| truncate(m, MAX_MESSAGE)),
    }
}

/// Everything but the conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rest {
    /// The machine's name.
    pub machine_name: Option<String>,
    /// The extension's fields.
    pub fields: Fields,
    /// status.settingsHash.
    pub settings_hash: Option<String>,
    /// The operation's status URL.
    pub operation_url: Option<String>,
    /// When the operation started.
    pub operation_started: Option<Timestamp>,
}

impl Rest {
    /// The fields of the stored status.
    pub fn of(old: &GuestAttestationExtensionStatus) -> Self {
        Self {
            machine_name: old.machine_name.clone(),
            fields: Fields {
                provisioning_state: old.provisioning_state.clone(),
                type_handler_version: old.type_handler_version.clone(),
                instance_view_message: old.instance_view_message.clone(),
            },
            settings_hash: old.settings_hash.clone(),
            operation_url: old.operation_url.clone(),
            operation_started: old.operation_started_time.as_ref().map(|t| t.0),
        }
    }
}

/// The status: the three conditions merged into the old ones (transition times kept unless a
/// status flips) and the other fields.
pub fn status(
    old: Option<&GuestAttestationExtensionStatus>,
    generation: Option<i64>,
    now: Timestamp,
    conditions: Vec<Desired>,
    rest: Rest,
) -> GuestAttestationExtensionStatus {
    let old_conditions = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    GuestAttestationExtensionStatus {
        observed_generation: generation,
        conditions: merge(old_conditions, conditions, generation, now),
        machine_name: rest.machine_name.map(|n| truncate(&n, 64)),
        provisioning_state: rest.fields.provisioning_state,
        type_handler_version: rest.fields.type_handler_version,
        instance_view_message: rest.fields.instance_view_message,
        settings_hash: rest.settings_hash,
        operation_url: rest.operation_url.map(|u| truncate(&u, 2048)),
        operation_started_time: rest.operation_started.map(Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::compare::Difference;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn base(a: &Assessment) -> DeployInputs<'_> {
        DeployInputs {
            policy: ManagementPolicy::Manage,
            assessment: a,
            actual: None,
            plan: Plan::Nothing,
            blocked: false,
            put_started: None,
            put_rejected: None,
            failure_detail: None,
            retry_at: None,
            operation_started: Some(ts("2026-01-01T00:00:00Z")),
            stuck: false,
            timeout: Duration::from_secs(1800),
            was_deployed: false,
            machine: "vm1",
        }
    }

    fn a(state: State, differences: Vec<Difference>) -> Assessment {
        Assessment { state, differences }
    }

    #[test]
    fn in_progress_and_stuck() {
        let x = a(State::InProgress("Creating".into()), vec![]);
        let d = deployed(&DeployInputs {
            plan: Plan::Follow,
            ..base(&x)
        });
        assert_eq!(
            (d.status, d.reason.as_str()),
            (ConditionStatus::Unknown, "InProgress")
        );
        assert!(d.message.starts_with("Creating since 2026-01-01T00:00:00Z"));
        let d = deployed(&DeployInputs {
            plan: Plan::Follow,
            stuck: true,
            ..base(&x)
        });
        assert_eq!(
            (d.status, d.reason.as_str()),
            (ConditionStatus::False, "OperationStuck")
        );
        assert!(d.message.contains("longer than 30m"), "{}", d.message);
        assert!(d.message.contains("az connectedmachine"), "{}", d.message);
        // The condition right after a PUT equals the one while following it.
        let missing = a(State::Missing, vec![]);
        let after_put = deployed(&DeployInputs {
            put_started: Some(PutReason::Create),
            plan: Plan::Put(PutReason::Create),
            ..base(&missing)
        });
        let following = deployed(&DeployInputs {
            plan: Plan::Follow,
            ..base(&x)
        });
        assert_eq!(after_put, following);
    }

    #[test]
    fn failures_carry_azures_details() {
        let x = a(
            State::Failed {
                state: "Failed".into(),
                detail: Some("ExtensionOperationFailed: boom".into()),
            },
            vec![],
        );
        let d = deployed(&DeployInputs {
            retry_at: Some(ts("2026-01-01T00:01:00Z")),
            plan: Plan::RetryLater(ts("2026-01-01T00:01:00Z")),
            ..base(&x)
        });
        assert_eq!(
            (d.status, d.reason.as_str()),
            (ConditionStatus::False, "DeploymentFailed")
        );
        assert!(d.message.contains("ExtensionOperationFailed: boom"));
        assert!(d.message.contains("next attempt at 2026-01-01T00:01:00Z"));
        let d = deployed(&DeployInputs {
            policy: ManagementPolicy::Observe,
            failure_detail: Some("Op: detail"),
            ..base(&x)
        });
        assert!(d.message.contains("Op: detail") && d.message.contains("does not retry"));
        let d = deployed(&DeployInputs {
            put_rejected: Some("HTTP 400 (InvalidParameter: bad)"),
            ..base(&a(State::Missing, vec![]))
        });
        assert_eq!(d.reason, "DeploymentFailed");
        assert!(d.message.contains("InvalidParameter"));
    }

    #[test]
    fn observe_reports_drift() {
        let x = a(State::Succeeded, vec![Difference::Settings]);
        let d = deployed(&DeployInputs {
            policy: ManagementPolicy::Observe,
            ..base(&x)
        });
        assert_eq!(
            (d.status, d.reason.as_str()),
            (ConditionStatus::False, "Drifted")
        );
        assert!(d.message.contains("settings differ") && d.message.contains("Observe"));
        let gone = a(State::Missing, vec![]);
        let d = deployed(&DeployInputs {
            policy: ManagementPolicy::Observe,
            was_deployed: true,
            ..base(&gone)
        });
        assert_eq!(d.reason, "Drifted");
        let d = deployed(&DeployInputs {
            policy: ManagementPolicy::Observe,
            ..base(&gone)
        });
        assert_eq!(d.reason, "NotDeployed");
    }

    #[test]
    fn deployed_names_version_and_publisher() {
        let ext: MachineExtension = serde_json::from_value(serde_json::json!({
            "properties": {"provisioningState": "Succeeded", "typeHandlerVersion": "1.0.1.30",
              "publisher": "Microsoft.Azure.Security.WindowsAttestation",
              "instanceView": {"status": {"code": "0", "message": "AszAttestationClient Started Successfully"}}}
        }))
        .unwrap();
        let x = a(State::Succeeded, vec![]);
        let d = deployed(&DeployInputs {
            actual: Some(&ext),
            ..base(&x)
        });
        assert_eq!(
            (d.status, d.reason.as_str()),
            (ConditionStatus::True, "Deployed")
        );
        assert_eq!(
            d.message,
            "GuestAttestation 1.0.1.30 from Microsoft.Azure.Security.WindowsAttestation is Succeeded on vm1"
        );
        let f = fields(Some(&ext));
        assert_eq!(f.provisioning_state.as_deref(), Some("Succeeded"));
        assert_eq!(f.type_handler_version.as_deref(), Some("1.0.1.30"));
        assert_eq!(
            f.instance_view_message.as_deref(),
            Some("AszAttestationClient Started Successfully")
        );
    }

    #[test]
    fn ready_summarises() {
        let met = prerequisites(&[], "cluster c1");
        let unmet = prerequisites(&[Unmet::TpmDisabled], "cluster c1");
        let ok = Desired::new(DEPLOYED, ConditionStatus::True, "Deployed", "m");
        let busy = Desired::new(DEPLOYED, ConditionStatus::Unknown, "InProgress", "m");
        let bad = Desired::new(DEPLOYED, ConditionStatus::False, "DeploymentFailed", "x");
        assert_eq!(ready(&met, &ok, None).status, ConditionStatus::True);
        assert_eq!(ready(&met, &busy, None).reason, "Reconciling");
        assert_eq!(ready(&met, &bad, None).reason, "DeploymentFailed");
        assert_eq!(ready(&unmet, &ok, None).reason, "PrerequisitesNotMet");
        let blocker = Desired::new(
            READY,
            ConditionStatus::False,
            "CredentialsInvalid",
            "no secret",
        );
        let r = ready(&met, &ok, Some(&blocker));
        assert_eq!(
            (r.status, r.reason.as_str()),
            (ConditionStatus::False, "CredentialsInvalid")
        );
    }

    #[test]
    fn unchanged_inputs_render_an_unchanged_status() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T01:00:00Z");
        let conditions = || {
            let p = prerequisites(&[], "cluster c1");
            let d = Desired::new(DEPLOYED, ConditionStatus::True, "Deployed", "m");
            let r = ready(&p, &d, None);
            vec![p, d, r]
        };
        let first = status(None, Some(1), t0, conditions(), Rest::default());
        let second = status(Some(&first), Some(1), t1, conditions(), Rest::default());
        assert_eq!(first, second);
        assert!(
            second
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        let carried_ready = carried(&second.conditions, READY);
        assert_eq!(carried_ready.reason, "Deployed");
        assert_eq!(carried(&[], DEPLOYED).status, ConditionStatus::Unknown);
    }
}
