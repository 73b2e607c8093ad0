//! The AttestationStatus controller against the real API server and the Azure emulator.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use azure_emulator::{
    AttestationStatusProps, Emulator, Fault, FaultAction, VmSpec, format_status_timestamp,
};
use guest_attestation_operator::{
    attestation_status::{StatusContext, run},
    azure::Azure,
    crd::{AttestationStatus, ConditionStatus, Health},
    metrics::Metrics,
};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use tokio::sync::oneshot;

use crate::support::{self, azure as az};

/// One controller, scoped to one namespace, for one test; stops when dropped.
struct Harness {
    client: Client,
    ns: String,
    emu: Emulator,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
}

async fn harness(prefix: &str) -> Harness {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, prefix).await;
    az::credentials_secret(&client, &ns).await;
    let emu = az::emulator().await;
    let (ctx, metrics) = az::context(
        client.clone(),
        &emu,
        az::fast_settings(),
        "attestationstatus",
    );
    let sctx: Arc<StatusContext<Azure>> = Arc::new(StatusContext::new(ctx));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(sctx, Some(ns.clone()), async move {
        let _ = stopped.await;
    }));
    Harness {
        client,
        ns,
        emu,
        metrics,
        _stop: stop,
    }
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

fn healthy_props(at: SystemTime) -> AttestationStatusProps {
    AttestationStatusProps {
        attest_secure_boot_enabled: Some("Enabled".into()),
        attestation_cert_validated: Some("Valid".into()),
        boot_integrity_validated: Some("Valid".into()),
        linux_kernel_version: Some("0".into()),
        health_status: Some("Healthy".into()),
        timestamp: Some(format_status_timestamp(at)),
        error_message: None,
        provisioning_state: Some("Succeeded".into()),
        ..AttestationStatusProps::default()
    }
}

impl Harness {
    /// A machine with a Running Trusted Launch VM and the given attestation status.
    fn vm(&self, name: &str, vm: VmSpec, props: Option<AttestationStatusProps>) -> String {
        let id = az::machine_id("rg1", name);
        self.emu.put_machine(&id, "eastus", "Windows").unwrap();
        self.emu.put_vm_instance(&id, vm).unwrap();
        self.emu.set_attestation_status(&id, props).unwrap();
        id
    }

    async fn create(&self, name: &str, machine: &str, stale_after: &str) {
        let obj: AttestationStatus = serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
            "metadata": {"name": name},
            "spec": {"machineId": machine, "refreshInterval": "1m", "staleAfter": stale_after, "credentialsRef": {"name": "azure-sp"}}
        }))
        .unwrap();
        self.api()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    fn api(&self) -> Api<AttestationStatus> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Waits until the object satisfies `check`, returning it.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AttestationStatus) -> bool,
    ) -> AttestationStatus {
        support::wait_object(&self.api(), name, what, Duration::from_secs(30), check).await
    }

    async fn events(&self, name: &str) -> Vec<Event> {
        support::events(&self.client, &self.ns, name).await
    }
}

fn health(o: &AttestationStatus) -> Option<(Health, String)> {
    let s = o.status.as_ref()?;
    Some((s.health?, s.reason.clone()?))
}

fn is(o: &AttestationStatus, h: Health, reason: &str) -> bool {
    health(o).is_some_and(|(hh, r)| hh == h && r == reason)
}

fn condition(o: &AttestationStatus, type_: &str) -> Option<(ConditionStatus, String)> {
    o.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.clone()))
}

