//! The world moving in virtual time: long-running extension operations completing, and the guest
//! attestation extension reporting status on its cadence.
//!
//! Everything is evaluated lazily ("sync") when a request or an API call looks at a machine, and
//! every mutation of a machine syncs first, so changes take effect at the virtual time they were
//! made.

use std::time::{Duration, SystemTime};

use crate::config::EmulatorConfig;
use crate::state::{
    AttestationStatusProps, Extension, InstanceView, Machine, OpKind, OpStatus, StatusSource, World,
};

/// Default handler version assigned when the request does not pin one (Azure Local doc example).
pub(crate) const DEFAULT_HANDLER_VERSION: &str = "1.0.1.30";

/// Success status message of the GuestAttestation extension (Azure Local doc).
pub(crate) const GUEST_STARTED_MESSAGE: &str = "Extension Message: GuestAttestation extension enabled. AszAttestationClient Started Successfully";

pub(crate) fn success_view(ext: &Extension, at: SystemTime) -> InstanceView {
    let message = if ext.is_guest_attestation() {
        GUEST_STARTED_MESSAGE.to_owned()
    } else {
        "Extension provisioning succeeded".to_owned()
    };
    InstanceView {
        code: "0".into(),
        level: "Information".into(),
        display_status: "Provisioning succeeded".into(),
        message,
        time: at,
    }
}

/// Advances operation `op_id`; `observe` counts one poll.
pub(crate) fn progress_op(
    world: &mut World,
    cfg: &EmulatorConfig,
    op_id: &str,
    now: SystemTime,
    observe: bool,
) {
    let Some(op) = world.operations.get_mut(op_id) else {
        return;
    };
    if op.status != OpStatus::InProgress {
        return;
    }
    if observe {
        op.observed = op.observed.saturating_add(1);
    }
    if op.behavior == crate::state::ExtensionBehavior::Stuck {
        return;
    }
    let by_time = cfg
        .lro
        .duration
        .map(|d| crate::timefmt::add(op.started, d))
        .filter(|end| *end <= now);
    let by_polls = op.observed >= cfg.lro.polls;
    let ended = match (by_polls, by_time) {
        (true, _) => now,
        (false, Some(end)) => end,
        (false, None) => return,
    };
    op.status = match &op.behavior {
        crate::state::ExtensionBehavior::Fail { code, message } => OpStatus::Failed {
            code: code.clone(),
            message: message.clone(),
        },
        _ => OpStatus::Succeeded,
    };
    op.ended = Some(ended);
    let (kind, status, machine_key, ext_key) = (
        op.kind,
        op.status.clone(),
        op.machine.clone(),
        op.extension.clone(),
    );
    let Some(machine) = world.machines.get_mut(&machine_key) else {
        return;
    };
    // Whatever the guest did before the extension changed state happened under the old state.
    sync_guest(machine, cfg, ended);
    match (kind, status) {
        (OpKind::Delete, OpStatus::Succeeded) => {
            machine.extensions.remove(&ext_key);
        }
        (_, OpStatus::Failed { code, message }) => {
            if let Some(ext) = machine.extensions.get_mut(&ext_key) {
                ext.provisioning_state = "Failed".into();
                ext.pending_op = None;
                ext.instance_view = Some(InstanceView {
                    code,
                    level: "Error".into(),
                    display_status: "Provisioning failed".into(),
                    message,
                    time: ended,
                });
            }
        }
        (_, _) => {
            if let Some(ext) = machine.extensions.get_mut(&ext_key) {
                ext.provisioning_state = "Succeeded".into();
                ext.pending_op = None;
                ext.succeeded_at = Some(ended);
                ext.instance_view = Some(success_view(ext, ended));
            }
        }
    }
    sync_guest(machine, cfg, ended);
}

/// Brings one machine up to `now`: time-based operation completion, then guest reports.
pub(crate) fn sync_machine(
    world: &mut World,
    cfg: &EmulatorConfig,
    machine_key: &str,
    now: SystemTime,
) {
    let pending: Vec<String> = world
        .machines
        .get(machine_key)
        .map(|m| {
            m.extensions
                .values()
                .filter_map(|e| e.pending_op.clone())
                .collect()
        })
        .unwrap_or_default();
    for op in pending {
        progress_op(world, cfg, &op, now, false);
    }
    if let Some(m) = world.machines.get_mut(machine_key) {
        sync_guest(m, cfg, now);
    }
}

