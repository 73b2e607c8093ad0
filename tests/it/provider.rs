//! The AttestationProvider controller against the real API server and the Azure emulator.

use std::{sync::Arc, time::Duration};

use azure_emulator::{
    ClusterSpec, Emulator, Fault, FaultAction, IsolatedVmAttestationConfiguration, ProviderSpec,
    RequestRecord,
};
use guest_attestation_operator::{
    azure::{
        AttestationProviderPatch, AttestationProviderPatchProperties, Azure, Credentials,
        PolicySigner, ProviderId, Toggle, policy_token_hash, unsigned_policy_jws,
    },
    controller::Settings,
    crd::{AttestationProvider, ConditionStatus, GuestAttestationExtension},
    provider::{FINALIZER, ProviderContext, policy::sha256_hex, run},
};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Secret},
    events::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use tokio::sync::oneshot;

use crate::support::{self, azure as az};

const SIGNER_KEY: &str = include_str!("../../src/azure/testdata/policy-signer.key.pem");
const SIGNER_CERT: &str = include_str!("../../src/azure/testdata/policy-signer.cert.pem");

/// The declared policy of most tests (a TPM-style policy, CRLF-free).
const POLICY_A: &str = "version=1.0;\nauthorizationrules {\n    => permit();\n};\nissuancerules {\n    [type==\"secureBootEnabled\", value==true] => issue(type=\"PlatformAttested\", value=true);\n};\n";

/// Another valid policy (a second root of trust, say).
const POLICY_B: &str = "version=1.0;\nauthorizationrules {\n    => permit();\n};\nissuancerules {\n    [type==\"secureBootEnabled\", value==true] && [type==\"vbsEnabled\", value==true] => issue(type=\"PlatformAttested\", value=true);\n};\n";

/// One controller, scoped to one namespace, for one test; stops when dropped.
struct Harness {
    client: Client,
    ns: String,
    emu: Emulator,
    _stop: oneshot::Sender<()>,
}

async fn harness(prefix: &str) -> Harness {
    harness_with(prefix, az::fast_settings()).await
}

/// `settings` decide the drift-check interval: the fast ones check every ~5 s.
async fn harness_with(prefix: &str, settings: Settings) -> Harness {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, prefix).await;
    az::credentials_secret(&client, &ns).await;
    let emu = az::emulator().await;
    let (ctx, _metrics) = az::context(client.clone(), &emu, settings, "attestationprovider");
    let pctx: Arc<ProviderContext<Azure>> = Arc::new(ProviderContext::new(ctx));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(pctx, Some(ns.clone()), async move {
        let _ = stopped.await;
    }));
    Harness {
        client,
        ns,
        emu,
        _stop: stop,
    }
}

fn provider_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg-maa/providers/Microsoft.Attestation/attestationProviders/{name}",
        az::SUB
    )
}

fn cluster_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg-hci/providers/Microsoft.AzureStackHCI/clusters/{name}",
        az::SUB
    )
}

fn inline_policy(text: &str) -> serde_json::Value {
    serde_json::json!({"attestationType": "AzureGuest", "text": text})
}

impl Harness {
    fn api(&self) -> Api<AttestationProvider> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A provider that exists in Azure already (as Azure Local creates it).
    fn existing(&self, name: &str) -> String {
        let id = provider_id(name);
        self.emu
            .put_attestation_provider(&ProviderSpec {
                id: id.clone(),
                location: "eastus".into(),
                tags: std::collections::BTreeMap::default(),
                policy_signing_certificates: Vec::new(),
            })
            .unwrap();
        id
    }

