//! HybridCompute machine extensions as long-running operations.

use azure_emulator::ExtensionBehavior;
use serde_json::{Value, json};

use crate::common::*;

const API: &str = "2025-01-13";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Polls Azure-AsyncOperation until a terminal status (at most `max` polls).
async fn poll_status(
    http: &reqwest::Client,
    op_url: &str,
    token: &str,
    max: usize,
) -> (Value, usize) {
    for i in 1..=max {
        let (s, b) = get_json(http, op_url, token).await;
        assert_eq!(s, 200, "{b}");
        if b["status"] != "InProgress" {
            return (b, i);
        }
    }
    (json!({"status": "InProgress"}), max)
}

#[tokio::test]
async fn put_lro_succeeds_and_guest_reports() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "tvm1");
    let ext = format!("{mid}/extensions/GuestAttestation");
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    let async_op = header(&r, "azure-asyncoperation");
    let location = header(&r, "location");
    assert!(
        async_op.contains("/providers/Microsoft.HybridCompute/locations/eastus/operationstatus/"),
        "{async_op}"
    );
    assert!(location.contains("/operationresults/"), "{location}");
    assert_eq!(header(&r, "retry-after"), "1");
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["properties"]["provisioningState"], "Creating");

    // A second PUT while running is refused.
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 409);

    let r = http
        .get(&location)
        .bearer_auth(&t)
        .send()
        .await
        .expect("location");
    assert_eq!(r.status(), 202, "Location answers 202 while running");
    let (done, _) = poll_status(&http, &async_op, &t, 10).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(done["endTime"].is_string());
    let r = http
        .get(&location)
        .bearer_auth(&t)
        .send()
        .await
        .expect("location");
    assert_eq!(r.status(), 200);

    let (s, e) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(s, 200);
    let p = &e["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(
        p["publisher"],
        "Microsoft.Azure.Security.WindowsAttestation"
    );
    assert_eq!(p["type"], "GuestAttestation");
    assert_eq!(p["typeHandlerVersion"], "1.0.1.30");
    assert_eq!(p["enableAutomaticUpgrade"], true);
    assert_eq!(
        p["settings"],
        serde_json::from_str::<Value>(EXT_SETTINGS).expect("settings")
    );
    assert_eq!(p["instanceView"]["status"]["code"], "0");
    assert_eq!(p["instanceView"]["status"]["level"], "Information");
    assert!(
        p["instanceView"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("AszAttestationClient Started Successfully"))
    );
    assert_eq!(e["type"], "Microsoft.HybridCompute/machines/extensions");

    let (s, list) = get_json(&http, &url(&emu, &format!("{mid}/extensions"), API), &t).await;
    assert_eq!((s, list["value"].as_array().map(Vec::len)), (200, Some(1)));

    // The guest now reports a Healthy status.
    let status = format!(
        "{mid}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default/attestationStatus/default"
    );
    let (s, st) = get_json(&http, &url(&emu, &status, "2025-06-01-preview"), &t).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["properties"]["healthStatus"], "Healthy");
    assert!(
        st["properties"]["timestamp"]
            .as_str()
            .is_some_and(|ts| ts.ends_with(" AM") || ts.ends_with(" PM"))
    );

    // Update: PUT again gives 200 + Updating.
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json")["properties"]["provisioningState"],
        "Updating"
    );
    assert_eq!(emu.extension_operations(&mid), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn put_lro_fails_with_details_and_stuck_never_finishes() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let failing = seed_vm(&emu, "failvm");
    emu.set_extension_behavior(
        &failing,
        ExtensionBehavior::Fail {
            code: "ExtensionOperationFailed".into(),
            message: "AszAttestationClient failed to start".into(),
        },
    )
    .expect("behavior");
    let ext = format!("{failing}/extensions/GuestAttestation");
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    let op = header(&r, "azure-asyncoperation");
    let location = header(&r, "location");
    let (done, _) = poll_status(&http, &op, &t, 10).await;
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["error"]["code"], "ExtensionOperationFailed");
    let r = http
        .get(&location)
        .bearer_auth(&t)
        .send()
        .await
        .expect("location");
    assert_eq!(r.status(), 400);
    let (_, e) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(e["properties"]["provisioningState"], "Failed");
    assert_eq!(e["properties"]["instanceView"]["status"]["level"], "Error");
    assert_eq!(
        e["properties"]["instanceView"]["status"]["message"],
        "AszAttestationClient failed to start"
    );
    assert!(
        emu.attestation_status(&failing).expect("status").is_none(),
        "no status without a running extension"
    );

    let stuck = seed_vm(&emu, "stuckvm");
    emu.set_extension_behavior(&stuck, ExtensionBehavior::Stuck)
        .expect("behavior");
    let ext = format!("{stuck}/extensions/GuestAttestation");
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    let op = header(&r, "azure-asyncoperation");
    let (still, polls) = poll_status(&http, &op, &t, 6).await;
    assert_eq!((still["status"].as_str(), polls), (Some("InProgress"), 6));
    emu.advance_clock(std::time::Duration::from_hours(24));
    let (_, e) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(e["properties"]["provisioningState"], "Creating");
    emu.shutdown().await;
}