#[tokio::test]
async fn healthy_vm_is_mirrored_and_ready() {
    let h = harness("ats-healthy").await;
    let id = h.vm("vm-ok", VmSpec::default(), Some(healthy_props(ago(3600))));
    h.create("vm-ok", &id, "8h").await;
    let o = h
        .wait("vm-ok", "Healthy", |o| is(o, Health::Healthy, "Attested"))
        .await;
    let s = o.status.as_ref().unwrap();
    assert_eq!(s.attest_secure_boot_enabled.as_deref(), Some("Enabled"));
    assert_eq!(s.boot_integrity_validated.as_deref(), Some("Valid"));
    assert_eq!(s.attestation_cert_validated.as_deref(), Some("Valid"));
    assert_eq!(s.health_status.as_deref(), Some("Healthy"));
    assert_eq!(s.power_state.as_deref(), Some("Running"));
    assert_eq!(s.tpm_enabled, Some(true));
    assert_eq!(s.machine_name.as_deref(), Some("vm-ok"));
    assert!(
        s.raw_timestamp.as_deref().unwrap().ends_with('M'),
        "documented form kept raw"
    );
    assert!(s.attested_time.is_some() && s.last_checked_time.is_some());
    assert_eq!(s.observed_generation, o.metadata.generation);
    assert_eq!(
        condition(&o, "Ready"),
        Some((ConditionStatus::True, "Attested".into()))
    );
    assert_eq!(
        condition(&o, "Fresh"),
        Some((ConditionStatus::True, "Current".into()))
    );
    // The opt-in per-VM gauge carries the attested time.
    let attested = s.attested_time.as_ref().unwrap().0.as_second();
    let line = format!(
        "guest_attestation_vm_attested_timestamp_seconds{{namespace=\"{}\",name=\"vm-ok\"}} {attested}",
        h.ns
    );
    assert!(
        h.metrics.encode().contains(&line),
        "{line} in {}",
        h.metrics.encode()
    );
    support::wait_for("a Normal event", Duration::from_secs(10), || async {
        h.events("vm-ok").await.iter().any(|e| {
            e.type_.as_deref() == Some("Normal") && e.reason.as_deref() == Some("Attested")
        })
    })
    .await;
}

#[tokio::test]
async fn each_unhealthy_cause_is_named() {
    let h = harness("ats-unhealthy").await;
    let mut bad_boot = healthy_props(ago(60));
    bad_boot.boot_integrity_validated = Some("Invalid".into());
    bad_boot.health_status = Some("Unhealthy".into());
    let mut bad_cert = healthy_props(ago(60));
    bad_cert.attestation_cert_validated = Some("Invalid".into());
    bad_cert.error_message = Some("Attestation token has invalid signature".into());
    let mut bad_sb = healthy_props(ago(60));
    bad_sb.attest_secure_boot_enabled = Some("Disabled".into());
    let no_tpm = VmSpec {
        enable_tpm: false,
        ..VmSpec::default()
    };
    let mut azure_only = healthy_props(ago(60));
    azure_only.health_status = Some("Unhealthy".into());
    let cases = [
        (
            "boot",
            h.vm("boot", VmSpec::default(), Some(bad_boot)),
            "BootIntegrityNotValidated",
        ),
        (
            "cert",
            h.vm("cert", VmSpec::default(), Some(bad_cert)),
            "CertificateNotValidated",
        ),
        (
            "sb",
            h.vm("sb", VmSpec::default(), Some(bad_sb)),
            "SecureBootDisabled",
        ),
        (
            "tpm",
            h.vm("tpm", no_tpm, Some(healthy_props(ago(60)))),
            "TpmDisabled",
        ),
        (
            "azure",
            h.vm("azure", VmSpec::default(), Some(azure_only)),
            "AzureReportsUnhealthy",
        ),
    ];
    for (name, id, _) in &cases {
        h.create(name, id, "8h").await;
    }
    for (name, _, reason) in cases {
        let o = h
            .wait(name, reason, |o| is(o, Health::Unhealthy, reason))
            .await;
        assert_eq!(
            condition(&o, "Ready").unwrap().0,
            ConditionStatus::False,
            "{name}"
        );
        if name == "cert" {
            let s = o.status.unwrap();
            assert!(s.message.unwrap().contains("invalid signature"));
            assert_eq!(
                s.error_message.as_deref(),
                Some("Attestation token has invalid signature")
            );
        }
    }
    support::wait_for(
        "a Warning event for boot",
        Duration::from_secs(10),
        || async {
            h.events("boot").await.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("BootIntegrityNotValidated")
            })
        },
    )
    .await;
}

