//! The Azure client against the Azure emulator (no Kubernetes): every credential kind, token caching and
//! refresh, TLS trust, throttling and `Retry-After` (checked in the emulator's request log), retries,
//! long-running operations, MAA policies, malformed responses, metrics, and a scan of the captured logs for
//! secrets and tokens. No test sleeps to synchronise: waits are on events (metrics hooks) or on the client's own
//! `Retry-After` handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_emulator::{
    AttestationStatusProps, ClusterSpec, Emulator, EmulatorConfig, ExtensionBehavior, Fault,
    FaultAction, FederatedCredential, IsolatedVmAttestationConfiguration, LroConfig, PutStyle,
    RequestRecord, VmSpec,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guest_attestation_operator::azure::{
    AttestationProviderCreate, AttestationProviderCreateProperties, AttestationProviderPatch,
    AttestationProviderPatchProperties, Azure, AzureApi, AzureClient, AzureConfig, AzureMetrics,
    BucketSpec, CloudEndpoints, ClusterId, Credentials, DeleteOutcome, Error, HealthStatus,
    HoldReason, LroPoll, MachineExtension, MachineExtensionSpec, MachineExtensionSpecProperties,
    MachineId, PolicyResult, PolicySigner, PowerState, ProviderId, ProvisioningState, RateLimits,
    RequestRecord as ClientRecord, RetryPolicy, Secret, SecurityType, Service, Toggle,
    TransportKind, TrustModel,
};
use tokio::sync::Notify;
use url::Url;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-1111-1111-1111-111111111111";
const WI_CLIENT: &str = "22222222-2222-2222-2222-222222222222";
const SECRET: &str = "emu-Secret~value.42-do-not-log";
const SUB: &str = "fd3c3665-1729-4b7b-9a38-238e83b0f98b";
const RG: &str = "rg1";
const SUBJECT: &str = "system:serviceaccount:gao:operator";
const POLICY: &str = "version=1.0;authorizationrules{=> permit();};issuancerules{};";
const SIGNER_KEY: &str = include_str!("../src/azure/testdata/policy-signer.key.pem");
const SIGNER_CERT: &str = include_str!("../src/azure/testdata/policy-signer.cert.pem");

async fn emulator() -> Emulator {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.add_service_principal(TENANT, CLIENT, SECRET);
    emu
}

fn config(emu: &Emulator) -> AzureConfig {
    let base = Url::parse(&emu.endpoint()).unwrap();
    AzureConfig {
        cloud: CloudEndpoints::on(&base),
        imds_endpoint: base.join("metadata/identity/oauth2/token").unwrap(),
        ..AzureConfig::default()
    }
    .with_ca_pem(emu.ca_pem())
}

fn sp() -> Credentials {
    Credentials::client_secret(TENANT, CLIENT, Secret::new(SECRET))
}

fn cluster_id() -> ClusterId {
    ClusterId::new(SUB, RG, "cluster1").unwrap()
}

fn machine_id(name: &str) -> MachineId {
    MachineId::new(SUB, RG, name).unwrap()
}

fn provider_id(name: &str) -> ProviderId {
    ProviderId::new(SUB, RG, name).unwrap()
}

/// Seeds a cluster and one Running Trusted Launch VM.
fn seed(emu: &Emulator, vm: &str) {
    emu.put_cluster(ClusterSpec {
        id: cluster_id().to_string(),
        location: "eastus".into(),
        aad_tenant_id: TENANT.into(),
        aad_client_id: None,
        isolated_vm_attestation_configuration: Some(IsolatedVmAttestationConfiguration {
            attestation_resource_id: provider_id("maa1").to_string(),
            relying_party_service_endpoint:
                "https://dp.stackhci.azure.com/eastus/igvmAttestation/x".into(),
            attestation_service_endpoint: emu.attest_uri("maa1"),
        }),
    })
    .unwrap();
    let m = machine_id(vm).to_string();
    emu.put_machine(&m, "eastus", "Windows").unwrap();
    emu.put_vm_instance(&m, VmSpec::default()).unwrap();
}

async fn setup() -> (Emulator, Azure, AzureClient) {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let azure = Azure::new(config(&emu)).unwrap();
    let client = azure.client_for(sp());
    (emu, azure, client)
}

fn token_requests(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") || r.path.contains("/metadata/identity"))
        .count()
}

fn arm_requests(emu: &Emulator, method: &str, path_part: &str) -> Vec<RequestRecord> {
    emu.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.to_lowercase().contains(&path_part.to_lowercase()))
        .collect()
}

/// A workload-identity assertion (the emulator checks its claims, not its signature).
fn assertion(subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(serde_json::json!({"alg": "RS256", "kid": "k"})),
        enc(serde_json::json!({
            "aud": ["api://AzureADTokenExchange"],
            "iss": "https://oidc.example/cluster",
            "sub": subject,
            "iat": now, "nbf": now, "exp": now + 3600,
        })),
        URL_SAFE_NO_PAD.encode(b"not-checked-signature")
    )
}

