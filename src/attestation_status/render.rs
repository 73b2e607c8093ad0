//! Builds the AttestationStatus status from the latest read of Azure, the latest failure and
//! the previous status (pure; `now` is a parameter).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::assess::{Assessment, Freshness, Observation, Reason, assess, human};
use crate::controller::conditions::{Desired, MAX_MESSAGE, find, merge, truncate};
use crate::crd::{AttestationStatusStatus, ConditionStatus, Health};

/// Reads of Azure that keep failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason (e.g. AzureUnavailable).
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
    /// When the failures began.
    pub since: Timestamp,
}

/// Everything the status depends on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The status as stored.
    pub old: Option<&'a AttestationStatusStatus>,
    /// The latest successful read, with its time; None before the first since start.
    pub observation: Option<(&'a Observation, Timestamp)>,
    /// The reads failing now, if they are.
    pub failure: Option<&'a Failure>,
    /// metadata.generation.
    pub generation: Option<i64>,
    /// The machine's name.
    pub machine_name: &'a str,
    /// Now.
    pub now: Timestamp,
    /// spec.staleAfter.
    pub stale_after: Duration,
    /// How long failures may last before the health turns StatusUnavailable.
    pub failure_grace: Duration,
}

/// The status and what the reconciler needs to schedule and report.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The status to store.
    pub status: AttestationStatusStatus,
    /// When the VM will go stale, if it is a fresh Running VM.
    pub stale_at: Option<Timestamp>,
}

/// Renders the status (see the module docs).
pub fn render(input: &Input<'_>) -> Rendered {
    let old = input.old.cloned().unwrap_or_default();
    let mut status = old.clone();
    status.machine_name = Some(input.machine_name.to_owned());
    let assessment = input.observation.map(|(obs, at)| {
        mirror(&mut status, obs);
        (assess(obs, input.now, input.stale_after), at)
    });
    let mut stale_at = None;
    let fresh = match (&assessment, input.failure) {
        (_, Some(f)) => Desired::new(
            "Fresh",
            ConditionStatus::False,
            f.reason,
            format!(
                "reading Azure has failed since {}: {}; the values shown were read at {}",
                f.since,
                f.message,
                old.last_checked_time
                    .as_ref()
                    .map_or_else(|| "no time yet".to_owned(), |t| t.0.to_string())
            ),
        ),
        (Some((a, _)), None) => fresh_condition(a, input.stale_after),
        (None, None) => Desired::new(
            "Fresh",
            ConditionStatus::Unknown,
            "Reading",
            "Azure not read yet",
        ),
    };
    if let Some((a, _)) = &assessment {
        status.health = Some(a.health);
        status.reason = Some(a.reason.as_str().to_owned());
        status.message = Some(a.message.clone());
        status.attested_time = a.attested_time.map(Time);
        stale_at = a.stale_at;
    }
    if let Some(f) = input.failure {
        let outlasted =
            input.now.duration_since(f.since).as_secs_f64() >= input.failure_grace.as_secs_f64();
        if outlasted || status.health.is_none() {
            status.health = Some(Health::Unknown);
            status.reason = Some(Reason::StatusUnavailable.as_str().to_owned());
            status.message = Some(format!(
                "Azure has been unreadable since {} (longer than the {} grace period): {}",
                f.since,
                human(input.failure_grace),
                f.message
            ));
            stale_at = None;
        }
    }
    let health = status.health.unwrap_or(Health::Unknown);
    let ready = if health == Health::Healthy && fresh.status == ConditionStatus::True {
        Desired::new(
            "Ready",
            ConditionStatus::True,
            "Attested",
            status.message.clone().unwrap_or_default(),
        )
    } else {
        Desired::new(
            "Ready",
            ConditionStatus::False,
            status
                .reason
                .clone()
                .unwrap_or_else(|| "Reading".to_owned()),
            status
                .message
                .clone()
                .unwrap_or_else(|| "Azure not read yet".to_owned()),
        )
    };
    status.conditions = merge(
        &old.conditions,
        vec![fresh, ready],
        input.generation,
        input.now,
    );
    status.observed_generation = input.generation;
    bound(&mut status);
    // lastCheckedTime moves only with a change, so unchanged reads cause no status write.
    if let Some((_, at)) = assessment {
        let mut unchanged = status.clone();
        unchanged
            .last_checked_time
            .clone_from(&old.last_checked_time);
        if unchanged != old || old.last_checked_time.is_none() {
            status.last_checked_time = Some(Time(at));
        }
    }
    Rendered { status, stale_at }
}

