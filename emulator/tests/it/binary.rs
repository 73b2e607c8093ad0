//! The `azure-emulator` binary: flags, the ready line, the CA file and the control API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn binary_serves_with_seed_and_control_api() {
    install_provider();
    let dir = std::env::temp_dir().join(format!("azure-emulator-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("ca.pem");
    let seed = dir.join("seed.yaml");
    std::fs::write(
        &seed,
        format!(
            "tenants:\n  - id: {TENANT}\n    servicePrincipals: [{{clientId: {CLIENT}, secret: {SECRET}}}]\nmachines:\n  - id: {}\n    location: eastus\n    vm: {{securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running}}\n",
            machine_id("seeded")
        ),
    )
    .expect("seed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args([
            "--ca-out",
            ca.to_str().expect("path"),
            "--seed",
            seed.to_str().expect("path"),
            "--random-seed",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        line
    })
    .await
    .expect("join");
    let ready: Value = serde_json::from_str(&line).expect("ready json");
    let endpoint = ready["endpoint"].as_str().expect("endpoint").to_owned();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{ready}");
    assert_eq!(ready["ca"], ca.to_str().expect("path"));
    let admin = ready["admin"].as_str().expect("admin").to_owned();

    let pem = std::fs::read(&ca).expect("ca file");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .build()
        .expect("client");
    let r = http
        .post(format!("{endpoint}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let t = r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = http
        .get(format!(
            "{endpoint}{}?api-version=2025-01-13",
            machine_id("seeded")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "seeded machine is served");

    let plain = reqwest::Client::new();
    assert_eq!(
        plain
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    let r = plain
        .post(format!("{admin}/clock/advance"))
        .json(&json!({"seconds": 3600}))
        .send()
        .await
        .expect("advance");
    assert_eq!(
        r.json::<Value>().await.expect("json")["offsetSeconds"],
        3600.0
    );
    let r = plain.post(format!("{admin}/faults")).json(&json!({"method": "GET", "path": {"contains": "/machines/seeded"}, "count": 1, "action": {"status": {"status": 500, "code": "InternalServerError", "message": "boom"}}})).send().await.expect("fault");
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!(
            "{endpoint}{}?api-version=2025-01-13",
            machine_id("seeded")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 500);
    let log: Value = plain
        .get(format!("{admin}/requests"))
        .send()
        .await
        .expect("requests")
        .json()
        .await
        .expect("json");
    assert!(log.as_array().is_some_and(|l| {
        l.iter()
            .any(|r| r["status"] == 500 && r["principal"] == CLIENT)
    }));
    let r = plain
        .post(format!("{admin}/reset"))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!(
            "{endpoint}{}?api-version=2025-01-13",
            machine_id("seeded")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        200,
        "reset re-applies the seed and clears faults"
    );

    child.kill().expect("kill");
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
