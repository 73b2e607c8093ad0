//! The deciding logic of AttestationStatus: from what Azure reports to health, reason, freshness
//! and the instant the health will go stale (pure; `now` is a parameter).

use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::timestamp;

/// What the VM instance says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmFacts {
    /// status.powerState (Running, Stopped, Deallocated, ...).
    pub power_state: Option<String>,
    /// securityProfile.securityType.
    pub security_type: Option<String>,
    /// securityProfile.enableTPM.
    pub tpm_enabled: Option<bool>,
    /// securityProfile.uefiSettings.secureBootEnabled.
    pub secure_boot_enabled: Option<bool>,
}

/// What the attestationStatus resource says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationFacts {
    /// Enabled, Disabled or Unknown.
    pub attest_secure_boot_enabled: Option<String>,
    /// Valid, Invalid or Unknown.
    pub attestation_cert_validated: Option<String>,
    /// Valid, Invalid or Unknown.
    pub boot_integrity_validated: Option<String>,
    /// Azure's own verdict: Pending, Healthy, Unhealthy or Unknown.
    pub health_status: Option<String>,
    /// "0" on Windows.
    pub linux_kernel_version: Option<String>,
    /// Azure's error message, if any.
    pub error_message: Option<String>,
    /// The raw timestamp.
    pub timestamp: Option<String>,
}

impl VmFacts {
    /// The facts of a VM instance as the Azure client reads it.
    pub fn from_instance(vm: &crate::azure::VmInstance) -> Self {
        let sp = vm.properties.security_profile.as_ref();
        Self {
            power_state: vm
                .properties
                .status
                .as_ref()
                .and_then(|s| s.power_state.as_ref())
                .map(|p| p.as_str().to_owned()),
            security_type: sp
                .and_then(|s| s.security_type.as_ref())
                .map(|t| t.as_str().to_owned()),
            tpm_enabled: sp.and_then(|s| s.enable_tpm),
            secure_boot_enabled: sp.and_then(crate::azure::SecurityProfile::secure_boot_enabled),
        }
    }
}

impl AttestationFacts {
    /// The facts of an attestationStatus resource's properties.
    pub fn from_properties(p: &crate::azure::VmAttestationStatusProperties) -> Self {
        Self {
            attest_secure_boot_enabled: p
                .attest_secure_boot_enabled
                .as_ref()
                .map(|v| v.as_str().to_owned()),
            attestation_cert_validated: p
                .attestation_cert_validated
                .as_ref()
                .map(|v| v.as_str().to_owned()),
            boot_integrity_validated: p
                .boot_integrity_validated
                .as_ref()
                .map(|v| v.as_str().to_owned()),
            health_status: p.health_status.as_ref().map(|v| v.as_str().to_owned()),
            linux_kernel_version: p.linux_kernel_version.clone(),
            error_message: p.error_message.clone(),
            timestamp: p.timestamp.clone(),
        }
    }
}

/// One read of Azure.
#[allow(clippy::large_enum_variant)] // one per object, short-lived
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The machine has no Azure Local VM instance.
    VmNotFound,
    /// The VM, and its attestation status when reported.
    Vm {
        /// The VM instance.
        vm: VmFacts,
        /// The attestationStatus resource; None when it does not exist.
        attestation: Option<AttestationFacts>,
    },
}

/// The health of a VM.
pub use crate::crd::Health;

/// Why the health is what it is (the status `reason` and the Ready condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Secure Boot, vTPM and boot integrity all good.
    Attested,
    /// Secure Boot is not enabled.
    SecureBootDisabled,
    /// The virtual TPM is not enabled.
    TpmDisabled,
    /// Boot integrity was not validated.
    BootIntegrityNotValidated,
    /// The attestation certificate was not validated.
    CertificateNotValidated,
    /// The fields look healthy but Azure's healthStatus says Unhealthy.
    AzureReportsUnhealthy,
    /// The fields look healthy but Azure's healthStatus is Unknown or Pending.
    AzureReportsUnknown,
    /// A Running VM whose attestation is older than staleAfter.
    Stale,
    /// No attestation status (or no timestamp, or fields not yet known) reported.
    NotReported,
    /// Azure has been unreadable for longer than the grace period.
    StatusUnavailable,
    /// The timestamp is in no known form.
    InvalidTimestamp,
    /// The machine has no Azure Local VM instance.
    VmNotFound,
}