fn fresh_condition(a: &Assessment, stale_after: Duration) -> Desired {
    match &a.freshness {
        Freshness::Current => Desired::new(
            "Fresh",
            ConditionStatus::True,
            "Current",
            format!(
                "attested at {}; stale after {} (at {})",
                a.attested_time.map_or_else(String::new, |t| t.to_string()),
                human(stale_after),
                a.stale_at.map_or_else(String::new, |t| t.to_string())
            ),
        ),
        Freshness::Stale => {
            Desired::new("Fresh", ConditionStatus::False, "Stale", a.message.clone())
        }
        Freshness::NotRunning(state) => Desired::new(
            "Fresh",
            ConditionStatus::True,
            "NotRunning",
            format!(
                "the VM is {state}: the {} staleness rule applies only to Running VMs",
                human(stale_after)
            ),
        ),
        Freshness::NoData => Desired::new(
            "Fresh",
            ConditionStatus::Unknown,
            a.reason.as_str(),
            a.message.clone(),
        ),
    }
}

/// Copies what Azure reported into the status.
fn mirror(status: &mut AttestationStatusStatus, obs: &Observation) {
    let (vm, att) = match obs {
        Observation::VmNotFound => (None, None),
        Observation::Vm { vm, attestation } => (Some(vm), attestation.as_ref()),
    };
    status.power_state = vm.and_then(|v| v.power_state.clone());
    status.security_type = vm.and_then(|v| v.security_type.clone());
    status.tpm_enabled = vm.and_then(|v| v.tpm_enabled);
    status.secure_boot_enabled = vm.and_then(|v| v.secure_boot_enabled);
    status.attest_secure_boot_enabled = att.and_then(|a| a.attest_secure_boot_enabled.clone());
    status.attestation_cert_validated = att.and_then(|a| a.attestation_cert_validated.clone());
    status.boot_integrity_validated = att.and_then(|a| a.boot_integrity_validated.clone());
    status.health_status = att.and_then(|a| a.health_status.clone());
    status.linux_kernel_version = att.and_then(|a| a.linux_kernel_version.clone());
    status.error_message = att
        .and_then(|a| a.error_message.clone())
        .filter(|m| !m.is_empty());
    status.raw_timestamp = att.and_then(|a| a.timestamp.clone());
}

/// Cuts the fields that carry Azure's text to the schema's maxLength: an overlong or unexpected
/// value from Azure must not make every status write fail (the API server refuses the whole
/// status when one field is too long).
fn bound(status: &mut AttestationStatusStatus) {
    let cut = |field: &mut Option<String>, max: usize| {
        if let Some(v) = field.as_mut().filter(|v| v.len() > max) {
            *v = truncate(v, max);
        }
    };
    cut(&mut status.message, MAX_MESSAGE);
    cut(&mut status.error_message, 1024);
    cut(&mut status.linux_kernel_version, 128);
    cut(&mut status.raw_timestamp, 64);
    cut(&mut status.machine_name, 64);
    for field in [
        &mut status.health_status,
        &mut status.attest_secure_boot_enabled,
        &mut status.attestation_cert_validated,
        &mut status.boot_integrity_validated,
        &mut status.power_state,
        &mut status.security_type,
    ] {
        cut(field, 32);
    }
}

/// The Ready condition's status, for callers that report transitions.
pub fn ready(status: &AttestationStatusStatus) -> Option<ConditionStatus> {
    find(&status.conditions, "Ready").map(|c| c.status)
}

#[cfg(test)]
mod tests {
    use super::super::assess::{AttestationFacts, VmFacts};
    use super::*;

    const EIGHT_H: Duration = Duration::from_secs(8 * 3600);
    const GRACE: Duration = Duration::from_secs(15 * 60);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn obs() -> Observation {
        Observation::Vm {
            vm: VmFacts {
                power_state: Some("Running".into()),
                security_type: Some("TrustedLaunch".into()),
                tpm_enabled: Some(true),
                secure_boot_enabled: Some(true),
            },
            attestation: Some(AttestationFacts {
                attest_secure_boot_enabled: Some("Enabled".into()),
                attestation_cert_validated: Some("Valid".into()),
                boot_integrity_validated: Some("Valid".into()),
                health_status: Some("Healthy".into()),
                linux_kernel_version: Some("0".into()),
                error_message: None,
                timestamp: Some("2026-01-01T00:00:00Z".into()),
            }),
        }
    }