#[tokio::test]
async fn delete_lro_and_body_validation() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "delvm");
    let ext = format!("{mid}/extensions/GuestAttestation");
    emu.set_lro_config(azure_emulator::LroConfig {
        polls: 0,
        ..azure_emulator::LroConfig::default()
    });
    let r = http
        .put(url(&emu, &ext, API))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    let (_, e) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(
        e["properties"]["provisioningState"], "Succeeded",
        "polls: 0 completes on first look"
    );

    emu.set_lro_config(azure_emulator::LroConfig::default());
    let r = http
        .delete(url(&emu, &ext, API))
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    assert!(
        !header(&r, "azure-asyncoperation").is_empty() && !header(&r, "retry-after").is_empty()
    );
    let (_, e) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(e["properties"]["provisioningState"], "Deleting");
    let mut last = 0;
    for _ in 0..5 {
        last = http
            .get(&location)
            .bearer_auth(&t)
            .send()
            .await
            .expect("poll")
            .status()
            .as_u16();
        if last != 202 {
            break;
        }
    }
    assert_eq!(last, 204);
    let (s, _) = get_json(&http, &url(&emu, &ext, API), &t).await;
    assert_eq!(s, 404);
    let r = http
        .delete(url(&emu, &ext, API))
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204, "deleting a missing extension");

    let put = |body: Value| {
        http.put(url(&emu, &ext, API))
            .bearer_auth(&t)
            .json(&body)
            .send()
    };
    let r = put(json!({"location": "eastus", "properties": {"publisher": "p", "type": "GuestAttestation", "settings": "not-an-object"}})).await.expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "InvalidRequestContent"
    );
    let r = put(json!({"location": "eastus", "properties": {"type": "GuestAttestation"}}))
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["target"],
        "publisher"
    );
    let r = put(json!({"properties": {"publisher": "p", "type": "t"}}))
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let r = put(json!({"location": "eastus", "properties": {"publisher": "p", "type": "t", "enableAutomaticUpgrade": "yes"}})).await.expect("put");
    assert_eq!(r.status(), 400);
    let r = http
        .put(url(
            &emu,
            &format!("{}/extensions/GuestAttestation", machine_id("ghost")),
            API,
        ))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "ParentResourceNotFound"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn drift_outside_arm_is_visible() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "driftvm");
    emu.put_extension(
        &mid,
        azure_emulator::ExtensionSpec {
            name: "GuestAttestation".into(),
            publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
            extension_type: "GuestAttestation".into(),
            type_handler_version: None,
            enable_automatic_upgrade: Some(true),
            settings: serde_json::from_str(EXT_SETTINGS).expect("settings"),
            provisioning_state: None,
        },
    )
    .expect("put");
    emu.modify_extension(
        &mid,
        "GuestAttestation",
        azure_emulator::ExtensionPatch {
            settings: Some(json!({"AttestationConfig": {}})),
            ..Default::default()
        },
    )
    .expect("drift");
    let (_, e) = get_json(
        &http,
        &url(&emu, &format!("{mid}/extensions/guestattestation"), API),
        &t,
    )
    .await;
    assert_eq!(
        e["properties"]["settings"],
        json!({"AttestationConfig": {}})
    );
    assert!(emu.remove_extension(&mid, "GuestAttestation"));
    let (s, _) = get_json(
        &http,
        &url(&emu, &format!("{mid}/extensions/GuestAttestation"), API),
        &t,
    )
    .await;
    assert_eq!(s, 404);
    emu.shutdown().await;
}