impl Reason {
    /// The CamelCase string written to status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attested => "Attested",
            Self::SecureBootDisabled => "SecureBootDisabled",
            Self::TpmDisabled => "TpmDisabled",
            Self::BootIntegrityNotValidated => "BootIntegrityNotValidated",
            Self::CertificateNotValidated => "CertificateNotValidated",
            Self::AzureReportsUnhealthy => "AzureReportsUnhealthy",
            Self::AzureReportsUnknown => "AzureReportsUnknown",
            Self::Stale => "Stale",
            Self::NotReported => "NotReported",
            Self::StatusUnavailable => "StatusUnavailable",
            Self::InvalidTimestamp => "InvalidTimestamp",
            Self::VmNotFound => "VmNotFound",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the data is current (the Fresh condition), before Azure errors are considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// A Running VM attested within staleAfter.
    Current,
    /// A Running VM attested longer ago than staleAfter.
    Stale,
    /// The VM is not Running, so the 8-hour rule does not apply.
    NotRunning(String),
    /// Nothing to judge (no VM, no status, no timestamp).
    NoData,
}

/// The verdict on one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// Healthy, Unhealthy or Unknown.
    pub health: Health,
    /// Why.
    pub reason: Reason,
    /// A sentence for people.
    pub message: String,
    /// The parsed attestation time.
    pub attested_time: Option<Timestamp>,
    /// Freshness of the data.
    pub freshness: Freshness,
    /// When a currently fresh, Running VM will go stale (to requeue for).
    pub stale_at: Option<Timestamp>,
}

fn eq(value: Option<&str>, want: &str) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case(want))
}

fn is_running(vm: &VmFacts) -> bool {
    eq(vm.power_state.as_deref(), "Running")
}

fn unknown(reason: Reason, message: impl Into<String>) -> Assessment {
    Assessment {
        health: Health::Unknown,
        reason,
        message: message.into(),
        attested_time: None,
        freshness: Freshness::NoData,
        stale_at: None,
    }
}

/// Judges one observation at `now` with the staleness limit `stale_after`.
pub fn assess(obs: &Observation, now: Timestamp, stale_after: Duration) -> Assessment {
    let (vm, attestation) = match obs {
        Observation::VmNotFound => {
            return unknown(
                Reason::VmNotFound,
                "the machine has no Azure Local VM instance (virtualMachineInstances/default)",
            );
        }
        Observation::Vm {
            vm,
            attestation: None,
        } => {
            return unknown(
                Reason::NotReported,
                format!(
                    "no attestation status is reported for this VM{}; is the GuestAttestation extension installed?",
                    power_suffix(vm)
                ),
            );
        }
        Observation::Vm {
            vm,
            attestation: Some(a),
        } => (vm, a),
    };
    let Some(raw) = attestation
        .timestamp
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    else {
        return unknown(
            Reason::NotReported,
            "the attestation status has no timestamp yet",
        );
    };
    let attested = match timestamp::parse(raw) {
        Ok(t) => t,
        Err(e) => return unknown(Reason::InvalidTimestamp, e.to_string()),
    };
    let (health, reason, message) = verdict(vm, attestation);
    let limit = SignedDuration::try_from(stale_after).unwrap_or(SignedDuration::MAX);
    let stale_at = attested.checked_add(limit).ok();
    let mut out = Assessment {
        health,
        reason,
        message,
        attested_time: Some(attested),
        freshness: Freshness::Current,
        stale_at: None,
    };
    if !is_running(vm) {
        let state = vm
            .power_state
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        out.freshness = Freshness::NotRunning(state);
        return out;
    }
    match stale_at {
        Some(at) if at > now => out.stale_at = Some(at),
        _ => {
            out.freshness = Freshness::Stale;
            out.message = format!(
                "the VM is Running but its attestation was last updated at {attested}, more than {} ago: the guest attestation extension may have stopped working or the VM may be compromised (last verdict: {} / {})",
                human(stale_after),
                health_str(health),
                reason
            );
            out.health = Health::Unknown;
            out.reason = Reason::Stale;
        }
    }
    out
}