    fn input<'a>(
        old: Option<&'a AttestationStatusStatus>,
        o: Option<(&'a Observation, Timestamp)>,
        f: Option<&'a Failure>,
        now: &str,
    ) -> Input<'a> {
        Input {
            old,
            observation: o,
            failure: f,
            generation: Some(1),
            machine_name: "vm1",
            now: ts(now),
            stale_after: EIGHT_H,
            failure_grace: GRACE,
        }
    }

    #[test]
    fn healthy_status_is_ready_and_fresh() {
        let o = obs();
        let r = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        assert_eq!(r.status.health, Some(Health::Healthy));
        assert_eq!(r.status.reason.as_deref(), Some("Attested"));
        assert_eq!(ready(&r.status), Some(ConditionStatus::True));
        assert_eq!(r.stale_at, Some(ts("2026-01-01T08:00:00Z")));
        assert_eq!(
            r.status.attested_time,
            Some(Time(ts("2026-01-01T00:00:00Z")))
        );
        assert_eq!(
            r.status.last_checked_time,
            Some(Time(ts("2026-01-01T01:00:00Z")))
        );
        assert_eq!(r.status.observed_generation, Some(1));
    }

    #[test]
    fn unchanged_read_changes_nothing() {
        let o = obs();
        let first = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        let second = render(&input(
            Some(&first.status),
            Some((&o, ts("2026-01-01T01:30:00Z"))),
            None,
            "2026-01-01T01:30:00Z",
        ));
        assert_eq!(first.status, second.status, "no write when nothing changed");
    }

    #[test]
    fn stale_flip_changes_status_without_a_read() {
        let o = obs();
        let first = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        let later = render(&input(
            Some(&first.status),
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T08:00:01Z",
        ));
        assert_eq!(later.status.health, Some(Health::Unknown));
        assert_eq!(later.status.reason.as_deref(), Some("Stale"));
        let fresh = find(&later.status.conditions, "Fresh").unwrap();
        assert_eq!(
            (fresh.status, fresh.reason.as_str()),
            (ConditionStatus::False, "Stale")
        );
    }

    #[test]
    fn failures_keep_values_until_grace_then_unavailable() {
        let o = obs();
        let first = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        let f = Failure {
            reason: "AzureUnavailable",
            message: "HTTP 503".into(),
            since: ts("2026-01-01T01:30:00Z"),
        };
        let blip = render(&input(
            Some(&first.status),
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            Some(&f),
            "2026-01-01T01:31:00Z",
        ));
        assert_eq!(
            blip.status.health,
            Some(Health::Healthy),
            "a blip does not flap the health"
        );
        assert_eq!(
            blip.status.attest_secure_boot_enabled.as_deref(),
            Some("Enabled")
        );
        let fresh = find(&blip.status.conditions, "Fresh").unwrap();
        assert_eq!(
            (fresh.status, fresh.reason.as_str()),
            (ConditionStatus::False, "AzureUnavailable")
        );
        assert_eq!(ready(&blip.status), Some(ConditionStatus::False));
        let long = render(&input(
            Some(&blip.status),
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            Some(&f),
            "2026-01-01T01:46:00Z",
        ));
        assert_eq!(long.status.health, Some(Health::Unknown));
        assert_eq!(long.status.reason.as_deref(), Some("StatusUnavailable"));
        assert_eq!(
            long.status.boot_integrity_validated.as_deref(),
            Some("Valid"),
            "last values kept"
        );
    }

    #[test]
    fn failure_before_any_read_is_unavailable_at_once() {
        let f = Failure {
            reason: "AzureUnreachable",
            message: "connection failed".into(),
            since: ts("2026-01-01T00:00:00Z"),
        };
        let r = render(&input(None, None, Some(&f), "2026-01-01T00:00:01Z"));
        assert_eq!(r.status.health, Some(Health::Unknown));
        assert_eq!(r.status.reason.as_deref(), Some("StatusUnavailable"));
    }

    #[test]
    fn transition_times_survive_rerenders() {
        let o = obs();
        let first = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        let again = render(&input(
            Some(&first.status),
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T02:00:00Z",
        ));
        assert_eq!(first.status.conditions, again.status.conditions);
    }

    #[test]
    fn overlong_azure_values_are_cut_to_the_schema() {
        // Regression (issue 11): Azure's text was mirrored verbatim, so an unexpected 40-character
        // enum value or a 2 KiB error message made the API server refuse every status write.
        let mut o = obs();
        if let Observation::Vm { vm, attestation } = &mut o {
            vm.power_state = Some("P".repeat(40));
            let a = attestation.as_mut().unwrap();
            a.health_status = Some("SomeNewVerdictAzureAddedLater_1234567890".into());
            a.boot_integrity_validated = Some("Invalid".into());
            a.error_message = Some("é".repeat(2048));
            a.linux_kernel_version = Some("k".repeat(200));
        }
        let r = render(&input(
            None,
            Some((&o, ts("2026-01-01T01:00:00Z"))),
            None,
            "2026-01-01T01:00:00Z",
        ));
        let s = &r.status;
        assert!(s.health_status.as_ref().unwrap().len() <= 32);
        assert!(s.power_state.as_ref().unwrap().len() <= 32);
        assert!(s.error_message.as_ref().unwrap().len() <= 1024);
        assert!(s.linux_kernel_version.as_ref().unwrap().len() <= 128);
        assert!(s.message.as_ref().unwrap().len() <= MAX_MESSAGE);
        assert_eq!(s.reason.as_deref(), Some("BootIntegrityNotValidated"));
        // a long read failure after the grace period: the prefix must not push it past the limit
        let f = Failure {
            reason: "AzureUnavailable",
            message: "x".repeat(MAX_MESSAGE),
            since: ts("2026-01-01T00:00:00Z"),
        };
        let r = render(&input(Some(s), None, Some(&f), "2026-01-01T02:00:00Z"));
        assert!(r.status.message.as_ref().unwrap().len() <= MAX_MESSAGE);
    }
}