    async fn create(&self, name: &str, spec: serde_json::Value) {
        let mut spec = spec;
        spec["credentialsRef"] = serde_json::json!({"name": "azure-sp"});
        let obj: AttestationProvider = serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationProvider",
            "metadata": {"name": name},
            "spec": spec
        }))
        .unwrap();
        self.api()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }

    /// Waits until the object satisfies `check`, returning it.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AttestationProvider) -> bool,
    ) -> AttestationProvider {
        support::wait_object(&self.api(), name, what, Duration::from_secs(30), check).await
    }

    async fn wait_gone(&self, name: &str) {
        support::wait_for(
            &format!("{name} to be deleted"),
            Duration::from_secs(30),
            || async { self.api().get_opt(name).await.unwrap().is_none() },
        )
        .await;
    }

    async fn events(&self, name: &str) -> Vec<Event> {
        support::events(&self.client, &self.ns, name).await
    }

    async fn wait_event(&self, name: &str, type_: &str, reason: &str) -> Event {
        let timeout = Duration::from_secs(30);
        support::wait_event(&self.client, &self.ns, name, type_, reason, timeout).await
    }

    /// Requests that wrote to Azure: anything but a GET, except token requests.
    fn writes(&self) -> Vec<RequestRecord> {
        self.emu
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET" && !r.path.contains("/oauth2/"))
            .collect()
    }

    /// MAA policy requests of `method` on provider `name`.
    fn policy_calls(&self, name: &str, method: &str) -> usize {
        self.emu
            .requests()
            .iter()
            .filter(|r| {
                r.method == method && r.path.starts_with(&format!("/attest/{name}/policies/"))
            })
            .count()
    }

    /// Waits until the controller has read provider `name`'s policy `n` more times: that many
    /// drift checks have run.
    async fn wait_drift_checks(&self, name: &str, n: usize) {
        let before = self.policy_calls(name, "GET");
        support::wait_for(
            &format!("{n} more drift checks"),
            Duration::from_secs(30),
            || async { self.policy_calls(name, "GET") >= before + n },
        )
        .await;
    }

    fn effective_policy(&self, name: &str) -> String {
        self.emu.policy(name, "AzureGuest").unwrap().text
    }

    async fn wait_effective_policy(&self, name: &str, text: &str) {
        support::wait_for(
            "the declared policy in Azure",
            Duration::from_secs(30),
            || async { self.effective_policy(name) == text },
        )
        .await;
    }

    async fn secret(&self, name: &str, type_: Option<&str>, data: serde_json::Value) {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "type": type_, "stringData": data
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
}

