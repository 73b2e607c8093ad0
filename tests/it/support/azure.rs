//! The Azure emulator for controller tests, and an operator context wired to it.

use std::{sync::Arc, time::Duration};

use azure_emulator::{Emulator, EmulatorConfig};
use guest_attestation_operator::{
    azure::{Azure, AzureConfig, CloudEndpoints, RetryPolicy},
    controller::{Context, Settings},
    metrics::{AzureMetricsAdapter, Metrics},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, api::PostParams};

pub const TENANT: &str = "7e589cc1-a8b6-4dff-91bd-5ec0fa18db94";
pub const CLIENT_ID: &str = "24a6e53d-04e5-44d2-b7cc-1b732a847dfc";
pub const CLIENT_SECRET: &str = "emulator-secret-value-0123456789";
pub const SUB: &str = "fd3c3665-1729-4b7b-9a38-238e83b0f98b";

/// An emulator with one service principal.
pub async fn emulator() -> Emulator {
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("start the Azure emulator");
    emu.add_service_principal(TENANT, CLIENT_ID, CLIENT_SECRET);
    emu
}

/// The operator's Azure configuration pointing at the emulator, trusting only its CA.
pub fn azure_config(emu: &Emulator) -> AzureConfig {
    let base: url::Url = emu.endpoint().parse().expect("emulator endpoint");
    let mut config = AzureConfig {
        cloud: CloudEndpoints::on(&base),
        ..AzureConfig::default()
    };
    config.imds_endpoint = base
        .join("/metadata/identity/oauth2/token")
        .expect("imds url");
    config.request_timeout = Duration::from_secs(5);
    // Two attempts per call, quickly: the controllers' own retry logic is what tests look at.
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        max_wait: Duration::from_secs(2),
    };
    config.with_ca_pem(emu.ca_pem())
}

/// Settings for fast tests: one refresh interval of 1 min is scaled to 0.5 s.
pub fn fast_settings() -> Settings {
    Settings {
        interval_scale: 1.0 / 120.0,
        failure_grace: Duration::from_secs(3),
        per_vm_metrics: true,
        ..Settings::default()
    }
}

/// A controller context on `client` and the emulator.
pub fn context(
    client: Client,
    emu: &Emulator,
    settings: Settings,
    controller: &str,
) -> (Context<Azure>, Arc<Metrics>) {
    context_with(client, azure_config(emu), settings, controller)
}

/// [`context`] with an Azure configuration of the test's own (made from [`azure_config`]).
pub fn context_with(
    client: Client,
    config: AzureConfig,
    settings: Settings,
    controller: &str,
) -> (Context<Azure>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let azure = Azure::with_metrics(config, Arc::new(AzureMetricsAdapter(metrics.clone())))
        .expect("azure client");
    (
        Context::new(client, azure, settings, metrics.clone(), controller),
        metrics,
    )
}

/// The service principal's Secret in `ns`, named `azure-sp`.
pub async fn credentials_secret(client: &Client, ns: &str) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "azure-sp"},
        "stringData": {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// An ARM machine id in the test subscription.
pub fn machine_id(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/machines/{name}"
    )
}
