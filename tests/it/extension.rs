//! The GuestAttestationExtension controller against the real API server and the Azure emulator.

use std::{sync::Arc, time::Duration};

use azure_emulator::{
    ClusterSpec, Emulator, ExtensionBehavior, ExtensionPatch, ExtensionSpec,
    IsolatedVmAttestationConfiguration, VmSpec,
};
use guest_attestation_operator::{
    azure::{Azure, AzureConfig, BucketSpec, RateLimits},
    controller::Settings,
    crd::{AttestationStatus, ConditionStatus, GuestAttestationExtension},
    extension::{ExtensionContext, FINALIZER, run},
    metrics::Metrics,
};
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{self, azure as az};

const RELYING_PARTY: &str = "https://dp.stackhci.azure.com/eastus/igvmAttestation/validxxxxx";
const WINDOWS: &str = "Microsoft.Azure.Security.WindowsAttestation";
const LINUX: &str = "Microsoft.Azure.Security.LinuxAttestation";

/// One controller, scoped to one namespace, for one test; stops when dropped.
struct Harness {
    client: Client,
    ns: String,
    emu: Emulator,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
}

/// How long a test waits for drift checks: the 30 min drift interval scaled by 1/120 is 15 s
/// ±10 %, so two checks may take 33 s; the deadline leaves room for a loaded machine.
const DRIFT_WAIT: u64 = 75;

/// Fast settings: a drift check every ~15 s, deployment retries after ~0.5 s, and an operation
/// timeout long enough for the emulator's operations (two polls a second apart).
fn settings() -> Settings {
    Settings {
        operation_timeout: Duration::from_secs(60),
        ..az::fast_settings()
    }
}

async fn harness(prefix: &str) -> Harness {
    harness_with(prefix, settings()).await
}

async fn harness_with(prefix: &str, settings: Settings) -> Harness {
    harness_tuned(prefix, settings, |c| c).await
}

/// A harness whose Azure configuration `tune` adjusts.
async fn harness_tuned(
    prefix: &str,
    settings: Settings,
    tune: impl FnOnce(AzureConfig) -> AzureConfig,
) -> Harness {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, prefix).await;
    az::credentials_secret(&client, &ns).await;
    let emu = az::emulator().await;
    let (ctx, metrics) = az::context_with(
        client.clone(),
        tune(az::azure_config(&emu)),
        settings,
        "guestattestationextension",
    );
    let ectx: Arc<ExtensionContext<Azure>> = Arc::new(ExtensionContext::new(ctx));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(ectx, Some(ns.clone()), async move {
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

fn cluster_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.AzureStackHCI/clusters/{name}",
        az::SUB
    )
}

/// A Trusted Launch VM with vTPM, Secure Boot and one NIC.
fn trusted_vm() -> VmSpec {
    VmSpec {
        network_interfaces: vec![format!(
            "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.AzureStackHCI/networkInterfaces/nic1",
            az::SUB
        )],
        ..VmSpec::default()
    }
}

impl Harness {
    /// An Azure Local cluster, with or without guest attestation set up.
    fn cluster(&self, name: &str, attestation: bool) -> String {
        let id = cluster_id(name);
        self.emu
            .put_cluster(ClusterSpec {
                id: id.clone(),
                location: "eastus".into(),
                aad_tenant_id: az::TENANT.into(),
                aad_client_id: None,
                isolated_vm_attestation_configuration: attestation.then(|| {
                    IsolatedVmAttestationConfiguration {
                        attestation_resource_id: format!(
                            "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.Attestation/attestationProviders/maa1",
                            az::SUB
                        ),
                        relying_party_service_endpoint: RELYING_PARTY.into(),
                        attestation_service_endpoint: self.emu.attest_uri("maa1"),
                    }
                }),
            })
            .unwrap();
        id
    }

    /// An Arc machine with an Azure Local VM.
    fn vm(&self, name: &str, os: &str, vm: VmSpec) -> String {
        let id = az::machine_id("rg1", name);
        self.emu.put_machine(&id, "eastus", os).unwrap();
        self.emu.put_vm_instance(&id, vm).unwrap();
        id
    }