/// Health from the fields and Azure's own healthStatus: the stricter wins.
fn verdict(vm: &VmFacts, a: &AttestationFacts) -> (Health, Reason, String) {
    let mut failures: Vec<(Reason, String)> = Vec::new();
    if eq(a.attest_secure_boot_enabled.as_deref(), "Disabled")
        || vm.secure_boot_enabled == Some(false)
    {
        failures.push((
            Reason::SecureBootDisabled,
            "Secure Boot is not enabled".to_owned(),
        ));
    }
    if vm.tpm_enabled == Some(false) {
        failures.push((
            Reason::TpmDisabled,
            "the virtual TPM is not enabled".to_owned(),
        ));
    }
    if eq(a.boot_integrity_validated.as_deref(), "Invalid") {
        failures.push((
            Reason::BootIntegrityNotValidated,
            "boot integrity verification did not succeed".to_owned(),
        ));
    }
    if eq(a.attestation_cert_validated.as_deref(), "Invalid") {
        failures.push((
            Reason::CertificateNotValidated,
            "the attestation certificate was not validated".to_owned(),
        ));
    }
    let azure = a.health_status.as_deref().unwrap_or("not given");
    let azure_note = |msg: String| match &a.error_message {
        Some(e) if !e.is_empty() => format!("{msg} (Azure healthStatus: {azure}; error: {e})"),
        _ => format!("{msg} (Azure healthStatus: {azure})"),
    };
    if let Some((reason, _)) = failures.first() {
        let all = failures
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return (Health::Unhealthy, *reason, azure_note(all));
    }
    let unknown_fields: Vec<&str> = [
        (
            "attestSecureBootEnabled",
            a.attest_secure_boot_enabled.as_deref(),
            "Enabled",
        ),
        (
            "bootIntegrityValidated",
            a.boot_integrity_validated.as_deref(),
            "Valid",
        ),
        (
            "attestationCertValidated",
            a.attestation_cert_validated.as_deref(),
            "Valid",
        ),
    ]
    .into_iter()
    .filter(|(_, v, good)| !eq(*v, good))
    .map(|(name, _, _)| name)
    .chain(vm.tpm_enabled.is_none().then_some("enableTPM"))
    .collect();
    if eq(a.health_status.as_deref(), "Unhealthy") {
        return (
            Health::Unhealthy,
            Reason::AzureReportsUnhealthy,
            azure_note(
                "Azure reports the VM Unhealthy although no attested field failed".to_owned(),
            ),
        );
    }
    if !unknown_fields.is_empty() {
        return (
            Health::Unknown,
            Reason::NotReported,
            azure_note(format!("not yet attested: {}", unknown_fields.join(", "))),
        );
    }
    if a.health_status.is_some() && !eq(a.health_status.as_deref(), "Healthy") {
        return (
            Health::Unknown,
            Reason::AzureReportsUnknown,
            azure_note("the attested fields are healthy but Azure's verdict is not".to_owned()),
        );
    }
    (
        Health::Healthy,
        Reason::Attested,
        azure_note(
            "Secure Boot enabled, vTPM enabled and boot integrity verification succeeded"
                .to_owned(),
        ),
    )
}

fn power_suffix(vm: &VmFacts) -> String {
    vm.power_state
        .as_deref()
        .map(|p| format!(" (power state {p})"))
        .unwrap_or_default()
}

fn health_str(h: Health) -> &'static str {
    match h {
        Health::Healthy => "Healthy",
        Health::Unhealthy => "Unhealthy",
        Health::Unknown => "Unknown",
    }
}