#[tokio::test]
async fn running_vm_goes_stale_on_time() {
    let h = harness("ats-stale").await;
    // Attested 55 s ago with staleAfter 1m: stale at attested + 60 s, whatever the refresh interval.
    let attested = ago(55);
    let id = h.vm("vm-stale", VmSpec::default(), Some(healthy_props(attested)));
    h.create("vm-stale", &id, "1m").await;
    h.wait("vm-stale", "Healthy first", |o| {
        is(o, Health::Healthy, "Attested")
    })
    .await;
    let o = h
        .wait("vm-stale", "Stale", |o| is(o, Health::Unknown, "Stale"))
        .await;
    // The documented timestamp has whole seconds; the flip comes at the mark, not a poll later.
    let mark = o.status.as_ref().unwrap().attested_time.as_ref().unwrap().0
        + k8s_openapi::jiff::SignedDuration::from_secs(60);
    let late = k8s_openapi::jiff::Timestamp::now().duration_since(mark);
    assert!(late.as_secs() < 60, "stale flip {late:?} after the mark");
    assert_eq!(
        condition(&o, "Fresh"),
        Some((ConditionStatus::False, "Stale".into()))
    );
    let message = o.status.unwrap().message.unwrap();
    assert!(
        message.contains("may have stopped working or the VM may be compromised"),
        "{message}"
    );
    support::wait_for(
        "a StaleAttestation warning",
        Duration::from_secs(10),
        || async {
            h.events("vm-stale").await.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("StaleAttestation")
            })
        },
    )
    .await;
}

#[tokio::test]
async fn stopped_vm_is_not_flagged_stale() {
    let h = harness("ats-stopped").await;
    let vm = VmSpec {
        power_state: "Stopped".into(),
        ..VmSpec::default()
    };
    let id = h.vm("vm-off", vm, Some(healthy_props(ago(3 * 24 * 3600))));
    h.create("vm-off", &id, "8h").await;
    let o = h
        .wait("vm-off", "not stale", |o| {
            is(o, Health::Healthy, "Attested")
        })
        .await;
    let (status, reason) = condition(&o, "Fresh").unwrap();
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::True, "NotRunning")
    );
}

#[tokio::test]
async fn missing_status_and_bad_timestamp_are_unknown() {
    let h = harness("ats-unknown").await;
    let none = h.vm("vm-none", VmSpec::default(), None);
    let mut bad = healthy_props(ago(60));
    bad.timestamp = Some("the day before yesterday".into());
    let bad = h.vm("vm-bad-ts", VmSpec::default(), Some(bad));
    h.create("vm-none", &none, "8h").await;
    h.create("vm-bad-ts", &bad, "8h").await;
    h.wait("vm-none", "NotReported", |o| {
        is(o, Health::Unknown, "NotReported")
    })
    .await;
    let o = h
        .wait("vm-bad-ts", "InvalidTimestamp", |o| {
            is(o, Health::Unknown, "InvalidTimestamp")
        })
        .await;
    let s = o.status.unwrap();
    assert_eq!(s.raw_timestamp.as_deref(), Some("the day before yesterday"));
    assert!(s.message.unwrap().contains("the day before yesterday"));
}