fn condition(o: &AttestationProvider, type_: &str) -> Option<(ConditionStatus, String, String)> {
    o.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

fn has(o: &AttestationProvider, type_: &str, status: ConditionStatus, reason: &str) -> bool {
    condition(o, type_).is_some_and(|(s, r, _)| s == status && r == reason)
}

fn ready(o: &AttestationProvider) -> bool {
    has(o, "Ready", ConditionStatus::True, "Reconciled")
}

fn policy_state(o: &AttestationProvider) -> Option<&str> {
    o.status.as_ref()?.policy_state.as_deref()
}

#[tokio::test]
async fn adopts_an_existing_provider_and_sets_its_policy_once() {
    let h = harness("atp-adopt").await;
    let id = h.existing("maaadopt");
    h.create(
        "adopt",
        serde_json::json!({"resourceId": id, "policy": inline_policy(POLICY_A)}),
    )
    .await;
    let o = h.wait("adopt", "Ready", ready).await;
    let s = o.status.as_ref().unwrap();
    assert!(o.finalizers().iter().any(|f| f == FINALIZER));
    assert_eq!(s.resource_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        s.attest_uri.as_deref(),
        Some(h.emu.attest_uri("maaadopt").as_str())
    );
    assert_eq!(s.trust_model.as_deref(), Some("AAD"));
    assert_eq!(s.provider_status.as_deref(), Some("Ready"));
    assert_eq!(s.public_network_access.as_deref(), Some("Enabled"));
    assert_eq!(s.policy_state.as_deref(), Some("InSync"));
    assert_eq!(
        s.applied_policy_hash.as_deref(),
        Some(sha256_hex(POLICY_A).as_str())
    );
    // the token hash MAA returned is the hash of the exact JWS sent (unsigned on an AAD provider)
    assert_eq!(
        s.policy_token_hash.as_deref(),
        Some(policy_token_hash(&unsigned_policy_jws(POLICY_A)).as_str())
    );
    assert!(s.last_policy_update_time.is_some());
    assert_eq!(s.observed_generation, o.metadata.generation);
    for c in &s.conditions {
        assert_eq!(c.observed_generation, o.metadata.generation, "{}", c.type_);
    }
    assert!(has(
        &o,
        "EndpointReady",
        ConditionStatus::True,
        "ProviderReady"
    ));
    assert!(has(&o, "PolicyInSync", ConditionStatus::True, "InSync"));
    assert!(has(
        &o,
        "PublicNetworkAccess",
        ConditionStatus::True,
        "Enabled"
    ));
    assert_eq!(h.effective_policy("maaadopt"), POLICY_A);
    // the default policy was a drift: reported, then set
    h.wait_event("adopt", "Warning", "PolicyDrift").await;
    h.wait_event("adopt", "Normal", "PolicyApplied").await;
    // adopting creates nothing in ARM: the provider was only read
    assert!(
        h.writes().iter().all(|r| r.path.contains("/policies/")),
        "only the policy was written: {:#?}",
        h.writes()
    );
    // Azure matches now: later drift checks send no policy PUT and write no status
    let o = h.api().get("adopt").await.unwrap();
    let puts = h.policy_calls("maaadopt", "PUT");
    assert_eq!(puts, 1);
    h.wait_drift_checks("maaadopt", 3).await;
    assert_eq!(
        h.policy_calls("maaadopt", "PUT"),
        1,
        "no PUT while Azure matches"
    );
    let later = h.api().get("adopt").await.unwrap();
    assert_eq!(
        later.resource_version(),
        o.resource_version(),
        "no status write while nothing changed"
    );
}

#[tokio::test]
async fn a_policy_already_in_azure_is_adopted_without_any_write() {
    let h = harness("atp-insync").await;
    let id = h.existing("maainsync");
    // the same text with CRLF line endings and trailing blanks: equal after normalisation
    h.emu
        .set_policy("maainsync", "AzureGuest", &POLICY_A.replace('\n', "  \r\n"))
        .unwrap();
    h.create(
        "insync",
        serde_json::json!({"resourceId": id, "policy": inline_policy(POLICY_A)}),
    )
    .await;
    let o = h.wait("insync", "Ready", ready).await;
    let s = o.status.unwrap();
    assert_eq!(s.policy_state.as_deref(), Some("InSync"));
    assert_eq!(
        s.applied_policy_hash.as_deref(),
        Some(sha256_hex(POLICY_A).as_str())
    );
    // the hash of the policy token MAA holds
    assert_eq!(
        s.policy_token_hash.as_deref(),
        Some(policy_token_hash(&unsigned_policy_jws(&POLICY_A.replace('\n', "  \r\n"))).as_str())
    );
    assert_eq!(s.last_policy_update_time, None, "the operator set nothing");
    h.wait_drift_checks("maainsync", 2).await;
    assert!(
        h.writes().is_empty(),
        "no write to Azure: {:#?}",
        h.writes()
    );
    assert!(
        !h.events("insync")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("PolicyDrift")),
        "no drift reported"
    );
}

#[tokio::test]
async fn creates_the_provider_a_cluster_names_when_it_is_missing() {
    let h = harness("atp-create").await;
    let id = provider_id("maacreated");
    let cluster = cluster_id("hci1");
    h.emu
        .put_cluster(ClusterSpec {
            id: cluster.clone(),
            location: "westeurope".into(),
            aad_tenant_id: az::TENANT.into(),
            aad_client_id: None,
            isolated_vm_attestation_configuration: Some(IsolatedVmAttestationConfiguration {
                attestation_resource_id: id.clone(),
                relying_party_service_endpoint: "https://dp.stackhci.azure.com/westeurope".into(),
                attestation_service_endpoint: h.emu.attest_uri("maacreated"),
            }),
        })
        .unwrap();
    assert!(h.emu.attestation_provider(&id).is_none());
    h.create(
        "created",
        serde_json::json!({
            "clusterRef": {"resourceId": cluster},
            "tags": {"owner": "platform"},
            "policy": inline_policy(POLICY_A)
        }),
    )
    .await;
    let o = h.wait("created", "Ready", ready).await;
    let s = o.status.unwrap();
    assert_eq!(s.resource_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        s.attest_uri.as_deref(),
        Some(h.emu.attest_uri("maacreated").as_str())
    );
    let azure = h.emu.attestation_provider(&id).expect("created in Azure");
    assert_eq!(azure["location"], "westeurope", "the cluster's region");
    assert_eq!(azure["tags"]["owner"], "platform");
    assert_eq!(azure["properties"]["publicNetworkAccess"], "Enabled");
    assert_eq!(h.effective_policy("maacreated"), POLICY_A);
    let e = h.wait_event("created", "Normal", "Recreated").await;
    assert!(e.note.unwrap().contains("was created in westeurope"));
}