/// Syncs every machine (used when the clock is advanced).
pub(crate) fn sync_all(world: &mut World, cfg: &EmulatorConfig, now: SystemTime) {
    let keys: Vec<String> = world.machines.keys().cloned().collect();
    for k in keys {
        sync_machine(world, cfg, &k, now);
    }
}

/// Whether the guest extension can report right now.
fn can_report(m: &Machine) -> bool {
    let Some(vm) = &m.vm else { return false };
    let secure = vm.spec.security_type.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("TrustedLaunch") || t.eq_ignore_ascii_case("ConfidentialVM")
    });
    let running = vm.spec.power_state.eq_ignore_ascii_case("Running");
    let ext_ok = m.extensions.values().any(|e| {
        e.is_guest_attestation() && e.provisioning_state.eq_ignore_ascii_case("Succeeded")
    });
    m.guest.reporting && secure && running && ext_ok
}

/// The report the guest would send now.
pub(crate) fn report(m: &Machine) -> AttestationStatusProps {
    let Some(vm) = &m.vm else {
        return AttestationStatusProps::default();
    };
    let sb = vm.spec.secure_boot_enabled;
    let tpm = vm.spec.enable_tpm;
    let healthy = sb && tpm && !vm.compromised;
    let mut reasons = Vec::new();
    if !sb {
        reasons.push("Secure Boot is not enabled");
    }
    if !tpm {
        reasons.push("vTPM is not enabled");
    }
    if vm.compromised {
        reasons.push("Boot integrity validation failed");
    }
    let windows = vm.spec.os_type.eq_ignore_ascii_case("Windows");
    let cvm = vm
        .spec
        .security_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("ConfidentialVM"));
    AttestationStatusProps {
        attest_secure_boot_enabled: Some(if sb { "Enabled" } else { "Disabled" }.into()),
        attestation_cert_validated: Some(if tpm { "Valid" } else { "Invalid" }.into()),
        boot_integrity_validated: Some(if vm.compromised { "Invalid" } else { "Valid" }.into()),
        linux_kernel_version: Some(if windows { "0" } else { "6.6.0" }.into()),
        health_status: Some(if healthy { "Healthy" } else { "Unhealthy" }.into()),
        timestamp: None,
        error_message: (!healthy).then(|| reasons.join("; ")),
        provisioning_state: Some("Succeeded".into()),
        attest_hardware_platform: cvm.then(|| "SEVSNP".into()),
        attest_disk_security_encryption_type: cvm.then(|| "NonPersistedTPM".into()),
    }
}

/// Brings the simulated guest of one machine up to `now`.
pub(crate) fn sync_guest(m: &mut Machine, cfg: &EmulatorConfig, now: SystemTime) {
    if m.guest.manual {
        return;
    }
    let interval = cfg.attestation_interval.max(Duration::from_secs(1));
    if !can_report(m) {
        m.guest.was_active = false;
        return;
    }
    let next_due = if m.guest.was_active {
        m.guest
            .last_report
            .map(|t| crate::timefmt::add(t, interval))
    } else {
        // Became able to report: report at activation (the extension's success time if that is
        // the trigger, else now).
        let activated = m
            .extensions
            .values()
            .filter(|e| e.is_guest_attestation())
            .filter_map(|e| e.succeeded_at)
            .max()
            .filter(|s| m.guest.last_report.is_none_or(|l| *s > l))
            .map_or(now, |s| s.min(now));
        Some(activated)
    };
    m.guest.was_active = true;
    let Some(mut due) = next_due else { return };
    if due > now {
        return;
    }
    // Skip to the latest report time <= now.
    let behind = now.duration_since(due).unwrap_or_default();
    let steps = u32::try_from(behind.as_secs() / interval.as_secs().max(1)).unwrap_or(u32::MAX);
    due = crate::timefmt::add(due, interval.saturating_mul(steps));
    m.guest.last_report = Some(due);
    m.guest.status = Some(StatusSource::Simulated {
        at: due,
        props: report(m),
    });
}
