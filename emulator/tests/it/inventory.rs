//! Clusters, machines, VM instances and attestation status reads.

use azure_emulator::AttestationStatusProps;
use serde_json::Value;

use crate::common::*;

const VM_API: &str = "2025-06-01-preview";

#[tokio::test]
async fn cluster_machine_vm_and_status_reads() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;

    let cid = seed_cluster(&emu, "myCluster", true);
    let (s, c) = get_json(&http, &url(&emu, &cid, "2025-10-01"), &t).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["id"], cid);
    assert_eq!(c["properties"]["aadTenantId"], TENANT);
    let iso = &c["properties"]["isolatedVmAttestationConfiguration"];
    assert_eq!(
        iso["attestationServiceEndpoint"],
        emu.attest_uri("clustermaa")
    );
    assert!(
        iso["relyingPartyServiceEndpoint"].is_string() && iso["attestationResourceId"].is_string()
    );
    let bare = seed_cluster(&emu, "bareCluster", false);
    let (_, c) = get_json(&http, &url(&emu, &bare, "2024-04-01"), &t).await;
    assert!(
        c["properties"]
            .get("isolatedVmAttestationConfiguration")
            .is_none()
    );
    let (s, _) = get_json(&http, &url(&emu, &cluster_id("nope"), "2025-10-01"), &t).await;
    assert_eq!(s, 404);

    let mid = seed_vm(&emu, "DemoVM");
    let (s, m) = get_json(&http, &url(&emu, &mid, "2025-01-13"), &t).await;
    assert_eq!(
        (s, m["type"].as_str()),
        (200, Some("Microsoft.HybridCompute/machines"))
    );
    let (s, list) = get_json(&http, &url(&emu, &format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridCompute/machines"), "2025-01-13"), &t).await;
    assert_eq!((s, list["value"].as_array().map(Vec::len)), (200, Some(1)));

    let vm_path =
        format!("{mid}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default");
    let (s, vm) = get_json(&http, &url(&emu, &vm_path, VM_API), &t).await;
    assert_eq!(s, 200, "{vm}");
    let sp = &vm["properties"]["securityProfile"];
    assert_eq!(sp["enableTPM"], true);
    assert_eq!(sp["uefiSettings"]["secureBootEnabled"], true);
    assert_eq!(sp["securityType"], "TrustedLaunch");
    assert_eq!(vm["properties"]["status"]["powerState"], "Running");
    assert_eq!(
        vm["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        vm["properties"]["storageProfile"]["osDisk"]["osType"],
        "Windows"
    );
    assert_eq!(vm["extendedLocation"]["type"], "CustomLocation");

    // Status: absent → 404; set by hand → 200 with the raw timestamp; lower-case path works.
    let status_path = format!("{vm_path}/attestationStatus/default");
    let (s, b) = get_json(&http, &url(&emu, &status_path, VM_API), &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("ResourceNotFound")),
        "{b}"
    );
    emu.set_attestation_status(
        &mid,
        Some(AttestationStatusProps::healthy("6/12/2024 8:49:33 PM")),
    )
    .expect("status");
    let (s, st) = get_json(
        &http,
        &url(
            &emu,
            &status_path
                .to_ascii_lowercase()
                .replace("attestationstatus", "AttestationStatus"),
            VM_API,
        ),
        &t,
    )
    .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["properties"]["timestamp"], "6/12/2024 8:49:33 PM");
    assert_eq!(st["properties"]["healthStatus"], "Healthy");
    assert_eq!(st["properties"]["errorMessage"], Value::Null);
    assert_eq!(st["name"], "default");
    // attestationStatus does not exist in the only stable version.
    let (s, b) = get_json(&http, &url(&emu, &status_path, "2024-01-01"), &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound"))
    );
    emu.set_attestation_status(&mid, None).expect("clear");
    let (s, _) = get_json(&http, &url(&emu, &status_path, VM_API), &t).await;
    assert_eq!(s, 404);

    // Missing parents.
    let ghost = machine_id("ghost");
    let (s, b) = get_json(
        &http,
        &url(
            &emu,
            &format!("{ghost}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default"),
            VM_API,
        ),
        &t,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("ParentResourceNotFound"))
    );
    let (s, b) = get_json(
        &http,
        &url(&emu, &format!("{ghost}/extensions"), "2025-01-13"),
        &t,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("ParentResourceNotFound"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn guest_reports_on_a_cadence_and_goes_stale() {
    let emu = start().await;
    let mid = seed_vm(&emu, "cadence");
    emu.put_extension(
        &mid,
        azure_emulator::ExtensionSpec {
            name: "GuestAttestation".into(),
            publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
            extension_type: "GuestAttestation".into(),
            type_handler_version: None,
            enable_automatic_upgrade: Some(true),
            settings: Value::Null,
            provisioning_state: None,
        },
    )
    .expect("extension");
    let first = emu
        .attestation_status(&mid)
        .expect("status")
        .expect("reported at install");
    assert_eq!(first.health_status.as_deref(), Some("Healthy"));
    let age = |p: &AttestationStatusProps| parse_age(p.timestamp.as_deref().expect("timestamp"));
    assert!(age(&first) < 60, "fresh");

    // 8 h later the guest has reported again: still fresh.
    emu.advance_clock(std::time::Duration::from_mins(8 * 60 + 1));
    let second = emu
        .attestation_status(&mid)
        .expect("status")
        .expect("status");
    assert!(age(&second) < 120, "refreshed after 8h: {second:?}");

    // Compromise: the next report is Unhealthy with boot integrity Invalid.
    emu.set_compromised(&mid, true).expect("compromise");
    emu.advance_clock(std::time::Duration::from_hours(8));
    let third = emu
        .attestation_status(&mid)
        .expect("status")
        .expect("status");
    assert_eq!(third.health_status.as_deref(), Some("Unhealthy"));
    assert_eq!(third.boot_integrity_validated.as_deref(), Some("Invalid"));

    // Stop reporting: the status freezes and ages with the virtual clock.
    emu.set_guest_reporting(&mid, false).expect("stop");
    emu.advance_clock(std::time::Duration::from_hours(9));
    let stale = emu
        .attestation_status(&mid)
        .expect("status")
        .expect("status");
    assert!(age(&stale) > 8 * 3600, "stale: {stale:?}");

    // A stopped VM does not report either.
    emu.set_guest_reporting(&mid, true).expect("resume");
    assert!(
        age(&emu.attestation_status(&mid).expect("s").expect("s")) < 120,
        "reports on resume"
    );
    emu.set_power_state(&mid, "Stopped").expect("stop vm");
    emu.advance_clock(std::time::Duration::from_hours(10));
    assert!(age(&emu.attestation_status(&mid).expect("s").expect("s")) > 8 * 3600);
    emu.shutdown().await;
}

/// Seconds between a `M/d/yyyy h:mm:ss tt` UTC timestamp and now.
fn parse_age(ts: &str) -> i64 {
    let (date, rest) = ts.split_once(' ').expect("date");
    let (time, ampm) = rest.split_once(' ').expect("time");
    let d: Vec<i64> = date.split('/').map(|x| x.parse().expect("num")).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().expect("num")).collect();
    let hour = match (t[0], ampm) {
        (12, "AM") => 0,
        (h, "AM") => h,
        (12, "PM") => 12,
        (h, _) => h + 12,
    };
    let (y, m, day) = (d[2], d[0], d[1]);
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + t[1] * 60 + t[2];
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("t")
            .as_secs(),
    )
    .expect("i64");
    now - secs
}