#[tokio::test]
async fn a_provider_deleted_by_accident_is_recreated_with_its_policy() {
    let h = harness("atp-repair").await;
    let id = h.existing("maarepair");
    h.create(
        "repair",
        serde_json::json!({"resourceId": id, "location": "eastus", "policy": inline_policy(POLICY_A)}),
    )
    .await;
    h.wait("repair", "Ready", ready).await;
    assert!(h.emu.delete_attestation_provider(&id));
    // found at the next drift check: recreated, and the policy set again on the new provider
    let e = h.wait_event("repair", "Normal", "Recreated").await;
    assert!(e.note.unwrap().contains("had disappeared"));
    assert!(h.emu.attestation_provider(&id).is_some());
    h.wait_effective_policy("maarepair", POLICY_A).await;
    h.wait("repair", "Ready and in sync", |o| {
        ready(o) && policy_state(o) == Some("InSync")
    })
    .await;

    // recreateIfMissing false: the loss is reported, not repaired
    h.patch_spec("repair", serde_json::json!({"recreateIfMissing": false}))
        .await;
    h.wait("repair", "the new generation observed", |o| {
        o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
    })
    .await;
    assert!(h.emu.delete_attestation_provider(&id));
    let o = h
        .wait("repair", "ProviderNotFound", |o| {
            has(
                o,
                "EndpointReady",
                ConditionStatus::False,
                "ProviderNotFound",
            )
        })
        .await;
    assert!(
        condition(&o, "EndpointReady")
            .unwrap()
            .2
            .contains("recreateIfMissing is false")
    );
    assert_eq!(o.status.as_ref().unwrap().attest_uri, None);
    assert!(has(&o, "Ready", ConditionStatus::False, "ProviderNotFound"));
    assert!(h.emu.attestation_provider(&id).is_none());
    h.wait_event("repair", "Warning", "ProviderNotFound").await;
}

#[tokio::test]
async fn policy_drift_is_repaired_under_manage() {
    let h = harness("atp-drift").await;
    let id = h.existing("maadrift");
    h.create(
        "drift",
        serde_json::json!({"resourceId": id, "policy": inline_policy(POLICY_A)}),
    )
    .await;
    h.wait("drift", "Ready", ready).await;
    let drift_events = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("PolicyDrift"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum::<i32>()
    };
    let before = drift_events(&h.events("drift").await);
    // someone changes the policy outside the operator
    h.emu
        .set_policy("maadrift", "AzureGuest", POLICY_B)
        .unwrap();
    h.wait_effective_policy("maadrift", POLICY_A).await;
    assert_eq!(h.policy_calls("maadrift", "PUT"), 2);
    support::wait_for(
        "a second PolicyDrift Event",
        Duration::from_secs(30),
        || async { drift_events(&h.events("drift").await) > before },
    )
    .await;
    h.wait("drift", "in sync again", |o| {
        ready(o) && policy_state(o) == Some("InSync")
    })
    .await;
}