fn write_file(path: &std::path::Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gao-azure-client-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn extension_spec() -> MachineExtensionSpec {
    MachineExtensionSpec {
        location: "eastus".into(),
        tags: BTreeMap::default(),
        properties: MachineExtensionSpecProperties {
            publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
            extension_type: "GuestAttestation".into(),
            enable_automatic_upgrade: Some(true),
            settings: Some(serde_json::json!({"AttestationConfig": {"useCustomToken": "true"}})),
            ..Default::default()
        },
    }
}

// ------------------------------------------------------------------------------------------------------------
// Credentials and tokens

#[tokio::test]
async fn client_secret_reads_every_resource() {
    let (emu, _azure, client) = setup().await;
    let m = machine_id("vm1");

    let cluster = client.get_cluster(&cluster_id()).await.unwrap().unwrap();
    assert_eq!(cluster.properties.aad_tenant_id.as_deref(), Some(TENANT));
    let iso = cluster
        .properties
        .isolated_vm_attestation_configuration
        .unwrap();
    assert_eq!(
        iso.attestation_service_endpoint.unwrap(),
        emu.attest_uri("maa1")
    );
    assert!(
        client
            .get_cluster(&ClusterId::new(SUB, RG, "nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let machine = client.get_machine(&m).await.unwrap().unwrap();
    assert_eq!(machine.name.as_deref(), Some("vm1"));

    let vm = client.get_vm_instance(&m).await.unwrap().unwrap();
    let sec = vm.properties.security_profile.unwrap();
    assert_eq!(sec.enable_tpm, Some(true));
    assert_eq!(sec.secure_boot_enabled(), Some(true));
    assert_eq!(sec.security_type, Some(SecurityType::TrustedLaunch));
    assert_eq!(
        vm.properties.status.unwrap().power_state,
        Some(PowerState::Running)
    );
    assert!(
        client
            .get_vm_instance(&machine_id("ghost"))
            .await
            .unwrap()
            .is_none()
    );

    assert!(client.get_attestation_status(&m).await.unwrap().is_none());
    emu.set_attestation_status(
        &m.to_string(),
        Some(AttestationStatusProps {
            health_status: Some("Healthy".into()),
            timestamp: Some("6/12/2024 8:49:33 PM".into()),
            ..Default::default()
        }),
    )
    .unwrap();
    let status = client.get_attestation_status(&m).await.unwrap().unwrap();
    assert_eq!(status.properties.health_status, Some(HealthStatus::Healthy));
    assert_eq!(
        status.properties.timestamp.as_deref(),
        Some("6/12/2024 8:49:33 PM")
    );

    assert!(
        client
            .get_extension(&m, "GuestAttestation")
            .await
            .unwrap()
            .is_none()
    );

    // one token for all ARM calls; every call with the configured api-versions, as our principal
    assert_eq!(token_requests(&emu), 1);
    let log = emu.requests();
    let version_of = |part: &str| {
        log.iter()
            .find(|r| r.path.to_lowercase().ends_with(&part.to_lowercase()))
            .and_then(|r| r.api_version.clone())
    };
    assert_eq!(
        version_of("clusters/cluster1").as_deref(),
        Some("2025-10-01")
    );
    assert_eq!(version_of("machines/vm1").as_deref(), Some("2025-01-13"));
    assert_eq!(
        version_of("virtualMachineInstances/default").as_deref(),
        Some("2025-06-01-preview")
    );
    assert_eq!(
        version_of("attestationStatus/default").as_deref(),
        Some("2025-06-01-preview")
    );
    assert!(
        log.iter()
            .filter(|r| r.path.starts_with("/subscriptions/"))
            .all(|r| r.principal.as_deref() == Some(CLIENT))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_failure_without_the_secret_in_it() {
    let (emu, azure, _) = setup().await;
    let bad = azure.client_for(Credentials::client_secret(
        TENANT,
        CLIENT,
        Secret::new("wrong-secret-value"),
    ));
    let err = bad.get_cluster(&cluster_id()).await.unwrap_err();
    assert!(err.is_auth_failure(), "{err:?}");
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("invalid_client"));
    assert!(err.message().unwrap().contains("AADSTS7000215"));
    assert!(!err.retryable());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-secret-value"));
    // not retried: the token endpoint saw one request
    assert_eq!(token_requests(&emu), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn workload_identity_rereads_the_token_file_on_every_exchange() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    emu.add_federated_credential(
        TENANT,
        WI_CLIENT,
        FederatedCredential {
            issuer: None,
            subject: Some(SUBJECT.into()),
        },
    );
    let file = temp_path("azure-identity-token");
    write_file(&file, &assertion(SUBJECT));
    let azure = Azure::new(config(&emu)).unwrap();
    let creds = Credentials::from_lookup(|k| match k {
        "AZURE_CLIENT_ID" => Some(WI_CLIENT.into()),
        "AZURE_TENANT_ID" => Some(TENANT.into()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(file.to_string_lossy().into_owned()),
        "AZURE_AUTHORITY_HOST" => Some(emu.endpoint()),
        _ => None,
    })
    .unwrap();
    assert!(matches!(creds, Credentials::WorkloadIdentity { .. }));
    let client = azure.client_for(creds);
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());
    assert_eq!(token_requests(&emu), 1);

    // The kubelet rotates the file; here to a token for another service account. ARM then rejects the cached
    // access token once, so the client exchanges again: with the new file, which Entra refuses.
    write_file(&file, &assertion("system:serviceaccount:other:sa"));
    emu.add_fault(
        Fault::on(
            Some("GET"),
            "/clusters/",
            FaultAction::status(401, "ExpiredAuthenticationToken", "expired"),
        )
        .times(1),
    )
    .unwrap();
    let err = client.get_cluster(&cluster_id()).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_client"));
    assert!(err.message().unwrap().contains("AADSTS700213"), "{err:?}");
    assert_eq!(token_requests(&emu), 2);

    // a valid rotated token works again
    write_file(&file, &assertion(SUBJECT));
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());
    assert_eq!(token_requests(&emu), 3);
    let _ = std::fs::remove_file(&file);
    emu.shutdown().await;
}

#[tokio::test]
async fn managed_identity_uses_imds() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let mi = emu.enable_managed_identity(None);
    let azure = Azure::new(config(&emu)).unwrap();
    let client = azure.client_for(Credentials::from_lookup(|_| None).unwrap());
    assert_eq!(client.principal(), "msi/system");
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());
    let log = emu.requests();
    let imds: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .collect();
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].status, Some(200));
    // the resource, not the scope (no "/.default"), as IMDS expects
    let query = &imds[0].query;
    assert!(
        query.contains("resource=https://management.azure.com")
            || query.contains("resource=https%3A%2F%2Fmanagement.azure.com"),
        "{query}"
    );
    assert!(!query.contains(".default"), "{query}");
    let arm = log.iter().find(|r| r.path.contains("/clusters/")).unwrap();
    assert_eq!(arm.principal.as_deref(), Some(mi.as_str()));
    // a user-assigned identity that does not exist is refused by IMDS
    let missing = azure.client_for(Credentials::ManagedIdentity {
        client_id: Some("33333333-3333-3333-3333-333333333333".into()),
    });
    let err = missing.get_cluster(&cluster_id()).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    emu.shutdown().await;
}

/// The token cache runs on tokio's clock: advancing it (without real waiting) brings a token into its refresh
/// window, 5 minutes before it expires.
#[tokio::test(flavor = "current_thread")]
async fn tokens_are_cached_and_refreshed_five_minutes_before_expiry() {
    let (emu, _azure, client) = setup().await;
    client.get_cluster(&cluster_id()).await.unwrap();
    client.get_machine(&machine_id("vm1")).await.unwrap();
    assert_eq!(token_requests(&emu), 1);
    // the emulator's tokens live 3599 s
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3599 - 301)).await;
    tokio::time::resume();
    client.get_cluster(&cluster_id()).await.unwrap();
    assert_eq!(token_requests(&emu), 1, "refreshed too early");
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    client.get_cluster(&cluster_id()).await.unwrap();
    assert_eq!(
        token_requests(&emu),
        2,
        "not refreshed in the last 5 minutes"
    );
    // the MAA scope has its own token
    let p = client
        .put_provider(
            &provider_id("maatok"),
            &AttestationProviderCreate {
                location: "eastus".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    client
        .maa_get_policy(p.properties.attest_uri.as_deref().unwrap(), "Tpm")
        .await
        .unwrap();
    assert_eq!(token_requests(&emu), 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_401_drops_the_token_and_tries_once_more() {
    let (emu, _azure, client) = setup().await;
    client.get_cluster(&cluster_id()).await.unwrap();
    emu.add_fault(
        Fault::on(
            Some("GET"),
            "/clusters/",
            FaultAction::status(401, "InvalidAuthenticationToken", "bad"),
        )
        .times(1),
    )
    .unwrap();
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());
    assert_eq!(token_requests(&emu), 2);
    // a persistent 401 surfaces after that one retry
    emu.add_fault(Fault::on(
        Some("GET"),
        "/machines/",
        FaultAction::status(401, "InvalidAuthenticationToken", "bad"),
    ))
    .unwrap();
    let err = client.get_machine(&machine_id("vm1")).await.unwrap_err();
    assert!(err.is_auth_failure());
    assert_eq!(arm_requests(&emu, "GET", "/machines/vm1").len(), 2);
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn an_unknown_ca_is_rejected() {
    let emu = emulator().await;
    let mut cfg = config(&emu);
    cfg.extra_ca_pem = None;
    let azure = Azure::new(cfg).unwrap();
    let err = azure
        .client_for(sp())
        .get_cluster(&cluster_id())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Tls,
                service: Service::Entra,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.retryable());
    // nothing got through the handshake
    assert!(emu.requests().is_empty());

    // another CA than the emulator's is no better
    let other = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let cfg = config(&emu).with_ca_pem(other.ca_pem());
    let err = Azure::new(cfg)
        .unwrap()
        .client_for(sp())
        .get_cluster(&cluster_id())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );

    // and plain http is never used for ARM or Entra
    let mut cfg = config(&emu);
    let http_base = Url::parse(&emu.endpoint().replace("https://", "http://")).unwrap();
    cfg.cloud = CloudEndpoints::on(&http_base);
    assert!(
        Azure::new(cfg)
            .unwrap()
            .client_for(sp())
            .get_cluster(&cluster_id())
            .await
            .is_err()
    );
    assert!(emu.requests().is_empty());
    other.shutdown().await;
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------------------
// Throttling, retries, timeouts

/// Metrics that record attempts and wake waiters on a given status.
#[derive(Debug, Default)]
struct Recorder {
    records: Mutex<Vec<ClientRecord>>,
    holds: Mutex<Vec<(HoldReason, Duration)>>,
    saw_429: Notify,
}

impl AzureMetrics for Recorder {
    fn record_request(&self, record: &ClientRecord) {
        self.records.lock().unwrap().push(*record);
        if record.status == Some(429) {
            self.saw_429.notify_waiters();
            self.saw_429.notify_one();
        }
    }

    fn record_hold(&self, _: Service, _: &'static str, reason: HoldReason, waited: Duration) {
        self.holds.lock().unwrap().push((reason, waited));
    }
}

async fn throttled_scope_is_honoured(action: FaultAction) {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let metrics = Arc::new(Recorder::default());
    let azure = Azure::with_metrics(config(&emu), metrics.clone()).unwrap();
    let client = azure.client_for(sp());
    client.get_cluster(&cluster_id()).await.unwrap(); // token and connection ready
    emu.clear_requests();
    emu.add_fault(Fault::on(Some("GET"), "/clusters/", action).times(1))
        .unwrap();

    // The cluster read gets 429 and waits; a machine read in the same scope (subscription, reads) that starts
    // after the 429 arrived must wait too.
    let cluster = cluster_id();
    let first = client.get_cluster(&cluster);
    let second = async {
        metrics.saw_429.notified().await;
        client.get_machine(&machine_id("vm1")).await
    };
    let (a, b) = tokio::join!(first, second);
    assert!(a.unwrap().is_some());
    assert!(b.unwrap().is_some());

    let log = emu.requests();
    let throttled = log.iter().find(|r| r.status == Some(429)).unwrap();
    let until = throttled.time + Duration::from_secs(3);
    let later: Vec<_> = log.iter().filter(|r| r.seq > throttled.seq).collect();
    assert_eq!(later.len(), 2, "{later:?}");
    for r in later {
        assert!(
            r.time >= until,
            "{} {} came {:?} before Retry-After elapsed",
            r.method,
            r.path,
            until.duration_since(r.time).unwrap_or_default()
        );
        assert_eq!(r.status, Some(200));
    }
    assert!(
        metrics
            .holds
            .lock()
            .unwrap()
            .iter()
            .any(|(reason, waited)| *reason == HoldReason::RetryAfter && !waited.is_zero())
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured_for_the_whole_scope() {
    throttled_scope_is_honoured(FaultAction::throttle(3)).await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured_for_the_whole_scope() {
    throttled_scope_is_honoured(FaultAction::throttle_until(3)).await;
}

#[tokio::test]
async fn a_throttled_scope_holds_calls_that_cannot_wait_without_sending_them() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let mut cfg = config(&emu);
    cfg.retry = RetryPolicy {
        max_wait: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let azure = Azure::new(cfg).unwrap();
    let client = azure.client_for(sp());
    client.get_cluster(&cluster_id()).await.unwrap();
    emu.add_fault(Fault::on(Some("GET"), "/clusters/", FaultAction::throttle(30)).times(1))
        .unwrap();
    let err = client.get_cluster(&cluster_id()).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(err.retryable());
    let ra = err.retry_after().unwrap();
    assert_eq!(ra, Duration::from_secs(30));
    let before = emu.requests().len();
    // reads of the subscription are held on the client side...
    let held = client.get_machine(&machine_id("vm1")).await.unwrap_err();
    assert!(
        matches!(
            held,
            Error::Held {
                reason: HoldReason::RetryAfter,
                ..
            }
        ),
        "{held:?}"
    );
    assert!(held.retryable());
    assert!(held.retry_after().unwrap() > Duration::from_secs(25));
    assert_eq!(emu.requests().len(), before, "a held call reached Azure");
    // ...but other subscriptions are not
    let other = MachineId::new("0b2c8a52-5fb1-4c5e-9a3e-bd1f2f8a0c11", RG, "vm9").unwrap();
    assert!(client.get_machine(&other).await.unwrap().is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    let (emu, _azure, client) = setup().await;
    client.get_cluster(&cluster_id()).await.unwrap();
    emu.clear_requests();
    emu.add_fault(
        Fault::on(
            Some("GET"),
            "/clusters/",
            FaultAction::status(503, "ServiceUnavailable", "busy"),
        )
        .times(2),
    )
    .unwrap();
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());
    let statuses: Vec<_> = arm_requests(&emu, "GET", "/clusters/")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(200)]);

    emu.clear_requests();
    emu.add_fault(Fault::on(Some("GET"), "/machines/", FaultAction::Reset).times(1))
        .unwrap();
    assert!(
        client
            .get_machine(&machine_id("vm1"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(arm_requests(&emu, "GET", "/machines/").len(), 2);

    // PATCH of a provider is declared idempotent (setting the same properties twice), so it is retried too
    let p = provider_id("patchme");
    client
        .put_provider(
            &p,
            &AttestationProviderCreate {
                location: "eastus".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    emu.clear_requests();
    emu.add_fault(
        Fault::on(
            Some("PATCH"),
            "/attestationProviders/",
            FaultAction::status(500, "InternalServerError", "x"),
        )
        .times(1),
    )
    .unwrap();
    assert!(
        client
            .patch_provider(&p, &AttestationProviderPatch::default())
            .await
            .is_ok()
    );
    assert_eq!(
        arm_requests(&emu, "PATCH", "/attestationProviders/").len(),
        2
    );

    // non-retryable statuses are returned at once
    emu.clear_requests();
    emu.add_fault(
        Fault::on(
            Some("GET"),
            "/clusters/",
            FaultAction::status(400, "BadRequest", "no"),
        )
        .times(1),
    )
    .unwrap();
    let err = client.get_cluster(&cluster_id()).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(400), Some("BadRequest")));
    assert!(!err.retryable());
    assert_eq!(arm_requests(&emu, "GET", "/clusters/").len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_hanging_server_times_out_and_is_retried() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let mut cfg = config(&emu);
    cfg.request_timeout = Duration::from_secs(1);
    let azure = Azure::new(cfg.clone()).unwrap();
    let client = azure.client_for(sp());
    client.get_cluster(&cluster_id()).await.unwrap();
    emu.add_fault(Fault::on(Some("GET"), "/clusters/", FaultAction::Hang).times(1))
        .unwrap();
    assert!(client.get_cluster(&cluster_id()).await.unwrap().is_some());

    cfg.retry.max_attempts = 1;
    let once = Azure::new(cfg).unwrap().client_for(sp());
    once.get_cluster(&cluster_id()).await.unwrap();
    emu.add_fault(Fault::on(Some("GET"), "/clusters/", FaultAction::Hang).times(1))
        .unwrap();
    let err = once.get_cluster(&cluster_id()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    emu.shutdown().await;
}

#[tokio::test]
async fn malformed_responses_give_clear_errors() {
    let (emu, _azure, client) = setup().await;
    emu.add_fault(Fault::on(Some("GET"), "/clusters/", FaultAction::Malformed).times(1))
        .unwrap();
    let err = client.get_cluster(&cluster_id()).await.unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "arm get_cluster returned a malformed body (HTTP 200)"
    );
    emu.add_fault(Fault::on(Some("GET"), "/machines/", FaultAction::Truncate).times(1))
        .unwrap();
    let err = client.get_machine(&machine_id("vm1")).await.unwrap_err();
    assert_eq!(err.operation(), Some("get_machine"));
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");

    // a malformed token response never quotes the body
    emu.add_fault(Fault::on(Some("POST"), "/oauth2/v2.0/token", FaultAction::Malformed).times(1))
        .unwrap();
    let fresh = Azure::new(config(&emu)).unwrap().client_for(sp());
    let err = fresh.get_cluster(&cluster_id()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidResponse {
                service: Service::Entra,
                ..
            }
        ),
        "{err:?}"
    );

    // a malformed MAA answer
    let p = client
        .put_provider(
            &provider_id("maabad"),
            &AttestationProviderCreate {
                location: "eastus".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    emu.add_fault(Fault::on(Some("GET"), "/policies/", FaultAction::Malformed).times(1))
        .unwrap();
    let err = client
        .maa_get_policy(p.properties.attest_uri.as_deref().unwrap(), "Tpm")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                service: Service::Maa,
                ..
            }
        ),
        "{err:?}"
    );
    emu.shutdown().await;
}

/// An emulator with vm1 and a client whose ARM reads are limited to `per_second` with `burst`.
async fn read_limited(per_second: u32, burst: u32) -> (Emulator, Azure, AzureClient) {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let mut cfg = config(&emu);
    cfg.rate_limits = RateLimits {
        reads: BucketSpec { per_second, burst },
        ..RateLimits::default()
    };
    let azure = Azure::new(cfg).unwrap();
    let client = azure.client_for(sp());
    (emu, azure, client)
}

#[tokio::test]
async fn the_client_side_rate_limit_bounds_the_rate_azure_sees() {
    let (emu, _azure, client) = read_limited(10, 3).await;
    let m = machine_id("vm1");
    let calls = (0..13).map(|_| client.get_machine(&m));
    for r in futures::future::join_all(calls).await {
        assert!(r.unwrap().is_some());
    }
    let times: Vec<SystemTime> = arm_requests(&emu, "GET", "/machines/")
        .iter()
        .map(|r| r.time)
        .collect();
    assert_eq!(times.len(), 13);
    // 13 requests with a burst of 3 at 10/s take at least 1 s, whatever the arrival jitter
    let span = times[12].duration_since(times[0]).unwrap();
    assert!(span >= Duration::from_millis(900), "{span:?}");
    // any burst + 1 requests span at least one interval, any burst + 8 at least eight
    for w in times.windows(4) {
        let gap = w[3].duration_since(w[0]).unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(80),
            "4 requests within {gap:?}"
        );
    }
    for w in times.windows(11) {
        let gap = w[10].duration_since(w[0]).unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(700),
            "11 requests within {gap:?}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn booked_reads_skip_the_queue_and_late_bookings_say_when_to_come_back() {
    let (emu, _azure, client) = read_limited(10, 2).await;
    let m = machine_id("vm1");
    let held = |r: Result<AzureClient, Error>| match r {
        Err(Error::Held {
            operation: "book_reads",
            reason: HoldReason::RateLimit,
            retry_after,
            ..
        }) => retry_after,
        other => panic!("not held by a booking: {other:?}"),
    };

    // "a" gets the burst at once and sends both reads with it.
    let a = client.admit(SUB, "a", 2).await.unwrap();
    for _ in 0..2 {
        assert!(a.get_machine(&m).await.unwrap().is_some());
    }
    // "b" books 30 reads, 3 s away at 10/s: longer than a reconcile waits in its slot.
    let b_wait = held(client.admit(SUB, "b", 30).await);
    assert!(
        b_wait > Duration::from_millis(2800) && b_wait <= Duration::from_secs(3),
        "{b_wait:?}"
    );
    // Coming back early reserves nothing more: "c" queues right behind b's 30 reads.
    let again = held(client.admit(SUB, "b", 30).await);
    assert!(again <= b_wait, "{again:?}");
    let c_wait = held(client.admit(SUB, "c", 1).await);
    assert!(
        c_wait >= b_wait && c_wait <= b_wait + Duration::from_millis(200),
        "{c_wait:?} vs {b_wait:?}"
    );

    // b comes back when told and sends its 30 reads without queueing again.
    let b = come_back(|| client.admit(SUB, "b", 30)).await;
    let before = emu.requests().len();
    let started = tokio::time::Instant::now();
    for _ in 0..30 {
        assert!(b.get_machine(&m).await.unwrap().is_some());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "booked reads waited: {:?}",
        started.elapsed()
    );
    assert_eq!(emu.requests().len() - before, 30);
    // The rate held over the whole: 32 reads with a burst of 2 at 10/s span at least 3 s.
    let span = span_of(&emu, "GET", "/machines/", 32);
    assert!(span >= Duration::from_millis(2900), "{span:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_booked_write_holds_its_place_and_is_sent_without_queueing() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    seed(&emu, "vm2");
    let mut cfg = config(&emu);
    cfg.rate_limits = RateLimits {
        writes: BucketSpec {
            per_second: 1,
            burst: 1,
        },
        ..RateLimits::default()
    };
    let client = Azure::new(cfg).unwrap().client_for(sp());
    // One VM each: the emulator refuses a second PUT while the first one's operation runs.
    let put = |c: AzureClient, vm: &'static str| async move {
        c.begin_put_extension(&machine_id(vm), "GuestAttestation", &extension_spec())
            .await
    };

    // "a" gets the burst and sends its PUT at once.
    let first = client.admit_write(SUB, "a").await.unwrap();
    put(first, "vm1").await.unwrap();
    // b and c book the next two writes (1 s and 2 s away, within a reconcile's patience); d's is 3 s away:
    // booked all the same, and d is told when to come back instead of waiting in its slot.
    let (second, third, fourth) = futures::join!(
        client.admit_write(SUB, "b"),
        client.admit_write(SUB, "c"),
        client.admit_write(SUB, "d")
    );
    let _ = (second.unwrap(), third.unwrap());
    let d_wait = match fourth {
        Err(Error::Held {
            operation: "book_writes",
            reason: HoldReason::RateLimit,
            retry_after,
            ..
        }) => retry_after,
        other => panic!("not held by a booking: {other:?}"),
    };
    assert!(
        d_wait > Duration::from_millis(2800) && d_wait <= Duration::from_secs(3),
        "{d_wait:?}"
    );
    // Reads have their own bucket: a read booked now is not behind the writes.
    assert!(client.admit(SUB, "d", 1).await.is_ok());

    // d comes back when told: its write is granted and the PUT goes out without queueing again.
    let late = come_back(|| client.admit_write(SUB, "d")).await;
    let started = tokio::time::Instant::now();
    put(late, "vm2").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the booked PUT waited: {:?}",
        started.elapsed()
    );
    // Four writes booked at 1/s with a burst of 1: a's PUT and d's are at least 3 s apart (b's and c's tokens
    // stay spent unused).
    let span = span_of(&emu, "PUT", "/extensions/", 2);
    assert!(span >= Duration::from_millis(2900), "{span:?}");
    emu.shutdown().await;
}

/// Books again while the booking is held, waiting as told (10 s at most).
async fn come_back<F, Fut>(mut book: F) -> AzureClient
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<AzureClient, Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match book().await {
            Ok(c) => return c,
            Err(Error::Held { retry_after, .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(retry_after).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The time from the first to the last of the `n` ARM requests of `method` whose path contains `path_part`.
fn span_of(emu: &Emulator, method: &str, path_part: &str, n: usize) -> Duration {
    let times: Vec<SystemTime> = arm_requests(emu, method, path_part)
        .iter()
        .map(|r| r.time)
        .collect();
    assert_eq!(times.len(), n);
    times[n - 1].duration_since(times[0]).unwrap()
}

// ------------------------------------------------------------------------------------------------------------
// Long-running operations

async fn poll_to_end<T: guest_attestation_operator::azure::LroOutput>(
    client: &AzureClient,
    lro: &guest_attestation_operator::azure::Lro<T>,
) -> Result<(T, u32), Error> {
    for polls in 1..=20 {
        match client.poll_operation(lro).await? {
            LroPoll::Done(v) => return Ok((v, polls)),
            LroPoll::Pending { retry_after, .. } => assert!(retry_after > Duration::ZERO),
        }
    }
    panic!("the operation did not finish in 20 polls");
}

#[tokio::test]
async fn extension_put_and_delete_run_as_operations() {
    let (emu, _azure, client) = setup().await;
    let m = machine_id("vm1");
    let lro = client
        .begin_put_extension(&m, "GuestAttestation", &extension_spec())
        .await
        .unwrap();
    assert!(!lro.finished_at_start());
    assert!(lro.status_url().unwrap().contains("operationstatus"));
    assert_eq!(lro.retry_after(), Duration::from_secs(1));
    // the handle survives a round trip through JSON (a controller may keep it)
    let lro: guest_attestation_operator::azure::Lro<MachineExtension> =
        serde_json::from_str(&serde_json::to_string(&lro).unwrap()).unwrap();
    let (ext, polls) = poll_to_end(&client, &lro).await.unwrap();
    assert!(polls >= 2);
    assert_eq!(
        ext.properties.provisioning_state,
        Some(ProvisioningState::Succeeded)
    );
    assert_eq!(
        ext.properties.extension_type.as_deref(),
        Some("GuestAttestation")
    );
    assert_eq!(
        ext.properties.settings,
        extension_spec().properties.settings
    );
    let got = client
        .get_extension(&m, "GuestAttestation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.properties.provisioning_state,
        Some(ProvisioningState::Succeeded)
    );

    let del = client
        .begin_delete_extension(&m, "GuestAttestation")
        .await
        .unwrap();
    poll_to_end(&client, &del).await.unwrap();
    assert!(
        client
            .get_extension(&m, "GuestAttestation")
            .await
            .unwrap()
            .is_none()
    );
    // deleting what is gone is a finished deletion
    let again = client
        .begin_delete_extension(&m, "GuestAttestation")
        .await
        .unwrap();
    assert!(again.finished_at_start());
    assert_eq!(
        client.poll_operation(&again).await.unwrap(),
        LroPoll::Done(())
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn extension_put_answered_202_without_a_body() {
    let (emu, _azure, client) = setup().await;
    emu.set_lro_config(LroConfig {
        put_style: PutStyle::Accepted,
        ..LroConfig::default()
    });
    let m = machine_id("vm1");
    let lro = client
        .begin_put_extension(&m, "GuestAttestation", &extension_spec())
        .await
        .unwrap();
    let (ext, _) = poll_to_end(&client, &lro).await.unwrap();
    assert_eq!(
        ext.properties.provisioning_state,
        Some(ProvisioningState::Succeeded)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_failed_extension_operation_reports_azures_error() {
    let (emu, _azure, client) = setup().await;
    let m = machine_id("vm1");
    emu.set_extension_behavior(
        &m.to_string(),
        ExtensionBehavior::Fail {
            code: "ExtensionOperationFailed".into(),
            message: "the handler could not start".into(),
        },
    )
    .unwrap();
    let lro = client
        .begin_put_extension(&m, "GuestAttestation", &extension_spec())
        .await
        .unwrap();
    let err = poll_to_end(&client, &lro).await.unwrap_err();
    assert!(matches!(err, Error::OperationFailed { .. }), "{err:?}");
    assert_eq!(err.code(), Some("ExtensionOperationFailed"));
    assert_eq!(err.message(), Some("the handler could not start"));
    assert!(!err.retryable());
    let ext = client
        .get_extension(&m, "GuestAttestation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ext.properties.provisioning_state,
        Some(ProvisioningState::Failed)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_stuck_operation_times_out_on_the_client_side() {
    let (emu, _azure, client) = setup().await;
    let m = machine_id("vm1");
    emu.set_extension_behavior(&m.to_string(), ExtensionBehavior::Stuck)
        .unwrap();
    let lro = client
        .begin_put_extension(&m, "GuestAttestation", &extension_spec())
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            client.poll_operation(&lro).await.unwrap(),
            LroPoll::Pending { .. }
        ));
    }
    let polls_before = emu.requests().len();
    let expired = lro.with_deadline(SystemTime::now() - Duration::from_secs(1));
    let err = client.poll_operation(&expired).await.unwrap_err();
    assert!(matches!(err, Error::OperationTimeout { .. }), "{err:?}");
    assert!(err.retryable());
    assert_eq!(
        emu.requests().len(),
        polls_before,
        "a timed-out poll reached Azure"
    );
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------------------
// Attestation providers and MAA policies

#[tokio::test]
async fn provider_crud_and_unsigned_policies() {
    let (emu, _azure, client) = setup().await;
    let id = provider_id("maa1");
    assert!(client.get_provider(&id).await.unwrap().is_none());
    let created = client
        .put_provider(
            &id,
            &AttestationProviderCreate {
                location: "eastus".into(),
                tags: [("owner".to_owned(), "operator".to_owned())].into(),
                properties: AttestationProviderCreateProperties {
                    public_network_access: Some(Toggle::Enabled),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
    assert!(created.is_ready());
    assert_eq!(created.properties.trust_model, Some(TrustModel::Aad));
    let uri = created.properties.attest_uri.clone().unwrap();
    assert_eq!(uri, emu.attest_uri("maa1"));
    let patched = client
        .patch_provider(
            &id,
            &AttestationProviderPatch {
                tags: Some([("owner".to_owned(), "someone".to_owned())].into()),
                properties: Some(AttestationProviderPatchProperties {
                    tpm_attestation_authentication: Some(Toggle::Disabled),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.tags["owner"], "someone");
    assert_eq!(
        patched.properties.tpm_attestation_authentication,
        Some(Toggle::Disabled)
    );

    let before = client.maa_get_policy(&uri, "AzureGuest").await.unwrap();
    assert!(before.policy.is_some());
    assert!(!before.signed);
    let set = client
        .maa_set_policy(&uri, "AzureGuest", POLICY, None)
        .await
        .unwrap();
    assert_eq!(set.result, Some(PolicyResult::Updated));
    assert_eq!(
        set.token_hash.as_deref(),
        Some("pveaspNJXn1BbCk2ADPH4xhekUS-UQcgOXYXhh9YAmE")
    );
    let now = client.maa_get_policy(&uri, "AzureGuest").await.unwrap();
    assert!(now.matches(POLICY));
    assert_eq!(now.policy.as_deref(), Some(POLICY));
    assert_eq!(emu.policy("maa1", "AzureGuest").unwrap().text, POLICY);
    let reset = client
        .maa_reset_policy(&uri, "AzureGuest", None)
        .await
        .unwrap();
    assert_eq!(reset.result, Some(PolicyResult::Removed));
    assert!(
        !client
            .maa_get_policy(&uri, "AzureGuest")
            .await
            .unwrap()
            .matches(POLICY)
    );

    // invalid policy language is MAA's 400
    let err = client
        .maa_set_policy(&uri, "AzureGuest", "not a policy", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    assert_eq!(
        client.delete_provider(&id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(client.get_provider(&id).await.unwrap().is_none());
    assert_eq!(
        client.delete_provider(&id).await.unwrap(),
        DeleteOutcome::NotFound
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn isolated_providers_take_signed_policies() {
    let (emu, _azure, client) = setup().await;
    let signer = PolicySigner::from_pem(SIGNER_KEY.as_bytes(), SIGNER_CERT.as_bytes()).unwrap();
    let id = provider_id("maaiso");
    let p = client
        .put_provider(
            &id,
            &AttestationProviderCreate {
                location: "eastus".into(),
                tags: BTreeMap::default(),
                properties: AttestationProviderCreateProperties {
                    policy_signing_certificates: Some(signer.certificates()),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(p.properties.trust_model, Some(TrustModel::Isolated));
    let uri = p.properties.attest_uri.unwrap();
    let err = client
        .maa_set_policy(&uri, "Tpm", POLICY, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    let set = client
        .maa_set_policy(&uri, "Tpm", POLICY, Some(&signer))
        .await
        .unwrap();
    assert!(set.signed);
    let got = client.maa_get_policy(&uri, "Tpm").await.unwrap();
    assert!(got.signed);
    assert!(got.matches(POLICY));
    let reset = client
        .maa_reset_policy(&uri, "Tpm", Some(&signer))
        .await
        .unwrap();
    assert_eq!(reset.result, Some(PolicyResult::Removed));
    emu.shutdown().await;
}

// ------------------------------------------------------------------------------------------------------------
// Metrics and logs

#[tokio::test]
async fn metrics_see_every_attempt() {
    let emu = emulator().await;
    seed(&emu, "vm1");
    let metrics = Arc::new(Recorder::default());
    let azure = Azure::with_metrics(config(&emu), metrics.clone()).unwrap();
    let client = azure.client_for(sp());
    emu.add_fault(
        Fault::on(
            Some("GET"),
            "/clusters/",
            FaultAction::status(500, "InternalServerError", "x"),
        )
        .times(1),
    )
    .unwrap();
    client.get_cluster(&cluster_id()).await.unwrap();
    client.get_vm_instance(&machine_id("ghost")).await.unwrap();
    let records = metrics.records.lock().unwrap().clone();
    let seen: Vec<_> = records
        .iter()
        .map(|r| (r.service, r.operation, r.status, r.attempt))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Service::Entra, "get_token", Some(200), 1),
            (Service::Arm, "get_cluster", Some(500), 1),
            (Service::Arm, "get_cluster", Some(200), 2),
            (Service::Arm, "get_vm_instance", Some(404), 1),
        ]
    );
    assert!(records.iter().all(|r| r.latency > Duration::ZERO));
    emu.shutdown().await;
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every flow that handles a secret or a token, logged at TRACE into a buffer that must hold none of them.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_or_token_reaches_the_logs() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);

    let emu = emulator().await;
    seed(&emu, "vm1");
    emu.add_federated_client(TENANT, WI_CLIENT);
    let mi = emu.enable_managed_identity(None);
    let wi_token = assertion(SUBJECT);
    let file = temp_path("token");
    write_file(&file, &wi_token);
    let azure = Azure::new(config(&emu)).unwrap();
    let direct_token = emu
        .mint_token(TENANT, CLIENT, "https://management.azure.com", 3600)
        .unwrap();

    let clients = [
        azure.client_for(sp()),
        azure.client_for(Credentials::WorkloadIdentity {
            tenant_id: TENANT.into(),
            client_id: WI_CLIENT.into(),
            token_file: file.clone(),
            authority_host: None,
        }),
        azure.client_for(Credentials::ManagedIdentity { client_id: None }),
    ];
    for client in &clients {
        tracing::info!(client = ?client, credentials = ?client.credentials(), "using");
        client.get_cluster(&cluster_id()).await.unwrap();
        let lro = client
            .begin_put_extension(&machine_id("vm1"), "GuestAttestation", &extension_spec())
            .await;
        tracing::info!(?lro, "started");
    }
    // errors: a wrong secret, a rejected token, a malformed token response
    let bad = azure.client_for(Credentials::client_secret(
        TENANT,
        CLIENT,
        Secret::new(SECRET.to_uppercase()),
    ));
    let e1 = bad.get_cluster(&cluster_id()).await.unwrap_err();
    emu.add_fault(Fault::on(
        None,
        "/clusters/",
        FaultAction::status(401, "InvalidAuthenticationToken", "x"),
    ))
    .unwrap();
    let e2 = clients[0].get_cluster(&cluster_id()).await.unwrap_err();
    emu.clear_faults();
    emu.add_fault(Fault::on(None, "/oauth2/v2.0/token", FaultAction::Truncate).times(1))
        .unwrap();
    let e3 = Azure::new(config(&emu))
        .unwrap()
        .client_for(sp())
        .get_cluster(&cluster_id())
        .await
        .unwrap_err();
    for e in [&e1, &e2, &e3] {
        tracing::error!(error = %e, debug = ?e, "azure call failed");
    }
    drop(guard);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("azure request"),
        "nothing was logged:\n{logs}"
    );
    assert!(logs.contains(&mi) || logs.contains("msi/system"));
    for (what, needle) in [
        ("client secret", SECRET.to_owned()),
        ("wrong client secret", SECRET.to_uppercase()),
        ("federated token", wi_token.clone()),
        (
            "federated token signature part",
            wi_token.rsplit('.').next().unwrap().to_owned(),
        ),
        (
            "an Entra token",
            direct_token.split('.').nth(2).unwrap().to_owned(),
        ),
        ("a bearer header", "Bearer ".to_owned()),
        ("a JWT", "eyJ0eXAi".to_owned()),
        ("a JWT", "eyJhbGciOiJSUzI1".to_owned()),
    ] {
        assert!(!logs.contains(&needle), "{what} found in the logs");
    }
    // the emulator's request log holds no secret either
    let log = format!("{:?}", emu.requests());
    assert!(!log.contains(SECRET) && !log.contains(&wi_token));
    let _ = std::fs::remove_file(&file);
    emu.shutdown().await;
}

/// The port trait is implemented by the client (controllers are generic over it).
#[tokio::test]
async fn the_client_implements_the_port() {
    async fn through_port<A: AzureApi>(api: &A, m: &MachineId) -> bool {
        api.get_machine(m).await.unwrap().is_some()
    }
    let (emu, azure, client) = setup().await;
    assert!(through_port(&client, &machine_id("vm1")).await);
    // the factory hands out the cached client for equal credentials, a new one after rotation
    let again = azure.client_for(sp());
    assert_eq!(format!("{again:?}"), format!("{client:?}"));
    again.get_cluster(&cluster_id()).await.unwrap();
    assert_eq!(
        token_requests(&emu),
        1,
        "the cached client's token was not reused"
    );
    emu.shutdown().await;
}