#[tokio::test]
async fn transient_errors_do_not_flap_and_long_ones_do() {
    let h = harness("ats-errors").await;
    let id = h.vm("vm-flaky", VmSpec::default(), Some(healthy_props(ago(60))));
    h.create("vm-flaky", &id, "8h").await;
    h.wait("vm-flaky", "Healthy", |o| {
        is(o, Health::Healthy, "Attested")
    })
    .await;
    // Two failed reads: Fresh turns False with the error's reason; the health stays.
    let blip = h
        .emu
        .add_fault(Fault {
            count: Some(2),
            ..Fault::on(
                Some("GET"),
                "/attestationStatus/default",
                FaultAction::Status {
                    status: 503,
                    code: "ServiceUnavailable".into(),
                    message: "try later".into(),
                    retry_after: None,
                },
            )
        })
        .unwrap();
    let o = h
        .wait("vm-flaky", "Fresh=False", |o| {
            condition(o, "Fresh").is_some_and(|c| c.1 == "AzureUnavailable")
        })
        .await;
    assert!(is(&o, Health::Healthy, "Attested"), "{:?}", health(&o));
    h.wait("vm-flaky", "Fresh again", |o| {
        condition(o, "Fresh").is_some_and(|c| c.1 == "Current")
    })
    .await;
    assert!(h.emu.fault_hits(blip) >= Some(2));
    let to_unknown = h
        .metrics
        .encode()
        .lines()
        .filter(|l| l.contains("health_transitions_total") && l.contains("to=\"Unknown\""))
        .count();
    assert_eq!(to_unknown, 0, "no flap to Unknown:\n{}", h.metrics.encode());
    // An outage longer than the grace period: Unknown / StatusUnavailable, values kept.
    h.emu
        .add_fault(Fault::on(
            Some("GET"),
            "/virtualMachineInstances/default",
            FaultAction::Reset,
        ))
        .unwrap();
    let o = h
        .wait("vm-flaky", "StatusUnavailable", |o| {
            is(o, Health::Unknown, "StatusUnavailable")
        })
        .await;
    assert_eq!(
        o.status.unwrap().boot_integrity_validated.as_deref(),
        Some("Valid")
    );
}

#[tokio::test]
async fn azure_change_is_picked_up_and_nothing_is_written_when_nothing_changes() {
    let h = harness("ats-steady").await;
    let id = h.vm("vm-steady", VmSpec::default(), Some(healthy_props(ago(60))));
    h.create("vm-steady", &id, "8h").await;
    let first = h
        .wait("vm-steady", "Healthy", |o| {
            is(o, Health::Healthy, "Attested")
        })
        .await;
    let rv = first.resource_version();
    // Let several refresh intervals pass (counted in the emulator's request log).
    let polls = || {
        h.emu
            .requests()
            .iter()
            .filter(|r| {
                r.path.contains("vm-steady") && r.path.ends_with("attestationStatus/default")
            })
            .count()
    };
    let vm_reads = || {
        h.emu
            .requests()
            .iter()
            .filter(|r| {
                r.path.contains("vm-steady") && r.path.ends_with("virtualMachineInstances/default")
            })
            .count()
    };
    let (before, vm_before) = (polls(), vm_reads());
    support::wait_for("5 more polls", Duration::from_secs(30), || async {
        polls() >= before + 5
    })
    .await;
    let now = h.api().get("vm-steady").await.unwrap();
    assert_eq!(
        now.resource_version(),
        rv,
        "no status write while nothing changed"
    );
    // T5: one GET per refresh interval, the attestationStatus; the VM instance (power state)
    // is read again only near the 8-hour mark or once per staleAfter.
    assert_eq!(vm_reads(), vm_before, "VM instance reread in steady state");
    // A change in Azure is picked up at the next refresh.
    let mut bad = healthy_props(ago(30));
    bad.boot_integrity_validated = Some("Invalid".into());
    h.emu.set_attestation_status(&id, Some(bad)).unwrap();
    h.wait("vm-steady", "Unhealthy", |o| {
        is(o, Health::Unhealthy, "BootIntegrityNotValidated")
    })
    .await;
}

#[tokio::test]
async fn spec_change_reads_again_at_once() {
    let h = harness("ats-spec").await;
    let id = h.vm("vm-spec", VmSpec::default(), Some(healthy_props(ago(600))));
    h.create("vm-spec", &id, "8h").await;
    h.wait("vm-spec", "Healthy", |o| is(o, Health::Healthy, "Attested"))
        .await;
    // Tighten staleAfter below the attestation's age: it is stale right away.
    let patch = serde_json::json!({"spec": {"staleAfter": "5m"}});
    h.api()
        .patch("vm-spec", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let o = h
        .wait("vm-spec", "Stale after spec change", |o| {
            is(o, Health::Unknown, "Stale")
        })
        .await;
    assert_eq!(o.status.unwrap().observed_generation, o.metadata.generation);
}