#[tokio::test]
async fn observe_reports_drift_and_a_missing_provider_without_writing() {
    let h = harness("atp-observe").await;
    let id = h.existing("maaobserve");
    h.emu
        .set_policy("maaobserve", "AzureGuest", POLICY_B)
        .unwrap();
    h.create(
        "observed",
        serde_json::json!({
            "resourceId": id, "managementPolicy": "Observe", "tags": {"owner": "ops"},
            "publicNetworkAccess": "Disabled", "policy": inline_policy(POLICY_A)
        }),
    )
    .await;
    let missing = provider_id("maanothere");
    h.create(
        "missing",
        serde_json::json!({"resourceId": missing, "location": "eastus", "managementPolicy": "Observe"}),
    )
    .await;
    let o = h
        .wait("observed", "Drifted", |o| {
            policy_state(o) == Some("Drifted")
        })
        .await;
    assert!(has(
        &o,
        "PolicyInSync",
        ConditionStatus::False,
        "PolicyDrifted"
    ));
    assert!(has(
        &o,
        "EndpointReady",
        ConditionStatus::True,
        "ProviderReady"
    ));
    assert!(has(&o, "Ready", ConditionStatus::False, "PolicyDrifted"));
    // Observe does not bring publicNetworkAccess in line either, and says so
    let access = condition(&o, "PublicNetworkAccess").unwrap();
    assert_eq!(access.0, ConditionStatus::True, "Azure has it Enabled");
    let e = h.wait_event("observed", "Warning", "PolicyDrift").await;
    assert!(e.note.unwrap().contains("Observe leaves it"));
    let m = h
        .wait("missing", "ProviderNotFound", |o| {
            has(
                o,
                "EndpointReady",
                ConditionStatus::False,
                "ProviderNotFound",
            )
        })
        .await;
    assert!(
        condition(&m, "EndpointReady")
            .unwrap()
            .2
            .contains("Observe never creates it")
    );
    // several drift checks later: still nothing written to Azure, one Event for one drift
    h.wait_drift_checks("maaobserve", 3).await;
    assert!(
        h.writes().is_empty(),
        "Observe wrote to Azure: {:#?}",
        h.writes()
    );
    assert_eq!(h.effective_policy("maaobserve"), POLICY_B);
    assert!(h.emu.attestation_provider(&missing).is_none());
    let drift: Vec<Event> = h
        .events("observed")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("PolicyDrift"))
        .collect();
    assert_eq!(drift.len(), 1);
    assert!(drift[0].series.is_none(), "reported once: {drift:#?}");
}

#[tokio::test]
async fn isolated_providers_get_a_signed_policy() {
    let h = harness("atp-signed").await;
    h.secret(
        "policy-signer",
        Some("kubernetes.io/tls"),
        serde_json::json!({"tls.key": SIGNER_KEY, "tls.crt": SIGNER_CERT}),
    )
    .await;
    h.secret(
        "signing-certs",
        None,
        serde_json::json!({"certs.pem": SIGNER_CERT}),
    )
    .await;
    // created by the operator as Isolated, with the certificates of the Secret
    let id = provider_id("maaisolated");
    h.create(
        "isolated",
        serde_json::json!({
            "resourceId": id, "location": "eastus",
            "policySigningCertificates": {"secretRef": {"name": "signing-certs", "key": "certs.pem"}},
            "policy": {"attestationType": "AzureGuest", "text": POLICY_A, "signingKeySecretRef": {"name": "policy-signer"}}
        }),
    )
    .await;
    let o = h.wait("isolated", "Ready", ready).await;
    assert_eq!(
        o.status.as_ref().unwrap().trust_model.as_deref(),
        Some("Isolated")
    );
    let stored = h.emu.policy("maaisolated", "AzureGuest").unwrap();
    assert!(stored.signed, "the policy JWS is signed");
    assert_eq!(stored.text, POLICY_A);
    let signer = PolicySigner::from_pem(SIGNER_KEY.as_bytes(), SIGNER_CERT.as_bytes()).unwrap();
    assert_eq!(
        o.status.unwrap().policy_token_hash.as_deref(),
        Some(
            policy_token_hash(
                &guest_attestation_operator::azure::policy_jws(POLICY_A, Some(&signer)).unwrap()
            )
            .as_str()
        )
    );
    // an Isolated provider adopted without a signing key: the drift is reported, nothing is sent
    let adopted = provider_id("maanokey");
    h.emu
        .put_attestation_provider(&ProviderSpec {
            id: adopted.clone(),
            location: "eastus".into(),
            tags: std::collections::BTreeMap::default(),
            policy_signing_certificates: signer.certificates().keys[0].x5c.clone(),
        })
        .unwrap();
    h.create(
        "nokey",
        serde_json::json!({"resourceId": adopted, "policy": inline_policy(POLICY_A)}),
    )
    .await;
    let o = h
        .wait("nokey", "SigningKeyRequired", |o| {
            has(
                o,
                "PolicyInSync",
                ConditionStatus::False,
                "SigningKeyRequired",
            )
        })
        .await;
    assert_eq!(policy_state(&o), Some("Drifted"));
    assert_eq!(h.policy_calls("maanokey", "PUT"), 0);
    h.wait_event("nokey", "Warning", "SigningKeyRequired").await;
}