/// `8h`, `90m`, `45s`: durations as the spec writes them.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s > 0 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EIGHT_H: Duration = Duration::from_secs(8 * 3600);

    fn now() -> Timestamp {
        "2024-06-13T00:00:00Z".parse().unwrap()
    }

    fn running() -> VmFacts {
        VmFacts {
            power_state: Some("Running".into()),
            security_type: Some("TrustedLaunch".into()),
            tpm_enabled: Some(true),
            secure_boot_enabled: Some(true),
        }
    }

    /// The product documentation's healthy example, attested 3h11m before `now`.
    fn healthy() -> AttestationFacts {
        AttestationFacts {
            attest_secure_boot_enabled: Some("Enabled".into()),
            attestation_cert_validated: Some("Valid".into()),
            boot_integrity_validated: Some("Valid".into()),
            health_status: Some("Healthy".into()),
            linux_kernel_version: Some("0".into()),
            error_message: None,
            timestamp: Some("6/12/2024 8:49:33 PM".into()),
        }
    }

    fn vm(vm: VmFacts, a: AttestationFacts) -> Observation {
        Observation::Vm {
            vm,
            attestation: Some(a),
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table
    fn table() {
        struct Case {
            name: &'static str,
            obs: Observation,
            health: Health,
            reason: Reason,
        }
        let with = |f: fn(&mut AttestationFacts)| {
            let mut a = healthy();
            f(&mut a);
            vm(running(), a)
        };
        let with_vm = |f: fn(&mut VmFacts)| {
            let mut v = running();
            f(&mut v);
            vm(v, healthy())
        };
        let cases = vec![
            Case {
                name: "healthy",
                obs: vm(running(), healthy()),
                health: Health::Healthy,
                reason: Reason::Attested,
            },
            Case {
                name: "secure boot disabled (attested)",
                obs: with(|a| a.attest_secure_boot_enabled = Some("Disabled".into())),
                health: Health::Unhealthy,
                reason: Reason::SecureBootDisabled,
            },
            Case {
                name: "secure boot disabled (VM)",
                obs: with_vm(|v| v.secure_boot_enabled = Some(false)),
                health: Health::Unhealthy,
                reason: Reason::SecureBootDisabled,
            },
            Case {
                name: "tpm disabled",
                obs: with_vm(|v| v.tpm_enabled = Some(false)),
                health: Health::Unhealthy,
                reason: Reason::TpmDisabled,
            },
            Case {
                name: "boot integrity invalid",
                obs: with(|a| a.boot_integrity_validated = Some("Invalid".into())),
                health: Health::Unhealthy,
                reason: Reason::BootIntegrityNotValidated,
            },
            Case {
                name: "cert invalid",
                obs: with(|a| a.attestation_cert_validated = Some("Invalid".into())),
                health: Health::Unhealthy,
                reason: Reason::CertificateNotValidated,
            },
            Case {
                name: "azure says unhealthy, fields fine: stricter wins",
                obs: with(|a| a.health_status = Some("Unhealthy".into())),
                health: Health::Unhealthy,
                reason: Reason::AzureReportsUnhealthy,
            },
            Case {
                name: "azure says pending, fields fine",
                obs: with(|a| a.health_status = Some("Pending".into())),
                health: Health::Unknown,
                reason: Reason::AzureReportsUnknown,
            },
            Case {
                name: "azure says healthy, fields fail: stricter wins",
                obs: with(|a| a.boot_integrity_validated = Some("Invalid".into())),
                health: Health::Unhealthy,
                reason: Reason::BootIntegrityNotValidated,
            },
            Case {
                name: "field unknown",
                obs: with(|a| a.boot_integrity_validated = Some("Unknown".into())),
                health: Health::Unknown,
                reason: Reason::NotReported,
            },
            Case {
                name: "case-insensitive values",
                obs: with(|a| {
                    a.attest_secure_boot_enabled = Some("enabled".into());
                    a.health_status = Some("HEALTHY".into());
                }),
                health: Health::Healthy,
                reason: Reason::Attested,
            },
            Case {
                name: "no status resource",
                obs: Observation::Vm {
                    vm: running(),
                    attestation: None,
                },
                health: Health::Unknown,
                reason: Reason::NotReported,
            },
            Case {
                name: "no vm",
                obs: Observation::VmNotFound,
                health: Health::Unknown,
                reason: Reason::VmNotFound,
            },
            Case {
                name: "no timestamp",
                obs: with(|a| a.timestamp = None),
                health: Health::Unknown,
                reason: Reason::NotReported,
            },
            Case {
                name: "bad timestamp",
                obs: with(|a| a.timestamp = Some("yesterday".into())),
                health: Health::Unknown,
                reason: Reason::InvalidTimestamp,
            },
            Case {
                name: "stale running",
                obs: with(|a| a.timestamp = Some("6/12/2024 3:59:59 PM".into())),
                health: Health::Unknown,
                reason: Reason::Stale,
            },
            Case {
                name: "stale but unhealthy running: stale",
                obs: with(|a| {
                    a.timestamp = Some("2024/06/01 1:00".into());
                    a.boot_integrity_validated = Some("Invalid".into());
                }),
                health: Health::Unknown,
                reason: Reason::Stale,
            },
            Case {
                name: "old but stopped: not stale",
                obs: {
                    let mut v = running();
                    v.power_state = Some("Stopped".into());
                    let mut a = healthy();
                    a.timestamp = Some("2024/01/01 0:00".into());
                    vm(v, a)
                },
                health: Health::Healthy,
                reason: Reason::Attested,
            },
        ];
        for c in cases {
            let a = assess(&c.obs, now(), EIGHT_H);
            assert_eq!(
                (a.health, a.reason),
                (c.health, c.reason),
                "{}: {}",
                c.name,
                a.message
            );
        }
    }

    #[test]
    fn stale_flip_instant_is_timestamp_plus_stale_after() {
        let a = assess(&vm(running(), healthy()), now(), EIGHT_H);
        assert_eq!(a.stale_at, Some("2024-06-13T04:49:33Z".parse().unwrap()));
        assert_eq!(a.freshness, Freshness::Current);
        // One second past the mark it is stale; exactly at it, too (older than or equal).
        let at = a.stale_at.unwrap();
        let after = assess(&vm(running(), healthy()), at, EIGHT_H);
        assert_eq!(after.reason, Reason::Stale);
        let before = assess(
            &vm(running(), healthy()),
            at - SignedDuration::from_secs(1),
            EIGHT_H,
        );
        assert_eq!(before.reason, Reason::Attested);
    }

    #[test]
    fn stale_message_says_why_it_matters() {
        let mut a = healthy();
        a.timestamp = Some("2024/06/01 0:00".into());
        let out = assess(&vm(running(), a), now(), EIGHT_H);
        assert!(
            out.message
                .contains("extension may have stopped working or the VM may be compromised")
        );
        assert!(out.message.contains("8h"));
    }

    #[test]
    fn not_running_says_why_not_stale() {
        let mut v = running();
        v.power_state = Some("Deallocated".into());
        let out = assess(&vm(v, healthy()), now(), EIGHT_H);
        assert_eq!(out.freshness, Freshness::NotRunning("Deallocated".into()));
        assert_eq!(out.stale_at, None);
    }

    #[test]
    fn unhealthy_message_names_every_failure_and_azure_verdict() {
        let mut a = healthy();
        a.boot_integrity_validated = Some("Invalid".into());
        a.attestation_cert_validated = Some("Invalid".into());
        a.error_message = Some("Attestation token has invalid signature".into());
        let out = assess(&vm(running(), a), now(), EIGHT_H);
        assert!(out.message.contains("boot integrity"), "{}", out.message);
        assert!(out.message.contains("certificate"), "{}", out.message);
        assert!(
            out.message.contains("Azure healthStatus: Healthy"),
            "{}",
            out.message
        );
        assert!(out.message.contains("invalid signature"), "{}", out.message);
    }

    #[test]
    fn bad_timestamp_keeps_raw_value_in_message() {
        let mut a = healthy();
        a.timestamp = Some("31/31/2024 99:99".into());
        let out = assess(&vm(running(), a), now(), EIGHT_H);
        assert!(out.message.contains("31/31/2024 99:99"));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(EIGHT_H), "8h");
        assert_eq!(human(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(human(Duration::from_secs(45)), "45s");
    }
}
