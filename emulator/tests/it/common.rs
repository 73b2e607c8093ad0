//! Shared helpers.

#![allow(dead_code)]

use std::time::Duration;

use azure_emulator::{
    ClusterSpec, Emulator, EmulatorConfig, IsolatedVmAttestationConfiguration, VmSpec,
};
use base64::Engine as _;
use serde_json::Value;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "emu-secret-value";
pub const SUB: &str = "fd3c3665-1729-4b7b-9a38-238e83b0f98b";
pub const RG: &str = "test-rg";
pub const ARM: &str = "https://management.azure.com";
pub const MAA: &str = "https://attest.azure.net";

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn start() -> Emulator {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(cfg: EmulatorConfig) -> Emulator {
    install_provider();
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    emu.add_service_principal(TENANT, CLIENT, SECRET);
    emu
}

pub fn client(emu: &Emulator) -> reqwest::Client {
    install_provider();
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .https_only(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub async fn token(emu: &Emulator, http: &reqwest::Client, resource: &str) -> String {
    let resp = http
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", emu.endpoint()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", &format!("{resource}/.default")),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("claims json")
}

pub fn machine_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridCompute/machines/{name}"
    )
}

pub fn provider_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Attestation/attestationProviders/{name}"
    )
}

pub fn cluster_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/clusters/{name}"
    )
}

/// A Running Trusted Launch VM with vTPM and Secure Boot.
pub fn seed_vm(emu: &Emulator, name: &str) -> String {
    let id = machine_id(name);
    emu.put_machine(&id, "eastus", "Windows").expect("machine");
    emu.put_vm_instance(
        &id,
        VmSpec {
            network_interfaces: vec![format!(
                "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/networkInterfaces/{name}-nic"
            )],
            ..VmSpec::default()
        },
    )
    .expect("vm");
    id
}

pub fn seed_cluster(emu: &Emulator, name: &str, with_attestation: bool) -> String {
    let id = cluster_id(name);
    emu.put_cluster(ClusterSpec {
        id: id.clone(),
        location: "eastus".into(),
        aad_tenant_id: TENANT.into(),
        aad_client_id: None,
        isolated_vm_attestation_configuration: with_attestation.then(|| {
            IsolatedVmAttestationConfiguration {
                attestation_resource_id: provider_id("clustermaa"),
                relying_party_service_endpoint:
                    "https://dp.stackhci.azure.com/eastus/igvmAttestation/valid".into(),
                attestation_service_endpoint: emu.attest_uri("clustermaa"),
            }
        }),
    })
    .expect("cluster");
    id
}

/// `{endpoint}{path}?api-version={v}`.
pub fn url(emu: &Emulator, path: &str, api: &str) -> String {
    format!("{}{path}?api-version={api}", emu.endpoint())
}

pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = http.get(url).bearer_auth(token).send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        },
    )
}

pub const EXT_SETTINGS: &str = r#"{"AttestationConfig":{"MaaSettings":{"maaEndpoint":"https://x.eus.attest.azure.net","maaTenantName":"DUMMY_Tenant_NewConfig"},"AscSettings":{"ascReportingEndpoint":"https://dp.stackhci.azure.com/eastus/igvmAttestation/valid","ascReportingFrequency":"4H"},"AzureStackSettings":{"clusterId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.AzureStackHCI/clusters/c","clusterAadTenantId":"t"},"useCustomToken":"true","disableAlerts":"false","isAzureStack":"true"}}"#;

pub fn guest_attestation_body() -> Value {
    serde_json::json!({
        "location": "eastus",
        "properties": {
            "publisher": "Microsoft.Azure.Security.WindowsAttestation",
            "type": "GuestAttestation",
            "enableAutomaticUpgrade": true,
            "settings": serde_json::from_str::<Value>(EXT_SETTINGS).expect("settings"),
        }
    })
}