#[tokio::test]
async fn a_config_map_change_is_rolled_out_at_once() {
    // Drift checks every ~10 minutes: only the ConfigMap watch can roll the change out in time.
    let h = harness_with("atp-configmap", Settings::default()).await;
    let id = h.existing("maaconfigmap");
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "maa-policy"}, "data": {"policy.txt": POLICY_A}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    h.create(
        "fromcm",
        serde_json::json!({
            "resourceId": id,
            "policy": {"attestationType": "AzureGuest", "configMapKeyRef": {"name": "maa-policy", "key": "policy.txt"}}
        }),
    )
    .await;
    h.wait("fromcm", "Ready", ready).await;
    assert_eq!(h.effective_policy("maaconfigmap"), POLICY_A);
    cms.patch(
        "maa-policy",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"policy.txt": POLICY_B}})),
    )
    .await
    .unwrap();
    h.wait_effective_policy("maaconfigmap", POLICY_B).await;
    let o = h
        .wait("fromcm", "the new hash", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.applied_policy_hash.clone())
                == Some(sha256_hex(POLICY_B))
        })
        .await;
    assert!(ready(&o));
    // a missing key is reported, and nothing is sent
    cms.patch(
        "maa-policy",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(
                serde_json::json!([{"op": "remove", "path": "/data/policy.txt"}]),
            )
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    let o = h
        .wait("fromcm", "PolicySourceNotFound", |o| {
            has(
                o,
                "PolicyInSync",
                ConditionStatus::False,
                "PolicySourceNotFound",
            )
        })
        .await;
    assert!(
        condition(&o, "PolicyInSync")
            .unwrap()
            .2
            .contains("has no key policy.txt")
    );
    assert_eq!(h.policy_calls("maaconfigmap", "PUT"), 2);
}

#[tokio::test]
async fn delete_retains_or_deletes_the_provider_as_declared() {
    let h = harness("atp-delete").await;
    let kept = h.existing("maakept");
    let gone = h.existing("maagone");
    h.create("kept", serde_json::json!({"resourceId": kept}))
        .await;
    h.create(
        "gone",
        serde_json::json!({"resourceId": gone, "deletionPolicy": "Delete"}),
    )
    .await;
    h.wait("kept", "Ready", ready).await;
    let o = h.wait("gone", "Ready", ready).await;
    assert!(has(&o, "PolicyInSync", ConditionStatus::True, "NotManaged"));
    for name in ["kept", "gone"] {
        h.api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    h.wait_gone("kept").await;
    h.wait_gone("gone").await;
    assert!(
        h.emu.attestation_provider(&kept).is_some(),
        "Retain (default) leaves Azure"
    );
    assert!(
        h.emu.attestation_provider(&gone).is_none(),
        "Delete deletes the provider"
    );
    let deletes: Vec<RequestRecord> = h
        .writes()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(deletes[0].path.ends_with("/maagone"));
    h.wait_event("kept", "Normal", "ProviderRetained").await;
    h.wait_event("gone", "Normal", "ProviderDeleted").await;
}

#[tokio::test]
async fn delete_waits_while_an_extension_references_the_provider() {
    let h = harness("atp-held").await;
    let id = h.existing("maaheld");
    h.create(
        "held",
        serde_json::json!({"resourceId": id, "deletionPolicy": "Delete"}),
    )
    .await;
    h.wait("held", "Ready", ready).await;
    let gaes: Api<GuestAttestationExtension> = Api::namespaced(h.client.clone(), &h.ns);
    for name in ["vm-b", "vm-a"] {
        let gae: GuestAttestationExtension = serde_json::from_value(serde_json::json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
            "metadata": {"name": name},
            "spec": {"machineId": az::machine_id("rg1", name), "providerRef": {"name": "held"}}
        }))
        .unwrap();
        gaes.create(&PostParams::default(), &gae).await.unwrap();
    }
    h.api()
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let o = h
        .wait("held", "DeletionBlocked", |o| {
            has(o, "Ready", ConditionStatus::False, "DeletionBlocked")
        })
        .await;
    let message = condition(&o, "Ready").unwrap().2;
    assert!(message.contains("vm-a, vm-b"), "{message}");
    assert!(o.metadata.deletion_timestamp.is_some());
    h.wait_event("held", "Warning", "DeletionBlocked").await;
    assert!(h.emu.attestation_provider(&id).is_some());
    gaes.delete("vm-a", &DeleteParams::default()).await.unwrap();
    let o = h
        .wait("held", "only vm-b left", |o| {
            condition(o, "Ready").is_some_and(|c| !c.2.contains("vm-a"))
        })
        .await;
    assert!(condition(&o, "Ready").unwrap().2.contains("vm-b"));
    assert!(h.emu.attestation_provider(&id).is_some());
    // the last holder goes: the provider is deleted and the finalizer released
    gaes.delete("vm-b", &DeleteParams::default()).await.unwrap();
    h.wait_gone("held").await;
    assert!(h.emu.attestation_provider(&id).is_none());
}