    fn api(&self) -> Api<GuestAttestationExtension> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a GuestAttestationExtension with `extra` merged into its spec.
    async fn create(&self, name: &str, machine: &str, extra: Value) {
        let mut spec = json!({"machineId": machine, "credentialsRef": {"name": "azure-sp"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let obj: GuestAttestationExtension = serde_json::from_value(json!({
            "apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        self.api()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    /// Waits until the object satisfies `check`, returning it.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&GuestAttestationExtension) -> bool,
    ) -> GuestAttestationExtension {
        support::wait_object(
            &self.api(),
            name,
            what,
            Duration::from_secs(DRIFT_WAIT),
            check,
        )
        .await
    }

    async fn wait_ready(&self, name: &str) -> GuestAttestationExtension {
        self.wait(name, "Ready=True", |o| {
            condition(o, "Ready").is_some_and(|c| c.0 == ConditionStatus::True)
        })
        .await
    }

    /// Ready, no operation in flight, and Azure agrees (Succeeded): nothing is moving.
    async fn wait_settled(&self, name: &str, machine: &str) {
        self.wait(name, "settled", |o| {
            has(o, "Ready", ConditionStatus::True, "Deployed")
                && o.status.as_ref().is_some_and(|s| s.operation_url.is_none())
                && o.status.as_ref().unwrap().observed_generation == o.metadata.generation
                && self
                    .extension(machine)
                    .is_some_and(|e| e["properties"]["provisioningState"] == "Succeeded")
        })
        .await;
    }

    async fn wait_gone(&self, name: &str) {
        support::wait_for(
            &format!("{name} to be deleted"),
            Duration::from_secs(40),
            || async { self.api().get_opt(name).await.unwrap().is_none() },
        )
        .await;
    }

    async fn wait_event(&self, name: &str, type_: &str, reason: &str) -> Event {
        let timeout = Duration::from_secs(20);
        support::wait_event(&self.client, &self.ns, name, type_, reason, timeout).await
    }

    /// Waits for PrerequisitesMet=False with `reason`, checks that the message names every
    /// item of `needles`, that Ready says the same and that nothing is deployed.
    async fn expect_unmet(&self, name: &str, reason: &str, needles: &[&str]) {
        let o = self
            .wait(name, reason, |o| {
                has(o, "PrerequisitesMet", ConditionStatus::False, reason)
            })
            .await;
        let message = condition(&o, "PrerequisitesMet").unwrap().2;
        for n in needles {
            assert!(message.contains(n), "{name}: {n:?} in {message}");
        }
        let ready = condition(&o, "Ready").unwrap();
        assert_eq!(
            (ready.0, ready.1.as_str()),
            (ConditionStatus::False, reason)
        );
        assert!(
            has(&o, "Deployed", ConditionStatus::False, "NotDeployed"),
            "{name}"
        );
    }

    /// ARM writes (PUT, PATCH, DELETE) to a machine's extensions.
    fn extension_writes(&self, machine: &str) -> usize {
        let vm = machine.rsplit('/').next().unwrap().to_ascii_lowercase();
        self.emu
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .filter(|r| {
                let p = r.path.to_ascii_lowercase();
                p.contains(&format!("/machines/{vm}/extensions"))
            })
            .count()
    }

    /// GETs of a machine's GuestAttestation extension (one per look at Azure).
    fn extension_reads(&self, machine: &str) -> usize {
        let vm = machine.rsplit('/').next().unwrap().to_ascii_lowercase();
        self.emu
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .filter(|r| {
                r.path
                    .to_ascii_lowercase()
                    .ends_with(&format!("/machines/{vm}/extensions/guestattestation"))
            })
            .count()
    }

    /// GETs whose path ends with `suffix` (case-insensitive).
    fn reads_ending(&self, suffix: &str) -> usize {
        let suffix = suffix.to_ascii_lowercase();
        self.emu
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.to_ascii_lowercase().ends_with(&suffix))
            .count()
    }

    /// GETs of the machine, its VM instance and the clusters: a full look.
    fn surroundings_reads(&self, machine: &str) -> usize {
        let vm = machine.rsplit('/').next().unwrap();
        self.reads_ending(&format!("/machines/{vm}"))
            + self.reads_ending(&format!(
                "/machines/{vm}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default"
            ))
            + self
                .emu
                .requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path.to_ascii_lowercase().contains("/clusters/"))
                .count()
    }

    fn extension(&self, machine: &str) -> Option<Value> {
        self.emu.extension(machine, "GuestAttestation")
    }
}

fn condition(
    o: &GuestAttestationExtension,
    type_: &str,
) -> Option<(ConditionStatus, String, String)> {
    o.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

fn has(o: &GuestAttestationExtension, type_: &str, status: ConditionStatus, reason: &str) -> bool {
    condition(o, type_).is_some_and(|c| c.0 == status && c.1 == reason)
}

/// The settings the documentation prescribes for this cluster.
fn documented_settings(emu: &Emulator, cluster: &str) -> Value {
    json!({"AttestationConfig": {
        "MaaSettings": {"maaEndpoint": emu.attest_uri("maa1"), "maaTenantName": "DUMMY_Tenant_NewConfig"},
        "AscSettings": {"ascReportingEndpoint": RELYING_PARTY, "ascReportingFrequency": "4H"},
        "AzureStackSettings": {"clusterId": cluster, "clusterAadTenantId": az::TENANT},
        "useCustomToken": "true", "disableAlerts": "false", "isAzureStack": "true"}})
}

#[tokio::test]
async fn deploys_the_documented_extension() {
    let h = harness("gae-deploy").await;
    let cluster = h.cluster("c1", true);
    let win = h.vm("win-vm", "Windows", trusted_vm());
    let linux = h.vm("linux-vm", "Linux", trusted_vm());
    h.create("win-vm", &win, json!({"clusterId": cluster}))
        .await;
    h.create(
        "linux-vm",
        &linux,
        json!({"clusterId": cluster, "typeHandlerVersion": "1.0", "enableAutomaticUpgrade": false,
               "location": "westus", "settings": {"maaTenantName": "My_Tenant_NewConfig", "disableAlerts": true}}),
    )
    .await;

    let o = h.wait_ready("win-vm").await;
    let s = o.status.clone().unwrap();
    assert_eq!(s.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(s.type_handler_version.as_deref(), Some("1.0.1.30"));
    assert!(
        s.instance_view_message
            .as_deref()
            .unwrap()
            .contains("AszAttestationClient Started Successfully"),
        "{s:?}"
    );
    assert_eq!(s.machine_name.as_deref(), Some("win-vm"));
    assert_eq!(s.observed_generation, o.metadata.generation);
    assert!(s.operation_url.is_none() && s.operation_started_time.is_none());
    assert!(s.settings_hash.as_deref().is_some_and(|h| h.len() == 64));
    for c in &s.conditions {
        assert_eq!(c.observed_generation, o.metadata.generation, "{c:?}");
    }
    assert!(has(
        &o,
        "PrerequisitesMet",
        ConditionStatus::True,
        "PrerequisitesMet"
    ));
    assert!(has(&o, "Deployed", ConditionStatus::True, "Deployed"));
    assert!(o.finalizers().iter().any(|f| f == FINALIZER));

    // The extension as the documented `az connectedmachine extension create` leaves it.
    let ext = h.extension(&win).unwrap();
    assert_eq!(ext["name"], "GuestAttestation");
    assert_eq!(ext["location"], "eastus");
    let p = &ext["properties"];
    assert_eq!(p["publisher"], WINDOWS);
    assert_eq!(p["type"], "GuestAttestation");
    assert_eq!(p["enableAutomaticUpgrade"], true);
    assert_eq!(p["settings"], documented_settings(&h.emu, &cluster));

    let o = h.wait_ready("linux-vm").await;
    let ext = h.extension(&linux).unwrap();
    assert_eq!(ext["location"], "westus");
    let p = &ext["properties"];
    assert_eq!(p["publisher"], LINUX);
    assert_eq!(p["enableAutomaticUpgrade"], false);
    assert_eq!(p["typeHandlerVersion"], "1.0.1.30", "the 1.0 pin resolves");
    let mut want = documented_settings(&h.emu, &cluster);
    want["AttestationConfig"]["MaaSettings"]["maaTenantName"] = "My_Tenant_NewConfig".into();
    want["AttestationConfig"]["disableAlerts"] = "true".into();
    assert_eq!(p["settings"], want);
    assert!(condition(&o, "Deployed").unwrap().2.contains(LINUX));

    h.wait_event("win-vm", "Normal", "Deploying").await;
    h.wait_event("win-vm", "Normal", "Deployed").await;
}

/// A fleet that wants more reads than the budget gives: each look waits for its booked reads in
/// the requeue queue rather than in a reconcile slot, so every extension deploys, and no look is
/// started twice (each machine, VM instance and cluster is read once per VM).
#[tokio::test]
async fn a_fleet_over_the_read_budget_deploys_with_each_look_done_once() {
    const VMS: usize = 12;
    // Eight looks at once want 32 reads: 8 s of a 4 reads/s budget, longer than a call may wait.
    let reads = BucketSpec {
        per_second: 4,
        burst: 4,
    };
    let h = harness_over_budget(
        "gae-budget",
        RateLimits {
            reads,
            ..RateLimits::default()
        },
    )
    .await;
    // About 10 reads per VM at 4/s: 30 s at best.
    deploy_fleet_each_look_once(&h, VMS).await;
    let clusters = h
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.to_ascii_lowercase().contains("/clusters/"))
        .count();
    assert_eq!(clusters, VMS, "one cluster read per look");
    assert_held(&h, "book_reads");
}

/// A fleet that wants more writes than the budget gives: a PUT waits for its booked write in the
/// requeue queue, and comes back to a one-read look (the machine, VM instance and cluster are not
/// read again).
#[tokio::test]
async fn a_fleet_over_the_write_budget_deploys_with_each_look_done_once() {
    const VMS: usize = 6;
    // Six PUTs at one write a second: some are more than a reconcile's patience away.
    let writes = BucketSpec {
        per_second: 1,
        burst: 1,
    };
    let h = harness_over_budget(
        "gae-write-budget",
        RateLimits {
            writes,
            ..RateLimits::default()
        },
    )
    .await;
    deploy_fleet_each_look_once(&h, VMS).await;
    assert_held(&h, "book_writes");
    let encoded = h.metrics.encode();
    assert!(
        encoded.lines().any(|l| l
            == format!("guest_attestation_azure_booked_writes_total{{outcome=\"used\"}} {VMS}")),
        "each PUT sent on its booked write:\n{encoded}"
    );
}

/// A harness with eight turns and these ARM budgets.
async fn harness_over_budget(prefix: &str, limits: RateLimits) -> Harness {
    let settings = Settings {
        concurrency: 8,
        ..settings()
    };
    harness_tuned(prefix, settings, move |mut c| {
        c.rate_limits = limits;
        c
    })
    .await
}

/// Creates `vms` VMs with an extension each, waits until all are Ready, and checks that each was
/// deployed with one PUT and its machine read once.
async fn deploy_fleet_each_look_once(h: &Harness, vms: usize) {
    let cluster = h.cluster("c1", true);
    let mut machines = Vec::new();
    for i in 0..vms {
        let name = format!("vm-{i:02}");
        let m = h.vm(&name, "Windows", trusted_vm());
        h.create(&name, &m, json!({"clusterId": cluster})).await;
        machines.push((name, m));
    }
    support::wait_for(
        "every extension Ready",
        Duration::from_secs(120),
        || async {
            let list = h
                .api()
                .list(&kube::api::ListParams::default())
                .await
                .unwrap();
            list.items.len() == vms
                && list
                    .items
                    .iter()
                    .all(|o| condition(o, "Ready").is_some_and(|c| c.0 == ConditionStatus::True))
        },
    )
    .await;
    for (name, m) in &machines {
        assert_eq!(h.extension_writes(m), 1, "{name}: one PUT");
        let machine_reads = h.reads_ending(&format!("/machines/{name}"));
        assert_eq!(
            machine_reads, 1,
            "{name}: the machine read {machine_reads} times"
        );
    }
}

/// The budget was saturated: some call was held by a booking of `operation`.
fn assert_held(h: &Harness, operation: &str) {
    let encoded = h.metrics.encode();
    assert!(
        encoded
            .lines()
            .any(|l| l.starts_with("guest_attestation_azure_holds_total")
                && l.contains("rate_limit")
                && l.contains(&format!("operation=\"{operation}\""))),
        "no {operation} hold:\n{encoded}"
    );
}

#[tokio::test]
async fn owns_a_status_and_writes_nothing_while_azure_matches() {
    let h = harness("gae-steady").await;
    let cluster = h.cluster("c1", true);
    let win = h.vm("win-vm", "Windows", trusted_vm());
    h.create("win-vm", &win, json!({"clusterId": cluster}))
        .await;
    h.wait_ready("win-vm").await;

    // The poll that saw the PUT succeed read the extension in its final GET; the look reads it
    // no second time (drift checks come ~15 s apart).
    let log = h.emu.requests();
    let last_poll = log
        .iter()
        .rfind(|r| r.method == "GET" && r.path.to_ascii_lowercase().contains("/operationstatus/"))
        .expect("the PUT was polled");
    let ext_path = format!(
        "/machines/{}/extensions/guestattestation",
        win.rsplit('/').next().unwrap().to_ascii_lowercase()
    );
    let reads_after = log
        .iter()
        .filter(|r| r.seq > last_poll.seq && r.time < last_poll.time + Duration::from_secs(5))
        .filter(|r| r.method == "GET" && r.path.to_ascii_lowercase().ends_with(&ext_path))
        .count();
    assert_eq!(
        reads_after, 1,
        "the extension read again after the final GET"
    );

    // createStatus: an AttestationStatus per VM, owned, same machine and credentials.
    let statuses: Api<AttestationStatus> = Api::namespaced(h.client.clone(), &h.ns);
    let ats = statuses.get("win-vm").await.unwrap();
    assert_eq!(ats.spec.machine_id, win);
    assert_eq!(ats.spec.credentials_ref.as_ref().unwrap().name, "azure-sp");
    let owner = &ats.owner_references()[0];
    assert_eq!(owner.kind, "GuestAttestationExtension");
    assert_eq!(owner.controller, Some(true));
    let win_obj = h.api().get("win-vm").await.unwrap();
    assert_eq!(Some(owner.uid.clone()), win_obj.uid());
    // Deleted by someone: it comes back.
    statuses
        .delete("win-vm", &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for(
        "the AttestationStatus back",
        Duration::from_secs(20),
        || async {
            statuses
                .get_opt("win-vm")
                .await
                .unwrap()
                .is_some_and(|a| a.metadata.deletion_timestamp.is_none())
        },
    )
    .await;

    // Azure matches: several drift checks later, still one PUT and no status write.
    assert_eq!(h.extension_writes(&win), 1);
    let rv = h.api().get("win-vm").await.unwrap().resource_version();
    let reads = h.extension_reads(&win);
    let around = h.surroundings_reads(&win);
    support::wait_for(
        "two more drift checks",
        Duration::from_secs(DRIFT_WAIT),
        || async { h.extension_reads(&win) >= reads + 2 },
    )
    .await;
    assert_eq!(h.extension_writes(&win), 1, "no PUT while Azure matches");
    // T5: a settled extension's drift check reads the extension alone.
    assert_eq!(
        h.surroundings_reads(&win),
        around,
        "drift checks reread the machine, VM instance or cluster"
    );
    assert_eq!(
        h.api().get("win-vm").await.unwrap().resource_version(),
        rv,
        "no status write while nothing changed"
    );
    let failures = h
        .metrics
        .encode()
        .lines()
        .filter(|l| {
            l.contains("reconcile_failures_total") && l.contains("guestattestationextension")
        })
        .count();
    assert_eq!(failures, 0, "{}", h.metrics.encode());
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one case per prerequisite
async fn unmet_prerequisites_are_named_and_nothing_is_deployed() {
    let h = harness("gae-preflight").await;
    let cluster = h.cluster("c1", true);
    let bare = h.cluster("bare", false);
    let standard = h.vm(
        "standard",
        "Windows",
        VmSpec {
            security_type: None,
            enable_tpm: false,
            secure_boot_enabled: false,
            ..trusted_vm()
        },
    );
    let no_tpm = h.vm(
        "no-tpm",
        "Windows",
        VmSpec {
            enable_tpm: false,
            ..trusted_vm()
        },
    );
    let no_sb = h.vm(
        "no-sb",
        "Linux",
        VmSpec {
            secure_boot_enabled: false,
            ..trusted_vm()
        },
    );
    let no_nic = h.vm(
        "no-nic",
        "Windows",
        VmSpec {
            network_interfaces: vec![],
            ..trusted_vm()
        },
    );
    let good = h.vm("not-set-up", "Windows", trusted_vm());
    let missing = az::machine_id("rg1", "no-such-vm");
    h.create("standard", &standard, json!({"clusterId": cluster}))
        .await;
    h.create("no-tpm", &no_tpm, json!({"clusterId": cluster}))
        .await;
    h.create("no-sb", &no_sb, json!({"clusterId": cluster}))
        .await;
    h.create("no-nic", &no_nic, json!({"clusterId": cluster}))
        .await;
    h.create("not-set-up", &good, json!({"clusterId": bare}))
        .await;
    h.create("no-such-vm", &missing, json!({"clusterId": cluster}))
        .await;

    h.expect_unmet(
        "standard",
        "PrerequisitesNotMet",
        &[
            "3 prerequisite",
            "not a Trusted Launch VM",
            "vTPM is not enabled",
            "Secure Boot is not enabled",
        ],
    )
    .await;
    h.expect_unmet(
        "no-tpm",
        "PrerequisitesNotMet",
        &["1 prerequisite", "vTPM is not enabled"],
    )
    .await;
    h.expect_unmet(
        "no-sb",
        "PrerequisitesNotMet",
        &["Secure Boot is not enabled"],
    )
    .await;
    h.expect_unmet(
        "no-nic",
        "PrerequisitesNotMet",
        &["1 prerequisite", "network interface"],
    )
    .await;
    h.expect_unmet(
        "not-set-up",
        "AttestationNotConfigured",
        &[
            "guest attestation is not set up on the Azure Local instance",
            "/clusters/bare",
        ],
    )
    .await;
    h.expect_unmet("no-such-vm", "MachineNotFound", &["does not exist"])
        .await;
    h.wait_event("no-tpm", "Warning", "PrerequisitesNotMet")
        .await;
    for m in [&standard, &no_tpm, &no_sb, &good] {
        assert_eq!(h.extension_writes(m), 0, "nothing deployed on {m}");
        assert!(h.extension(m).is_none());
    }

    // Fixed in Azure: the next drift check deploys.
    h.emu.set_vm_security(&no_tpm, true, true).unwrap();
    let o = h.wait_ready("no-tpm").await;
    assert!(has(
        &o,
        "PrerequisitesMet",
        ConditionStatus::True,
        "PrerequisitesMet"
    ));
    assert_eq!(h.extension_writes(&no_tpm), 1);
}

#[tokio::test]
async fn a_failed_deployment_is_reported_and_retried() {
    let h = harness("gae-fail").await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-fail", "Windows", trusted_vm());
    h.emu
        .set_extension_behavior(
            &vm,
            ExtensionBehavior::Fail {
                code: "ExtensionOperationFailed".into(),
                message: "the handler could not start AszAttestationClient".into(),
            },
        )
        .unwrap();
    h.create("vm-fail", &vm, json!({"clusterId": cluster}))
        .await;
    let o = h
        .wait("vm-fail", "DeploymentFailed", |o| {
            has(o, "Deployed", ConditionStatus::False, "DeploymentFailed")
        })
        .await;
    let message = condition(&o, "Deployed").unwrap().2;
    assert!(message.contains("ExtensionOperationFailed"), "{message}");
    assert!(
        message.contains("could not start AszAttestationClient"),
        "{message}"
    );
    assert!(message.contains("next attempt at"), "{message}");
    assert_eq!(
        condition(&o, "Ready").unwrap().1,
        "DeploymentFailed",
        "Ready summarises"
    );
    assert_eq!(
        o.status.as_ref().unwrap().provisioning_state.as_deref(),
        Some("Failed")
    );
    let event = h.wait_event("vm-fail", "Warning", "DeploymentFailed").await;
    assert!(
        event
            .note
            .unwrap()
            .contains("could not start AszAttestationClient")
    );

    // The handler is fixed: the retry succeeds.
    h.emu
        .set_extension_behavior(&vm, ExtensionBehavior::Succeed)
        .unwrap();
    let o = h.wait_ready("vm-fail").await;
    assert_eq!(
        o.status.unwrap().provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert!(h.extension_writes(&vm) >= 2);
}

#[tokio::test]
async fn an_operation_that_never_ends_is_reported_stuck() {
    let h = harness_with(
        "gae-stuck",
        Settings {
            operation_timeout: Duration::from_secs(3),
            ..az::fast_settings()
        },
    )
    .await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-stuck", "Windows", trusted_vm());
    h.emu
        .set_extension_behavior(&vm, ExtensionBehavior::Stuck)
        .unwrap();
    h.create("vm-stuck", &vm, json!({"clusterId": cluster}))
        .await;
    let o = h
        .wait("vm-stuck", "InProgress", |o| {
            has(o, "Deployed", ConditionStatus::Unknown, "InProgress")
        })
        .await;
    let s = o.status.unwrap();
    assert_eq!(s.provisioning_state.as_deref(), Some("Creating"));
    assert!(s.operation_url.is_some() && s.operation_started_time.is_some());
    assert!(has(
        &h.api().get("vm-stuck").await.unwrap(),
        "Ready",
        ConditionStatus::Unknown,
        "Reconciling"
    ));
    let o = h
        .wait("vm-stuck", "OperationStuck", |o| {
            has(o, "Deployed", ConditionStatus::False, "OperationStuck")
        })
        .await;
    let message = condition(&o, "Deployed").unwrap().2;
    assert!(
        message.contains("stayed Creating longer than 3s"),
        "{message}"
    );
    assert!(message.contains("az connectedmachine"), "{message}");
    h.wait_event("vm-stuck", "Warning", "OperationStuck").await;
    assert_eq!(
        h.extension_writes(&vm),
        1,
        "no second PUT over a running operation"
    );
}

#[tokio::test]
async fn drift_is_put_back() {
    let h = harness("gae-drift").await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-drift", "Windows", trusted_vm());
    h.create("vm-drift", &vm, json!({"clusterId": cluster}))
        .await;
    h.wait_settled("vm-drift", &vm).await;
    let documented = documented_settings(&h.emu, &cluster);
    assert_eq!(h.extension_writes(&vm), 1);

    // Settings changed outside.
    let mut changed = documented.clone();
    changed["AttestationConfig"]["useCustomToken"] = "false".into();
    h.emu
        .modify_extension(
            &vm,
            "GuestAttestation",
            ExtensionPatch {
                settings: Some(changed),
                ..ExtensionPatch::default()
            },
        )
        .unwrap();
    support::wait_for(
        "the settings put back",
        Duration::from_secs(DRIFT_WAIT),
        || async {
            h.extension(&vm)
                .is_some_and(|e| e["properties"]["settings"] == documented)
        },
    )
    .await;
    let event = h.wait_event("vm-drift", "Warning", "DriftDetected").await;
    assert!(event.note.unwrap().contains("settings differ"));
    h.wait_settled("vm-drift", &vm).await;

    // Removed outside.
    assert!(h.emu.remove_extension(&vm, "GuestAttestation"));
    support::wait_for(
        "the extension redeployed",
        Duration::from_secs(DRIFT_WAIT),
        || async { h.extension(&vm).is_some() },
    )
    .await;
    h.wait_settled("vm-drift", &vm).await;

    // A version pin, then the version changed outside.
    let patch = json!({"spec": {"typeHandlerVersion": "1.0.1.30"}});
    h.api()
        .patch("vm-drift", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    h.wait_settled("vm-drift", &vm).await;
    assert_eq!(
        h.api().get("vm-drift").await.unwrap().metadata.generation,
        Some(2)
    );
    // Pinning the version the extension already has needs no PUT.
    let writes = h.extension_writes(&vm);
    let reads = h.extension_reads(&vm);
    support::wait_for("a drift check", Duration::from_secs(DRIFT_WAIT), || async {
        h.extension_reads(&vm) > reads
    })
    .await;
    assert_eq!(h.extension_writes(&vm), writes);
    h.emu
        .modify_extension(
            &vm,
            "GuestAttestation",
            ExtensionPatch {
                type_handler_version: Some("1.0.0.9".into()),
                ..ExtensionPatch::default()
            },
        )
        .unwrap();
    support::wait_for(
        "the pinned version put back",
        Duration::from_secs(DRIFT_WAIT),
        || async {
            h.extension(&vm)
                .is_some_and(|e| e["properties"]["typeHandlerVersion"] == "1.0.1.30")
                && h.extension_writes(&vm) > writes
        },
    )
    .await;
    h.wait_settled("vm-drift", &vm).await;

    // A spec change is an update, not drift.
    let patch = json!({"spec": {"settings": {"ascReportingFrequency": "2H"}}});
    h.api()
        .patch("vm-drift", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let e = h.wait_event("vm-drift", "Normal", "Updating").await;
    assert!(e.note.unwrap().contains("settings differ"));
    h.wait_settled("vm-drift", &vm).await;
    assert_eq!(
        h.extension(&vm).unwrap()["properties"]["settings"]["AttestationConfig"]["AscSettings"]["ascReportingFrequency"],
        "2H"
    );
}

#[tokio::test]
async fn observe_mode_never_writes_to_azure() {
    let h = harness("gae-observe").await;
    let cluster = h.cluster("c1", true);
    let placed = h.vm("placed", "Windows", trusted_vm());
    let empty = h.vm("empty", "Windows", trusted_vm());
    let matching = h.vm("matching", "Windows", trusted_vm());
    let by_hand = |settings: Value| ExtensionSpec {
        name: "GuestAttestation".into(),
        publisher: WINDOWS.into(),
        extension_type: "GuestAttestation".into(),
        type_handler_version: None,
        enable_automatic_upgrade: Some(true),
        settings,
        provisioning_state: None,
    };
    let mut other = documented_settings(&h.emu, &cluster);
    other["AttestationConfig"]["AscSettings"]["ascReportingFrequency"] = "8H".into();
    h.emu.put_extension(&placed, by_hand(other)).unwrap();
    h.emu
        .put_extension(&matching, by_hand(documented_settings(&h.emu, &cluster)))
        .unwrap();
    let observe = json!({"clusterId": cluster, "managementPolicy": "Observe"});
    h.create("placed", &placed, observe.clone()).await;
    h.create("empty", &empty, observe.clone()).await;
    h.create("matching", &matching, observe).await;

    let o = h
        .wait("placed", "Drifted", |o| {
            has(o, "Deployed", ConditionStatus::False, "Drifted")
        })
        .await;
    let message = condition(&o, "Deployed").unwrap().2;
    assert!(
        message.contains("settings differ") && message.contains("Observe"),
        "{message}"
    );
    h.wait_event("placed", "Warning", "Drifted").await;
    h.wait("empty", "NotDeployed", |o| {
        has(o, "Deployed", ConditionStatus::False, "NotDeployed")
    })
    .await;
    let o = h.wait_ready("matching").await;
    assert_eq!(
        o.status.unwrap().provisioning_state.as_deref(),
        Some("Succeeded")
    );

    // A drift check later, and after deleting them all: not one write.
    let reads = h.extension_reads(&placed);
    support::wait_for(
        "another drift check",
        Duration::from_secs(DRIFT_WAIT),
        || async { h.extension_reads(&placed) > reads },
    )
    .await;
    for name in ["placed", "empty", "matching"] {
        h.api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["placed", "empty", "matching"] {
        h.wait_gone(name).await;
    }
    h.wait_event("placed", "Normal", "Retained").await;
    let writes: Vec<String> = h
        .emu
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path.contains("/subscriptions/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "Observe wrote to Azure: {writes:?}");
    assert!(h.extension(&placed).is_some() && h.extension(&matching).is_some());
}

#[tokio::test]
async fn delete_removes_the_extension_and_retain_leaves_it() {
    let h = harness("gae-delete").await;
    let cluster = h.cluster("c1", true);
    let gone = h.vm("vm-delete", "Windows", trusted_vm());
    let kept = h.vm("vm-retain", "Windows", trusted_vm());
    h.create("vm-delete", &gone, json!({"clusterId": cluster}))
        .await;
    h.create(
        "vm-retain",
        &kept,
        json!({"clusterId": cluster, "deletionPolicy": "Retain"}),
    )
    .await;
    h.wait_ready("vm-delete").await;
    h.wait_ready("vm-retain").await;
    for name in ["vm-delete", "vm-retain"] {
        h.api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    h.wait_gone("vm-delete").await;
    h.wait_gone("vm-retain").await;
    assert!(
        h.extension(&gone).is_none(),
        "deleted in Azure before the object went"
    );
    let deletes = |m: &str| {
        let vm = m.rsplit('/').next().unwrap().to_ascii_lowercase();
        h.emu
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.to_ascii_lowercase().contains(&vm))
            .count()
    };
    assert_eq!(deletes(&gone), 1);
    h.wait_event("vm-delete", "Normal", "Deleting").await;
    h.wait_event("vm-delete", "Normal", "Deleted").await;
    assert!(h.extension(&kept).is_some(), "Retain leaves the extension");
    assert_eq!(deletes(&kept), 0);
    let e = h.wait_event("vm-retain", "Normal", "Retained").await;
    assert!(e.note.unwrap().contains("deletionPolicy Retain"));
}

#[tokio::test]
async fn credentials_missing_or_wrong_give_a_clear_condition() {
    let h = harness("gae-creds").await;
    let cluster = h.cluster("c1", true);
    let a = h.vm("vm-nosecret", "Windows", trusted_vm());
    let b = h.vm("vm-badsecret", "Windows", trusted_vm());
    h.create(
        "vm-nosecret",
        &a,
        json!({"clusterId": cluster, "credentialsRef": {"name": "later"}}),
    )
    .await;
    let wrong: Secret = serde_json::from_value(json!({
        "metadata": {"name": "wrong"},
        "stringData": {"tenantId": az::TENANT, "clientId": az::CLIENT_ID, "clientSecret": "not-the-secret"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap();
    h.create(
        "vm-badsecret",
        &b,
        json!({"clusterId": cluster, "credentialsRef": {"name": "wrong"}}),
    )
    .await;

    let o = h
        .wait("vm-nosecret", "CredentialsInvalid", |o| {
            has(o, "Ready", ConditionStatus::False, "CredentialsInvalid")
        })
        .await;
    let message = condition(&o, "Ready").unwrap().2;
    assert!(
        message.contains("\"later\"") && message.contains("not found"),
        "{message}"
    );
    h.wait_event("vm-nosecret", "Warning", "CredentialsInvalid")
        .await;
    let o = h
        .wait("vm-badsecret", "AzureAuthorizationFailed", |o| {
            has(
                o,
                "Ready",
                ConditionStatus::False,
                "AzureAuthorizationFailed",
            )
        })
        .await;
    let message = condition(&o, "Ready").unwrap().2;
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains("not-the-secret"), "no secret in messages");
    assert_eq!(h.extension_writes(&a) + h.extension_writes(&b), 0);
    // Not a crash loop: these are reported conditions, not failed reconciles.
    let failures = h
        .metrics
        .encode()
        .lines()
        .filter(|l| {
            l.contains("reconcile_failures_total") && l.contains("guestattestationextension")
        })
        .count();
    assert_eq!(failures, 0, "{}", h.metrics.encode());

    // The Secret appears: the next retry deploys.
    let later: Secret = serde_json::from_value(json!({
        "metadata": {"name": "later"},
        "stringData": {"tenantId": az::TENANT, "clientId": az::CLIENT_ID, "clientSecret": az::CLIENT_SECRET}
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &later)
        .await
        .unwrap();
    h.wait_ready("vm-nosecret").await;
}

#[tokio::test]
async fn a_deletion_that_cannot_progress_is_released_after_the_bound() {
    let h = harness_with(
        "gae-giveup",
        Settings {
            operation_timeout: Duration::from_secs(3),
            ..az::fast_settings()
        },
    )
    .await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-orphan", "Windows", trusted_vm());
    let gone = h.vm("vm-gone", "Windows", trusted_vm());
    h.create(
        "vm-orphan",
        &vm,
        json!({"clusterId": cluster, "credentialsRef": {"name": "never"}}),
    )
    .await;
    h.create("vm-gone", &gone, json!({"clusterId": cluster}))
        .await;
    h.wait("vm-orphan", "the finalizer", |o| {
        o.finalizers().iter().any(|f| f == FINALIZER)
            && has(o, "Ready", ConditionStatus::False, "CredentialsInvalid")
    })
    .await;
    h.wait_ready("vm-gone").await;
    // The machine disappears from Azure: nothing left to delete.
    assert!(h.emu.delete_machine(&gone));
    for name in ["vm-orphan", "vm-gone"] {
        h.api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    h.wait_gone("vm-gone").await;
    h.wait_event("vm-gone", "Normal", "Deleted").await;
    let started = tokio::time::Instant::now();
    h.wait_gone("vm-orphan").await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let e = h
        .wait_event("vm-orphan", "Warning", "FinalizerReleased")
        .await;
    let note = e.note.unwrap();
    assert!(
        note.contains("\"never\"") && note.contains("may remain"),
        "{note}"
    );
}

#[tokio::test]
async fn settings_from_an_attestation_provider() {
    let h = harness("gae-provider").await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-atp", "Windows", trusted_vm());
    let providers: Api<guest_attestation_operator::crd::AttestationProvider> =
        Api::namespaced(h.client.clone(), &h.ns);
    let atp: guest_attestation_operator::crd::AttestationProvider = serde_json::from_value(json!({
        "apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationProvider",
        "metadata": {"name": "maa"},
        "spec": {"clusterRef": {"resourceId": cluster}}
    }))
    .unwrap();
    providers
        .create(&PostParams::default(), &atp)
        .await
        .unwrap();
    h.create("vm-atp", &vm, json!({"providerRef": {"name": "maa"}}))
        .await;
    let o = h
        .wait("vm-atp", "ProviderNotReady", |o| {
            has(
                o,
                "PrerequisitesMet",
                ConditionStatus::False,
                "ProviderNotReady",
            )
        })
        .await;
    assert!(
        condition(&o, "Ready")
            .unwrap()
            .2
            .contains("waiting for the AttestationProvider \"maa\"")
    );
    assert!(h.extension(&vm).is_none());

    // The provider turns Ready (as its controller would report it).
    let attest_uri = h.emu.attest_uri("repaired");
    let status = json!({"status": {"attestUri": attest_uri, "conditions": [{
        "type": "EndpointReady", "status": "True", "reason": "Ready", "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    providers
        .patch_status("maa", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    h.wait_ready("vm-atp").await;
    let settings = &h.extension(&vm).unwrap()["properties"]["settings"]["AttestationConfig"];
    assert_eq!(settings["MaaSettings"]["maaEndpoint"], attest_uri.as_str());
    assert_eq!(
        settings["AscSettings"]["ascReportingEndpoint"],
        RELYING_PARTY
    );
    assert_eq!(
        settings["AzureStackSettings"]["clusterId"],
        cluster.as_str()
    );
}

#[tokio::test]
async fn a_failed_deletion_is_retried_until_azure_confirms() {
    let h = harness("gae-delfail").await;
    let cluster = h.cluster("c1", true);
    let vm = h.vm("vm-delfail", "Windows", trusted_vm());
    h.create("vm-delfail", &vm, json!({"clusterId": cluster}))
        .await;
    h.wait_settled("vm-delfail", &vm).await;
    h.emu
        .set_extension_behavior(
            &vm,
            ExtensionBehavior::Fail {
                code: "ExtensionDeletionFailed".into(),
                message: "the handler refused to uninstall".into(),
            },
        )
        .unwrap();
    h.api()
        .delete("vm-delfail", &DeleteParams::default())
        .await
        .unwrap();
    let o = h
        .wait("vm-delfail", "the failed deletion reported", |o| {
            condition(o, "Deployed").is_some_and(|c| c.2.contains("the last deletion failed"))
        })
        .await;
    let message = condition(&o, "Deployed").unwrap().2;
    assert!(message.contains("ExtensionDeletionFailed"), "{message}");
    assert!(has(&o, "Ready", ConditionStatus::False, "Deleting"));
    assert!(
        o.finalizers().iter().any(|f| f == FINALIZER),
        "held while Azure has it"
    );
    h.emu
        .set_extension_behavior(&vm, ExtensionBehavior::Succeed)
        .unwrap();
    h.wait_gone("vm-delfail").await;
    assert!(h.extension(&vm).is_none());
    h.wait_event("vm-delfail", "Normal", "Deleted").await;
}
