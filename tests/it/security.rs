//! Security checks as tests (issue 11, part 3), where the chart tests (tests/it/chart.rs: RBAC
//! through SelfSubjectAccessReviews, Pod Security `restricted` admission, no secret in the
//! operator's logs) and the fault schedules (tests/it/chaos.rs: no secret or token in logs, Events,
//! status or /metrics under faults) do not already cover them:
//!
//! * a resource cannot use a Secret of another namespace: `credentialsRef` has no namespace field
//!   (strict field validation rejects one; otherwise it is pruned), a name that would resolve
//!   elsewhere (`other/azure-sp`, `../azure-sp`) is rejected at admission, and a Secret that
//!   exists only in another namespace is never read (the API server's audit log shows no read
//!   there) — the resource reports the Secret missing in its own namespace;
//! * TLS to an Azure endpoint whose CA is not trusted is refused: the resource reports the TLS
//!   failure, and the emulator served no request.

use std::{sync::Arc, time::Duration};

use azure_emulator::VmSpec;
use guest_attestation_operator::{
    attestation_status::{StatusContext, run},
    azure::{Azure, AzureConfig, CloudEndpoints},
    controller::Context,
    metrics::Metrics,
};
use kube::{Client, api::PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{self, azure as az, dynamic_api};

/// kubectl (admin) with `input` on stdin: (success, stdout + stderr).
fn kubectl_stdin(args: &[&str], input: &str) -> (bool, String) {
    let out = support::kubectl_stdin(args, input);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn status_doc(ns: &str, name: &str, credentials: &Value) -> String {
    json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"machineId": az::machine_id("rg1", "vm1"), "credentialsRef": credentials}})
    .to_string()
}

/// Runs the AttestationStatus controller (admin client: RBAC would allow it to read anything, so
/// what it reads is the code's choice) on `ns` until the returned sender is dropped.
fn controller(client: &Client, ns: &str, azure: Azure) -> oneshot::Sender<()> {
    let ctx = Context::new(
        client.clone(),
        azure,
        az::fast_settings(),
        Arc::new(Metrics::new()),
        "attestationstatus",
    );
    let sctx: Arc<StatusContext<Azure>> = Arc::new(StatusContext::new(ctx));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(sctx, Some(ns.to_owned()), async move {
        let _ = stopped.await;
    }));
    stop
}