#[tokio::test]
async fn a_policy_maa_rejects_ends_in_a_clear_condition() {
    let h = harness("atp-rejected").await;
    let id = h.existing("maarejected");
    // Structurally sound, but MAA wants authorizationrules before issuancerules.
    let reversed = "version=1.0;\nissuancerules { };\nauthorizationrules { => permit(); };\n";
    h.create(
        "rejected",
        serde_json::json!({"resourceId": id, "policy": inline_policy(reversed)}),
    )
    .await;
    let o = h
        .wait("rejected", "PolicyRejected", |o| {
            has(o, "PolicyInSync", ConditionStatus::False, "PolicyRejected")
        })
        .await;
    let message = condition(&o, "PolicyInSync").unwrap().2;
    assert!(
        message.starts_with("MAA rejected the declared policy: "),
        "{message}"
    );
    assert!(
        message.contains("authorizationrules must come before issuancerules"),
        "{message}"
    );
    assert_eq!(policy_state(&o), Some("Invalid"));
    assert!(has(&o, "Ready", ConditionStatus::False, "PolicyRejected"));
    assert!(has(
        &o,
        "EndpointReady",
        ConditionStatus::True,
        "ProviderReady"
    ));
    h.wait_event("rejected", "Warning", "PolicyRejected").await;
    // the same text is not sent again
    h.wait_drift_checks("maarejected", 2).await;
    assert_eq!(h.policy_calls("maarejected", "PUT"), 1);
    // a corrected text is
    h.patch_spec(
        "rejected",
        serde_json::json!({"policy": inline_policy(POLICY_A)}),
    )
    .await;
    h.wait_effective_policy("maarejected", POLICY_A).await;
    h.wait("rejected", "Ready", ready).await;
}

#[tokio::test]
async fn a_structural_typo_never_reaches_azure() {
    let h = harness("atp-typo").await;
    let id = h.existing("maatypo");
    // line 6 lacks the ';' that ends its rule
    let typo = POLICY_A.replace("value=true);\n};", "value=true)\n};");
    h.create(
        "typo",
        serde_json::json!({"resourceId": id, "policy": inline_policy(&typo)}),
    )
    .await;
    let o = h
        .wait("typo", "PolicyInvalid", |o| {
            has(o, "PolicyInSync", ConditionStatus::False, "PolicyInvalid")
        })
        .await;
    let message = condition(&o, "PolicyInSync").unwrap().2;
    assert!(
        message.contains("line 6: the rule starting here is not terminated by ';'"),
        "{message}"
    );
    assert!(message.contains("nothing was sent to Azure"), "{message}");
    assert_eq!(policy_state(&o), Some("Invalid"));
    assert!(has(&o, "Ready", ConditionStatus::False, "PolicyInvalid"));
    let e = h.wait_event("typo", "Warning", "PolicyInvalid").await;
    assert!(e.note.unwrap().contains("line 6"));
    // not even read: the check comes first
    assert_eq!(h.policy_calls("maatypo", "GET"), 0);
    assert_eq!(h.policy_calls("maatypo", "PUT"), 0);
    h.patch_spec(
        "typo",
        serde_json::json!({"policy": inline_policy(POLICY_A)}),
    )
    .await;
    h.wait("typo", "Ready", ready).await;
    assert_eq!(h.effective_policy("maatypo"), POLICY_A);
}

#[tokio::test]
async fn public_network_access_disabled_is_a_warning() {
    let h = harness("atp-private").await;
    let private = provider_id("maaprivate");
    h.create(
        "private",
        serde_json::json!({"resourceId": private, "location": "eastus", "publicNetworkAccess": "Disabled"}),
    )
    .await;
    let o = h
        .wait("private", "the warning", |o| {
            has(
                o,
                "PublicNetworkAccess",
                ConditionStatus::False,
                "PublicNetworkAccessDisabled",
            )
        })
        .await;
    let message = condition(&o, "PublicNetworkAccess").unwrap().2;
    assert!(
        message.contains("guest attestation needs outbound access"),
        "{message}"
    );
    let o = h.wait("private", "Ready", ready).await;
    assert_eq!(
        o.status.unwrap().public_network_access.as_deref(),
        Some("Disabled"),
        "honoured as declared"
    );
    h.wait_event("private", "Warning", "PublicNetworkAccessDisabled")
        .await;
    assert_eq!(
        h.emu.attestation_provider(&private).unwrap()["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    // an adopted provider with access Disabled while the spec says Enabled (the default) is
    // brought in line under Manage
    let id = h.existing("maaopened");
    let client =
        Azure::new(az::azure_config(&h.emu))
            .unwrap()
            .client_for(Credentials::ClientSecret {
                tenant_id: az::TENANT.into(),
                client_id: az::CLIENT_ID.into(),
                client_secret: guest_attestation_operator::azure::Secret::new(az::CLIENT_SECRET),
                authority_host: None,
            });
    client
        .patch_provider(
            &ProviderId::parse(&id).unwrap(),
            &AttestationProviderPatch {
                tags: None,
                properties: Some(AttestationProviderPatchProperties {
                    public_network_access: Some(Toggle::Disabled),
                    tpm_attestation_authentication: None,
                }),
            },
        )
        .await
        .unwrap();
    h.create("opened", serde_json::json!({"resourceId": id}))
        .await;
    let o = h.wait("opened", "Ready", ready).await;
    assert!(has(
        &o,
        "PublicNetworkAccess",
        ConditionStatus::True,
        "Enabled"
    ));
    assert_eq!(
        h.emu.attestation_provider(&id).unwrap()["properties"]["publicNetworkAccess"],
        "Enabled"
    );
    let e = h.wait_event("opened", "Normal", "ProviderUpdated").await;
    assert!(e.note.unwrap().contains("publicNetworkAccess"));
}

#[tokio::test]
async fn azure_failures_are_reported_then_retried() {
    let h = harness("atp-flaky").await;
    let id = h.existing("maaflaky");
    // MAA answers 503 until the fault is removed: reported, then retried with backoff.
    let fault = h
        .emu
        .add_fault(Fault::on(
            Some("GET"),
            "/attest/maaflaky/policies/",
            FaultAction::status(503, "ServiceUnavailable", "try later"),
        ))
        .unwrap();
    h.create(
        "flaky",
        serde_json::json!({"resourceId": id, "policy": inline_policy(POLICY_A)}),
    )
    .await;
    let o = h
        .wait("flaky", "the failure reported", |o| {
            has(
                o,
                "PolicyInSync",
                ConditionStatus::Unknown,
                "AzureUnavailable",
            )
        })
        .await;
    assert!(has(&o, "Ready", ConditionStatus::False, "AzureUnavailable"));
    assert!(has(
        &o,
        "EndpointReady",
        ConditionStatus::True,
        "ProviderReady"
    ));
    assert!(
        condition(&o, "Ready")
            .unwrap()
            .2
            .contains("read the policy")
    );
    assert_eq!(policy_state(&o), Some("Unknown"));
    // Azure recovers: the next retry (5 s, then 10 s of backoff) finds it
    assert!(h.emu.remove_fault(fault));
    let o = h.wait("flaky", "Ready", ready).await;
    assert_eq!(policy_state(&o), Some("InSync"));
    assert_eq!(h.effective_policy("maaflaky"), POLICY_A);
}

#[tokio::test]
async fn the_policy_api_version_of_the_spec_is_used() {
    let h = harness("atp-apiver").await;
    let id = h.existing("maaapiver");
    let mut policy = inline_policy(POLICY_A);
    policy["apiVersion"] = "2025-06-01".into();
    h.create(
        "apiver",
        serde_json::json!({"resourceId": id, "policy": policy}),
    )
    .await;
    h.wait("apiver", "Ready", ready).await;
    let calls: Vec<_> = h
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/attest/maaapiver/policies/"))
        .collect();
    assert!(!calls.is_empty());
    for r in &calls {
        assert_eq!(
            r.api_version.as_deref(),
            Some("2025-06-01"),
            "{} {}",
            r.method,
            r.path
        );
    }
}