/// The first condition with status False, as (reason, message).
fn failing_condition(o: &kube::api::DynamicObject) -> Option<(String, String)> {
    o.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["status"] == "False")
        .map(|c| {
            (
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

#[tokio::test]
async fn security_credentials_ref_cannot_reach_another_namespace() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "sec-own").await;
    let other = support::namespace(&client, "sec-other").await;
    // The Secret exists only in the other namespace.
    az::credentials_secret(&client, &other).await;

    // A namespace in credentialsRef: rejected by strict field validation...
    let with_ns = json!({"name": "azure-sp", "namespace": other});
    let (ok, out) = kubectl_stdin(
        &["create", "--validate=strict", "-f", "-"],
        &status_doc(&ns, "strict", &with_ns),
    );
    assert!(!ok, "a credentialsRef with a namespace was accepted: {out}");
    assert!(out.contains("unknown field"), "{out}");
    // ... and pruned otherwise: the stored object names a Secret of its own namespace only.
    let (ok, out) = kubectl_stdin(
        &["create", "--validate=false", "-f", "-"],
        &status_doc(&ns, "pruned", &with_ns),
    );
    assert!(ok, "{out}");
    let stored = dynamic_api(&client, &ns, "AttestationStatus")
        .get("pruned")
        .await
        .unwrap();
    assert_eq!(
        stored.data["spec"]["credentialsRef"],
        json!({"name": "azure-sp"}),
        "the namespace field must not be stored"
    );
    // A name that would resolve elsewhere is not a name.
    for bad in [
        format!("{other}/azure-sp"),
        "../azure-sp".to_owned(),
        format!("azure-sp.{other}.svc/x"),
    ] {
        let (ok, out) = kubectl_stdin(
            &["create", "-f", "-"],
            &status_doc(&ns, "badname", &json!({"name": bad})),
        );
        assert!(!ok, "credentialsRef.name {bad:?} was accepted: {out}");
        assert!(out.contains("credentialsRef.name"), "{out}");
    }

    // The controller, with rights to read every Secret, looks only in the object's namespace.
    let emu = az::emulator().await;
    let machine = az::machine_id("rg1", "vm1");
    emu.put_machine(&machine, "eastus", "Windows").unwrap();
    emu.put_vm_instance(&machine, VmSpec::default()).unwrap();
    let azure = Azure::with_metrics(
        az::azure_config(&emu),
        Arc::new(guest_attestation_operator::metrics::AzureMetricsAdapter(
            Arc::new(Metrics::new()),
        )),
    )
    .unwrap();
    let _stop = controller(&client, &ns, azure);
    let obj = support::wait_object(
        &dynamic_api(&client, &ns, "AttestationStatus"),
        "pruned",
        "a condition about the missing Secret",
        Duration::from_secs(30),
        |o| failing_condition(o).is_some_and(|(_, m)| m.contains("azure-sp")),
    )
    .await;
    let (reason, message) = failing_condition(&obj).unwrap();
    assert!(
        message.contains("not found in this namespace"),
        "{reason}: {message}"
    );
    assert_ne!(obj.data["status"]["health"], "Healthy");
    // Nothing reached Azure (no token was requested with the other namespace's secret) ...
    assert!(
        emu.requests().is_empty(),
        "Azure was called: {:?}",
        emu.requests()
    );
    // ... and the API server saw no read of any Secret in the other namespace.
    let audit = std::fs::read_to_string(env.dir.join("audit.log")).expect("audit.log");
    let reads: Vec<&str> = audit
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|e| {
                e["objectRef"]["resource"] == "secrets"
                    && e["objectRef"]["namespace"] == other.as_str()
                    && ["get", "list", "watch"].contains(&e["verb"].as_str().unwrap_or_default())
            })
        })
        .collect();
    assert!(reads.is_empty(), "Secrets of {other} were read: {reads:?}");
    // Control: the audit log does record Secret reads in the object's own namespace.
    assert!(
        audit.lines().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|e| {
                e["objectRef"]["resource"] == "secrets"
                    && e["objectRef"]["namespace"] == ns.as_str()
                    && e["verb"] == "get"
            })
        }),
        "no Secret read in {ns} audited: the check above would prove nothing"
    );
}

#[tokio::test]
async fn security_tls_to_an_untrusted_ca_is_refused() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "sec-tls").await;
    az::credentials_secret(&client, &ns).await;
    let emu = az::emulator().await;
    let machine = az::machine_id("rg1", "vm1");
    emu.put_machine(&machine, "eastus", "Windows").unwrap();
    emu.put_vm_instance(&machine, VmSpec::default()).unwrap();

    // The emulator's endpoints, but not its CA: only the system roots are trusted.
    let base: url::Url = emu.endpoint().parse().unwrap();
    let mut config = AzureConfig {
        cloud: CloudEndpoints::on(&base),
        ..AzureConfig::default()
    };
    config.imds_endpoint = base.join("/metadata/identity/oauth2/token").unwrap();
    config.request_timeout = Duration::from_secs(5);
    let azure = Azure::with_metrics(
        config,
        Arc::new(guest_attestation_operator::metrics::AzureMetricsAdapter(
            Arc::new(Metrics::new()),
        )),
    )
    .unwrap();
    let _stop = controller(&client, &ns, azure);
    let api = dynamic_api(&client, &ns, "AttestationStatus");
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
        "metadata": {"name": "vm1"},
        "spec": {"machineId": machine, "credentialsRef": {"name": "azure-sp"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let obj = support::wait_object(
        &api,
        "vm1",
        "a condition about the refused TLS handshake",
        Duration::from_secs(30),
        |o| failing_condition(o).is_some_and(|(_, m)| m.contains("TLS")),
    )
    .await;
    let (reason, message) = failing_condition(&obj).unwrap();
    assert!(
        message.to_ascii_lowercase().contains("certificate")
            || message.contains("TLS handshake failed"),
        "{reason}: {message}"
    );
    assert_ne!(obj.data["status"]["health"], "Healthy");
    // The handshake failed before any request: the emulator served nothing, so no credential
    // left the operator.
    assert!(
        emu.requests().is_empty(),
        "requests were served: {:?}",
        emu.requests()
    );
}
