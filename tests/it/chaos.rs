//! Fault schedules (issue 11): the operator binary, with the chart's RBAC and a ServiceAccount
//! token, against the real API server and the Azure emulator, while a seeded sequence of faults
//! hits it. Each schedule ends with a check, under a deadline, that
//!
//! * every object converged to what its spec asks (live GuestAttestationExtensions Ready with the
//!   extension Succeeded in the emulator and the spec's settings; the AttestationProvider Ready
//!   with its policy in force; every AttestationStatus at its observed generation);
//! * nothing was lost: no extension left behind after a delete, no delete skipped, no
//!   AttestationStatus claiming Healthy for a VM that is not Healthy in the emulator;
//! * no Azure write the desired state did not need (PUT/DELETE of extensions, provider and policy
//!   writes in the emulator's request log, against what the schedule required, excusing retries
//!   of writes that a fault hit and of deployments whose operation failed);
//! * no request to a throttled ARM scope before its `Retry-After` elapsed;
//! * no secret or token (client secrets, the ServiceAccount token, the emulator's bearer tokens)
//!   in the operator's logs, in Events, in any status or in /metrics;
//! * no operator process died other than by our hand or by losing its Lease (exit 1).
//!
//! Faults: 429 storms with Retry-After (seconds or HTTP-date), 5xx, dropped connections, slow
//! responses (some beyond the client timeout), malformed and truncated JSON, deployments that fail
//! or never finish, the token endpoint down, the credentials Secret rotated and deleted, extension
//! drift, VMs turning unhealthy; SIGKILL of the leader at random points, in the middle of an
//! extension deployment (operation in flight) and of a delete (finalizer pending); leader failover
//! between two processes; and, on a control plane of its own, the API server restarted with etcd
//! kept (`testenv restart-apiserver`).
//!
//! Reproducible: `CHAOS_SEED` (decimal or 0x-hex) sets the base seed, schedule `i` uses
//! `splitmix64(seed + i)`; `CHAOS_SCHEDULES` how many schedules run (default 2, plus 1 with API
//! server restarts: `CHAOS_RESTART_SCHEDULES`). A failing schedule prints its seed; rerun it with
//! `CHAOS_SEED=<seed> CHAOS_SCHEDULES=1 cargo test --test it chaos::fault_schedules`.
//! `make chaos` runs many more and prints the totals (docs/reliability.md).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use azure_emulator::{
    AttestationStatusProps, Emulator, EmulatorConfig, ExtensionBehavior, Fault, FaultAction,
    FaultId, LroConfig, PathMatch, RequestRecord, Seed, format_status_timestamp,
};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret, events::v1::Event};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::support::{
    self, TestEnv, azure as az, dynamic_api,
    operator::{self, Operator, OperatorSpec},
};

const CHART: &str = "charts/guest-attestation-operator";
const SUB: &str = az::SUB;
const RG: &str = "chaos-rg";
const CLUSTER: &str = "azlocal-chaos";
const PROVIDER: &str = "chaosmaa";
const EXT: &str = "GuestAttestation";
/// VMs for GuestAttestationExtensions (each used by at most one object per schedule).
const VMS: usize = 8;
/// VMs watched by stand-alone AttestationStatus objects (statuses set by hand).
const WATCHED: usize = 2;
const POLICY: &str = "version=1.0;\nauthorizationrules { => permit(); };\nissuancerules {\n  c:[type==\"secureBootEnabled\", issuer==\"AttestationService\"] => issue(type=\"secureBootEnabled\", value=c.value);\n};\n";
/// Default base seed (CI runs the same schedules every time; `make chaos` picks a new one).
const DEFAULT_SEED: u64 = 0x11_2026_c4a0;

// ---------------------------------------------------------------------------------------------
// seeded choices

/// splitmix64: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        #[allow(clippy::cast_possible_truncation)] // xs is short
        let i = (self.next() % xs.len() as u64) as usize;
        xs[i]
    }
}

fn schedule_seed(base: u64, i: u64) -> u64 {
    Rng(base.wrapping_add(i)).next()
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// the faults

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// 429 storm on the subscription with Retry-After (seconds or HTTP-date).
    Throttle,
    /// 500/503 on ARM or MAA paths.
    ServerError,
    /// TCP resets.
    Reset,
    /// Slow responses, some slower than the client's timeout.
    Slow,
    /// Malformed or truncated JSON bodies.
    Malformed,
    /// A deployment whose operation fails.
    LroFail,
    /// A deployment whose operation never finishes (until Azure resolves it).
    LroStuck,
    /// The Entra token endpoint down (with a restart, so tokens must be fetched).
    TokenDown,
    /// The client secret rotated: new secret in Entra, then the Secret updated.
    RotateSecret,
    /// The credentials Secret deleted, then recreated.
    DeleteSecret,
    /// SIGKILL of the leader with an extension deployment in flight.
    KillMidDeploy,
    /// SIGKILL of the leader with an extension delete in flight (finalizer pending).
    KillMidDelete,
    /// SIGKILL of the leader at a random instant.
    KillRandom,
    /// Leader failover to a standby (SIGKILL or SIGTERM of the leader).
    Failover,
    /// The API server restarted, etcd kept (only on a private control plane).
    ApiRestart,
    /// The extension removed behind the operator's back.
    Drift,
    /// A VM turns unhealthy (or healthy again).
    Health,
}

const STEPS: &[Step] = &[
    Step::Throttle,
    Step::ServerError,
    Step::Reset,
    Step::Slow,
    Step::Malformed,
    Step::LroFail,
    Step::LroStuck,
    Step::TokenDown,
    Step::RotateSecret,
    Step::DeleteSecret,
    Step::KillMidDeploy,
    Step::KillMidDelete,
    Step::KillRandom,
    Step::Failover,
    Step::Drift,
    Step::Health,
];

/// What happens to the desired state during a step (so that the fault meets real work).
#[derive(Clone, Copy, Debug)]
enum Action {
    None,
    Create,
    Update,
    Delete,
}

/// Totals over schedules.
#[derive(Debug, Default)]
struct Totals {
    schedules: u64,
    faults: u64,
    objects: u64,
    requests: u64,
    faulted: u64,
    violations: Vec<String>,
    by_step: BTreeMap<String, u64>,
}

impl Totals {
    fn add(&mut self, s: &Schedule) {
        self.schedules += 1;
        self.faults += s.faults;
        self.objects += s.objects_checked;
        self.requests += s.requests;
        self.faulted += s.faulted;
        for v in &s.violations {
            self.violations
                .push(format!("schedule seed {:#x}: {v}", s.seed));
        }
        for (k, v) in &s.by_step {
            *self.by_step.entry(format!("{k:?}")).or_default() += v;
        }
    }

    fn summary(&self, what: &str, base: u64, elapsed: Duration) -> String {
        format!(
            "chaos summary: {{\"suite\":\"{what}\",\"seed\":\"{base:#x}\",\"schedules\":{},\"faults\":{},\"objects\":{},\"azureRequests\":{},\"faultedRequests\":{},\"violations\":{},\"seconds\":{},\"steps\":{}}}",
            self.schedules,
            self.faults,
            self.objects,
            self.requests,
            self.faulted,
            self.violations.len(),
            elapsed.as_secs(),
            serde_json::to_string(&self.by_step).unwrap()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_schedules() {
    let env = support::env();
    run_suite(env, "azure+process", "CHAOS_SCHEDULES", 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_schedules_with_api_server_restarts() {
    // A control plane of its own: restarting the shared one would disturb every other test.
    let env = TestEnv::private("chaos");
    run_suite(&env, "api-restart", "CHAOS_RESTART_SCHEDULES", 1, true).await;
}

async fn run_suite(env: &TestEnv, what: &str, count_var: &str, default: u64, restarts: bool) {
    let base = env_u64("CHAOS_SEED").unwrap_or(DEFAULT_SEED);
    let n = env_u64(count_var).unwrap_or(default);
    let started = Instant::now();
    let mut totals = Totals::default();
    for i in 0..n {
        let seed = schedule_seed(base, i + u64::from(restarts) * 1_000_000);
        let t = Instant::now();
        let s = run_schedule(env, seed, restarts).await;
        eprintln!(
            "chaos [{what}] schedule {}/{n} seed {seed:#x}: {:?} faults={} faulted-requests={} objects={} violations={} in {:?}",
            i + 1,
            s.steps,
            s.faults,
            s.faulted,
            s.objects_checked,
            s.violations.len(),
            t.elapsed()
        );
        totals.add(&s);
    }
    let summary = totals.summary(what, base, started.elapsed());
    eprintln!("{summary}");
    if let Some(path) = std::env::var_os("CHAOS_SUMMARY_FILE") {
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&summary);
        text.push('\n');
        fs::write(&path, text).unwrap();
    }
    assert!(
        totals.violations.is_empty(),
        "{} violation(s); rerun one with CHAOS_SEED=<its seed> CHAOS_SCHEDULES=1:\n{}",
        totals.violations.len(),
        totals.violations.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// one schedule

/// One extension object in the schedule's model.
#[derive(Debug, Clone)]
struct Gae {
    vm: usize,
    frequency: String,
    live: bool,
}

/// A window during which deployments on a machine fail (so one more PUT each is expected).
#[derive(Debug, Clone)]
struct FailWindow {
    machine: String,
    from: SystemTime,
    until: Option<SystemTime>,
}

/// A 429 storm: when it ran, its Retry-After.
#[derive(Debug, Clone)]
struct Storm {
    from: SystemTime,
    until: SystemTime,
    retry_after: Duration,
}

struct Schedule {
    seed: u64,
    ns: String,
    dir: PathBuf,
    emu: Emulator,
    admin: Client,
    spec: OperatorSpec,
    operators: Vec<Operator>,
    started_ops: u32,
    killed: BTreeSet<String>,
    gaes: BTreeMap<String, Gae>,
    next_vm: usize,
    required_puts: BTreeMap<String, u32>,
    required_deletes: BTreeMap<String, u32>,
    fail_windows: Vec<FailWindow>,
    storms: Vec<Storm>,
    provider_puts_required: u32,
    secrets: Vec<String>,
    secret: String,
    sa_token: String,
    token_header: String,
    steps: Vec<Step>,
    by_step: BTreeMap<Step, u64>,
    faults: u64,
    objects_checked: u64,
    requests: u64,
    /// Requests a fault shaped.
    faulted: u64,
    violations: Vec<String>,
}

fn machine(name: &str) -> String {
    az::machine_id(RG, name)
}

fn vm_name(i: usize) -> String {
    format!("vm-{i}")
}

fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/clusters/{CLUSTER}"
    )
}

fn ext_path(machine_id: &str) -> String {
    format!("{machine_id}/extensions/{EXT}").to_ascii_lowercase()
}

fn status_props(healthy: bool) -> AttestationStatusProps {
    AttestationStatusProps {
        attest_secure_boot_enabled: Some("Enabled".into()),
        attestation_cert_validated: Some("Valid".into()),
        boot_integrity_validated: Some(if healthy { "Valid" } else { "Invalid" }.into()),
        linux_kernel_version: Some("0".into()),
        health_status: Some(if healthy { "Healthy" } else { "Unhealthy" }.into()),
        error_message: (!healthy).then(|| "Boot integrity validation failed".into()),
        timestamp: Some(format_status_timestamp(SystemTime::now())),
        provisioning_state: Some("Succeeded".into()),
        ..AttestationStatusProps::default()
    }
}

/// The emulated world: one Azure Local cluster with its attestation provider, VMs for
/// extensions and VMs watched by hand.
async fn world() -> Emulator {
    let emu = Emulator::start(EmulatorConfig {
        // Tokens are fetched again every 15 s, so the token endpoint matters during a schedule.
        token_lifetime: Duration::from_secs(30),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the Azure emulator");
    emu.add_service_principal(az::TENANT, az::CLIENT_ID, az::CLIENT_SECRET);
    let provider = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Attestation/attestationProviders/{PROVIDER}"
    );
    let vm = |name: &str| {
        json!({"id": machine(name), "location": "eastus",
            "vm": {"securityType": "TrustedLaunch", "enableTpm": true, "secureBootEnabled": true,
                "powerState": "Running",
                "networkInterfaces": [format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/networkInterfaces/{name}-nic")]}})
    };
    let mut machines: Vec<Value> = (0..VMS).map(|i| vm(&vm_name(i))).collect();
    machines.extend((0..WATCHED).map(|i| vm(&format!("watch-{i}"))));
    let seed = json!({
        "clusters": [{"id": cluster_id(), "location": "eastus", "aadTenantId": az::TENANT,
            "isolatedVmAttestationConfiguration": {
                "attestationResourceId": provider,
                "relyingPartyServiceEndpoint": "https://dp.stackhci.azure.com/eastus/igvmAttestation/test",
                "attestationServiceEndpoint": emu.attest_uri(PROVIDER)}}],
        "attestationProviders": [{"id": provider, "location": "eastus"}],
        "machines": machines,
    });
    emu.apply_seed(&Seed::parse(&seed.to_string()).unwrap())
        .unwrap();
    // Deployments take three polls (about 3 s), so there is an operation in flight to kill into.
    emu.set_lro_config(LroConfig {
        polls: 3,
        ..LroConfig::default()
    });
    emu
}

#[allow(clippy::too_many_lines)] // one story: set up, faults, final check
async fn run_schedule(env: &TestEnv, seed: u64, api_restarts: bool) -> Schedule {
    let mut rng = Rng(seed);
    let admin = env.client().await;
    let ns = support::namespace(&admin, "chaos").await;
    let suffix = ns[ns.len() - 8..].to_owned();
    let release = format!("chaos-{suffix}");
    let fullname = format!("{release}-guest-attestation-operator");
    let dir = std::env::temp_dir().join(format!("gao-chaos-{suffix}"));
    fs::create_dir_all(&dir).unwrap();

    // The chart's RBAC (Roles in this namespace, the Lease here) and a token of its
    // ServiceAccount: the operator runs exactly as installed.
    operator::helm_ok(
        env,
        &[
            "install",
            &release,
            CHART,
            "-n",
            &ns,
            "--force-conflicts",
            "--set",
            &format!("watchNamespaces={{{ns}}}"),
        ],
    );
    let sa_token = operator::service_account_token(&admin, &ns, &fullname).await;
    let kubeconfig = dir.join("operator.kubeconfig");
    operator::token_kubeconfig(env, &kubeconfig, &ns, &sa_token);

    let emu = world().await;
    let ca = dir.join("emulator-ca.pem");
    emu.write_ca(&ca).unwrap();
    let token_header = emu
        .mint_token(
            az::TENANT,
            az::CLIENT_ID,
            "https://management.azure.com",
            60,
        )
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let spec = OperatorSpec {
        kubeconfig,
        namespaces: vec![ns.clone()],
        lease_ns: ns.clone(),
        lease: fullname.clone(),
        azure_endpoint: emu.endpoint(),
        ca,
        dir: dir.clone(),
        suffix,
        extra_args: [
            "--interval-scale",
            "0.002",
            "--lease-duration",
            "6s",
            "--renew-deadline",
            "4s",
            "--retry-period",
            "1s",
            "--shutdown-timeout",
            "5s",
            "--crd-timeout",
            "30s",
            "--azure-request-timeout",
            "4s",
            "--azure-connect-timeout",
            "2s",
            // Also the bound after which a blocked delete gives up: far above any fault here.
            "--operation-timeout",
            "90s",
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    let mut s = Schedule {
        seed,
        ns,
        dir,
        emu,
        admin,
        spec,
        operators: Vec::new(),
        started_ops: 0,
        killed: BTreeSet::new(),
        gaes: BTreeMap::new(),
        next_vm: 0,
        required_puts: BTreeMap::new(),
        required_deletes: BTreeMap::new(),
        fail_windows: Vec::new(),
        storms: Vec::new(),
        provider_puts_required: 0,
        secrets: vec![az::CLIENT_SECRET.to_owned()],
        secret: az::CLIENT_SECRET.to_owned(),
        sa_token,
        token_header,
        steps: Vec::new(),
        by_step: BTreeMap::new(),
        faults: 0,
        objects_checked: 0,
        requests: 0,
        faulted: 0,
        violations: Vec::new(),
    };

    // The desired state: the credentials, the provider (adopted, policy kept), 2-3 extensions
    // and the stand-alone statuses.
    s.put_secret().await;
    s.apply_provider().await;
    for i in 0..WATCHED {
        let healthy = rng.chance(60);
        s.emu
            .set_attestation_status(&machine(&format!("watch-{i}")), Some(status_props(healthy)))
            .unwrap();
        s.apply(
            "AttestationStatus",
            &format!("watch-{i}"),
            json!({"machineId": machine(&format!("watch-{i}")), "credentialsRef": {"name": "azure-sp"}}),
        )
        .await;
    }
    let first = rng.range(2, 3);
    for _ in 0..first {
        s.create_gae(&mut rng).await;
    }
    s.start_operator();
    if rng.chance(50) {
        s.start_operator(); // a standby from the start
    }

    // The faults.
    let steps = rng.range(4, 6);
    for _ in 0..steps {
        let mut step = rng.pick(STEPS);
        if api_restarts && rng.chance(50) {
            step = Step::ApiRestart;
        }
        s.steps.push(step);
        *s.by_step.entry(step).or_default() += 1;
        s.run_step(env, step, &mut rng).await;
        s.supervise();
    }
    if api_restarts && !s.steps.contains(&Step::ApiRestart) {
        s.steps.push(Step::ApiRestart);
        *s.by_step.entry(Step::ApiRestart).or_default() += 1;
        s.run_step(env, Step::ApiRestart, &mut rng).await;
    }

    // The end of the storm: Azure healthy again, the credentials in place, an operator running.
    s.emu.clear_faults();
    s.emu
        .set_default_extension_behavior(ExtensionBehavior::Succeed);
    for i in 0..VMS {
        let m = machine(&vm_name(i));
        s.emu
            .set_extension_behavior(&m, ExtensionBehavior::Succeed)
            .unwrap();
        s.emu
            .resolve_operations(&m, &ExtensionBehavior::Succeed)
            .unwrap();
    }
    s.close_fail_windows();
    s.put_secret().await;
    s.supervise();
    s.final_check().await;
    s.controls();
    s.stop_operators().await;
    s.scan_logs();
    if s.violations.is_empty() {
        let _ = fs::remove_dir_all(&s.dir);
    } else {
        s.violations
            .push(format!("operator logs kept in {}", s.dir.display()));
    }
    s
}

impl Schedule {
    // ----- desired state ----------------------------------------------------------------------

    async fn apply(&self, kind: &str, name: &str, spec: Value) {
        let api = dynamic_api(&self.admin, &self.ns, kind);
        let obj = json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec});
        let (params, patch) = (PatchParams::apply("chaos-test").force(), Patch::Apply(&obj));
        retry_kube("apply", || api.patch(name, &params, &patch)).await;
    }

    async fn apply_provider(&mut self) {
        self.apply(
            "AttestationProvider",
            "chaos",
            json!({"clusterRef": {"resourceId": cluster_id()}, "location": "eastus",
                "recreateIfMissing": true, "managementPolicy": "Manage", "deletionPolicy": "Retain",
                "credentialsRef": {"name": "azure-sp"},
                "policy": {"attestationType": "AzureGuest", "apiVersion": "2022-08-01", "text": POLICY}}),
        )
        .await;
    }

    async fn put_secret(&self) {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), &self.ns);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure-sp"},
            "stringData": {"tenantId": az::TENANT, "clientId": az::CLIENT_ID, "clientSecret": self.secret}});
        let (params, patch) = (
            PatchParams::apply("chaos-test").force(),
            Patch::Apply(&secret),
        );
        retry_kube("apply secret", || api.patch("azure-sp", &params, &patch)).await;
    }

    async fn apply_gae(&self, name: &str) {
        let g = &self.gaes[name];
        self.apply(
            "GuestAttestationExtension",
            name,
            json!({"machineId": machine(&vm_name(g.vm)), "clusterId": cluster_id(),
                "credentialsRef": {"name": "azure-sp"},
                "settings": {"ascReportingFrequency": g.frequency}}),
        )
        .await;
    }

    /// Chooses the next write (a new extension on a fresh VM, else a spec change) without
    /// making it: (name, whether it is a creation).
    /// (name, VM index, whether it is a creation).
    fn plan_write(&self, rng: &mut Rng) -> Option<(String, usize, bool)> {
        if self.next_vm < VMS {
            return Some((format!("gae-{}", self.next_vm), self.next_vm, true));
        }
        let live = self.live_gaes();
        if live.is_empty() {
            return None;
        }
        let name = live[usize::try_from(rng.range(0, live.len() as u64 - 1)).unwrap()].clone();
        let vm = self.gaes[&name].vm;
        Some((name, vm, false))
    }

    /// Makes the write chosen by [`Self::plan_write`].
    async fn write_planned(&mut self, name: &str, create: bool) {
        let mut rng = Rng(self.seed ^ 0x5eed);
        if create {
            self.create_gae(&mut rng).await;
        } else {
            self.update_named(name, &mut rng).await;
        }
    }

    /// A new extension on a fresh VM; its name.
    async fn create_gae(&mut self, rng: &mut Rng) -> Option<String> {
        if self.next_vm >= VMS {
            return None;
        }
        let vm = self.next_vm;
        self.next_vm += 1;
        let name = format!("gae-{vm}");
        self.gaes.insert(
            name.clone(),
            Gae {
                vm,
                frequency: format!("{}H", rng.range(1, 8)),
                live: true,
            },
        );
        *self
            .required_puts
            .entry(ext_path(&machine(&vm_name(vm))))
            .or_default() += 1;
        self.apply_gae(&name).await;
        Some(name)
    }

    /// A spec change (another reporting frequency) of a live extension; its name.
    async fn update_gae(&mut self, rng: &mut Rng) -> Option<String> {
        let live: Vec<String> = self.live_gaes();
        if live.is_empty() {
            return None;
        }
        let name = live[usize::try_from(rng.range(0, live.len() as u64 - 1)).unwrap()].clone();
        self.update_named(&name, rng).await;
        Some(name)
    }

    /// A spec change of extension `name`.
    async fn update_named(&mut self, name: &str, rng: &mut Rng) {
        let g = self.gaes.get_mut(name).unwrap();
        let old = g.frequency.clone();
        while g.frequency == old {
            g.frequency = format!("{}H", rng.range(1, 8));
        }
        let vm = g.vm;
        *self
            .required_puts
            .entry(ext_path(&machine(&vm_name(vm))))
            .or_default() += 1;
        self.apply_gae(name).await;
    }

    /// Deletes a live extension object whose extension exists in Azure (if any); its name.
    async fn delete_gae(&mut self, rng: &mut Rng) -> Option<String> {
        let live: Vec<String> = self
            .live_gaes()
            .into_iter()
            .filter(|n| {
                self.emu
                    .extension(&machine(&vm_name(self.gaes[n].vm)), EXT)
                    .is_some()
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        let name = live[usize::try_from(rng.range(0, live.len() as u64 - 1)).unwrap()].clone();
        let g = self.gaes.get_mut(&name).unwrap();
        g.live = false;
        let vm = g.vm;
        *self
            .required_deletes
            .entry(ext_path(&machine(&vm_name(vm))))
            .or_default() += 1;
        let api = dynamic_api(&self.admin, &self.ns, "GuestAttestationExtension");
        let n = name.clone();
        retry_kube("delete", || async {
            match api.delete(&n, &DeleteParams::default()).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                r => r.map(|_| ()),
            }
        })
        .await;
        Some(name)
    }

    fn live_gaes(&self) -> Vec<String> {
        self.gaes
            .iter()
            .filter(|(_, g)| g.live)
            .map(|(n, _)| n.clone())
            .collect()
    }

    async fn act(&mut self, action: Action, rng: &mut Rng) -> Option<String> {
        match action {
            Action::None => None,
            Action::Create => match self.create_gae(rng).await {
                Some(n) => Some(n),
                None => self.update_gae(rng).await,
            },
            Action::Update => self.update_gae(rng).await,
            Action::Delete => self.delete_gae(rng).await,
        }
    }

    fn random_action(rng: &mut Rng) -> Action {
        rng.pick(&[
            Action::None,
            Action::Create,
            Action::Create,
            Action::Update,
            Action::Delete,
        ])
    }

    // ----- operators ----------------------------------------------------------------------------

    fn start_operator(&mut self) {
        self.started_ops += 1;
        let op = Operator::start(&self.spec, &format!("op{}", self.started_ops));
        self.operators.push(op);
    }

    /// Reaps exited operators (a death we did not cause, other than exit 1 after losing the
    /// Lease, is a violation) and keeps one running, as a Deployment would.
    fn supervise(&mut self) {
        let mut i = 0;
        while i < self.operators.len() {
            let op = &mut self.operators[i];
            if let Some(status) = op.try_exited() {
                let code = status.code();
                let ours = self.killed.contains(&op.identity);
                let log = op.log_text();
                if log.contains("panicked") || !(ours || code == Some(1) || code == Some(0)) {
                    self.violations.push(format!(
                        "{} exited with {code:?} on its own; log tail:\n{}",
                        op.identity,
                        tail(&log, 20)
                    ));
                }
                self.operators.remove(i);
            } else {
                i += 1;
            }
        }
        if self.operators.is_empty() {
            self.start_operator();
        }
    }

    async fn leader(&self) -> Option<usize> {
        let lease = Api::<Lease>::namespaced(self.admin.clone(), &self.ns)
            .get_opt(&self.spec.lease)
            .await
            .ok()
            .flatten()?;
        let holder = lease.spec?.holder_identity?;
        self.operators.iter().position(|o| o.identity == holder)
    }

    /// SIGKILLs the leader (or, before anyone leads, every operator) and starts a replacement.
    async fn kill_leader(&mut self) {
        let victims: Vec<usize> = match self.leader().await {
            Some(i) => vec![i],
            None => (0..self.operators.len()).collect(),
        };
        for &i in victims.iter().rev() {
            let mut op = self.operators.remove(i);
            self.killed.insert(op.identity.clone());
            op.signal("KILL");
            op.exited(Duration::from_secs(10)).await;
        }
        self.faults += 1;
        self.start_operator();
    }

    async fn stop_operators(&mut self) {
        // /metrics of every live process first: scanned for secrets.
        let mut metrics = String::new();
        for op in &self.operators {
            if let Some((_, m)) = op.get("/metrics").await {
                metrics.push_str(&m);
            }
        }
        self.scan("/metrics", &metrics);
        for op in &mut self.operators {
            if op.running() {
                self.killed.insert(op.identity.clone());
                op.signal("TERM");
            }
        }
        for op in &mut self.operators {
            if op.running() {
                let code = op.exited(Duration::from_secs(20)).await;
                if code != Some(0) {
                    self.violations.push(format!(
                        "{} exited with {code:?} after SIGTERM; log tail:\n{}",
                        op.identity,
                        tail(&op.log_text(), 20)
                    ));
                }
            }
        }
        self.operators.clear();
    }

    // ----- faults -------------------------------------------------------------------------------

    fn add_fault(&mut self, fault: Fault) -> FaultId {
        self.faults += 1;
        self.emu.add_fault(fault).unwrap()
    }

    /// Keeps fault `id` armed until it shaped `hits` requests or `max` passed, then removes it.
    async fn hold(&mut self, id: FaultId, hits: u32, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline && self.emu.fault_hits(id).unwrap_or(hits) < hits {
            self.supervise();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.emu.remove_fault(id);
    }

    /// A random ARM or MAA target that gets traffic, with the change that makes it get some:
    /// reads (every refresh reads them), or extension writes with a write to make.
    fn target(rng: &mut Rng) -> (Option<&'static str>, PathMatch, Action) {
        match rng.range(0, 3) {
            0 => (
                Some("PUT"),
                PathMatch::Contains("/extensions/".into()),
                rng.pick(&[Action::Create, Action::Update]),
            ),
            1 => (
                Some("DELETE"),
                PathMatch::Contains("/extensions/".into()),
                Action::Delete,
            ),
            _ => {
                let family = rng.pick(&[
                    "/extensions/",
                    "/virtualmachineinstances/",
                    "/machines/",
                    "/clusters/",
                    "/attestationproviders/",
                    "/policies/",
                    "/operationstatus/",
                    "/subscriptions/",
                ]);
                let method = rng.pick(&[None, Some("GET")]);
                (
                    method,
                    PathMatch::Contains(family.to_owned()),
                    Self::random_action(rng),
                )
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per fault
    async fn run_step(&mut self, env: &TestEnv, step: Step, rng: &mut Rng) {
        match step {
            Step::Throttle => {
                let secs = rng.range(2, 3);
                let hits = u32::try_from(rng.range(2, 4)).unwrap();
                let action = if rng.chance(50) {
                    FaultAction::throttle(secs)
                } else {
                    FaultAction::throttle_until(secs)
                };
                let from = SystemTime::now();
                let id = self.add_fault(Fault {
                    method: None,
                    path: PathMatch::Contains(format!("/subscriptions/{SUB}/")),
                    skip: 0,
                    count: Some(hits),
                    action,
                });
                let a = Self::random_action(rng);
                self.act(a, rng).await;
                self.hold(id, hits, Duration::from_secs(15)).await;
                self.storms.push(Storm {
                    from,
                    until: SystemTime::now(),
                    retry_after: Duration::from_secs(secs),
                });
            }
            Step::ServerError | Step::Reset | Step::Slow | Step::Malformed => {
                let (method, path, a) = Self::target(rng);
                let action = match step {
                    Step::ServerError => {
                        let (code, name) = rng.pick(&[
                            (500, "InternalServerError"),
                            (503, "ServiceUnavailable"),
                            (502, "BadGateway"),
                        ]);
                        FaultAction::status(code, name, "injected by the chaos suite")
                    }
                    Step::Reset => FaultAction::Reset,
                    Step::Slow => FaultAction::delay(Duration::from_millis(rng.range(500, 6000))),
                    _ => {
                        if rng.chance(50) {
                            FaultAction::Malformed
                        } else {
                            FaultAction::Truncate
                        }
                    }
                };
                let hits = u32::try_from(rng.range(1, 5)).unwrap();
                let id = self.add_fault(Fault {
                    method: method.map(str::to_owned),
                    path,
                    skip: u32::try_from(rng.range(0, 1)).unwrap(),
                    count: Some(hits),
                    action,
                });
                self.act(a, rng).await;
                self.hold(id, hits, Duration::from_secs(12)).await;
            }
            Step::LroFail | Step::LroStuck => {
                // The next deployment on a VM fails or hangs: the behaviour is set before the
                // write, since an operation keeps the behaviour it started with.
                let Some((name, vm, create)) = self.plan_write(rng) else {
                    return;
                };
                let m = machine(&vm_name(vm));
                self.faults += 1;
                let from = SystemTime::now();
                let behavior = if step == Step::LroFail {
                    ExtensionBehavior::Fail {
                        code: "VMExtensionProvisioningError".into(),
                        message: "injected: the extension handler failed".into(),
                    }
                } else {
                    ExtensionBehavior::Stuck
                };
                self.emu.set_extension_behavior(&m, behavior).unwrap();
                self.write_planned(&name, create).await;
                if step == Step::LroFail {
                    self.fail_windows.push(FailWindow {
                        machine: ext_path(&m),
                        from,
                        until: None,
                    });
                    // Until the object says the deployment failed (or a while passed).
                    self.wait_condition(&name, "Deployed", "False", Duration::from_secs(20))
                        .await;
                    self.emu
                        .set_extension_behavior(&m, ExtensionBehavior::Succeed)
                        .unwrap();
                    self.close_fail_windows();
                } else {
                    // Until the object reports the operation in flight, and a few polls more.
                    self.wait_condition(&name, "Deployed", "Unknown", Duration::from_secs(20))
                        .await;
                    let polls = self.requests_to(&m).len() + 3;
                    self.wait_requests(&m, polls, Duration::from_secs(8)).await;
                    // Azure resolves it at last: done, or failed (then retried).
                    let end = if rng.chance(50) {
                        ExtensionBehavior::Succeed
                    } else {
                        self.fail_windows.push(FailWindow {
                            machine: ext_path(&m),
                            from,
                            until: None,
                        });
                        ExtensionBehavior::Fail {
                            code: "OperationTimedOut".into(),
                            message: "injected: the operation timed out".into(),
                        }
                    };
                    self.emu
                        .set_extension_behavior(&m, ExtensionBehavior::Succeed)
                        .unwrap();
                    self.emu.resolve_operations(&m, &end).unwrap();
                    self.wait_condition(&name, "Ready", "True", Duration::from_secs(15))
                        .await;
                    self.close_fail_windows();
                }
            }
            Step::TokenDown => {
                let action = if rng.chance(50) {
                    FaultAction::status(503, "temporarily_unavailable", "injected: Entra is down")
                } else {
                    FaultAction::Reset
                };
                let id = self.add_fault(Fault::on(None, "/oauth2/v2.0/token", action));
                // A fresh process has no token: it must fetch one while the endpoint is down.
                self.kill_leader().await;
                let a = Self::random_action(rng);
                self.act(a, rng).await;
                self.hold(id, 4, Duration::from_secs(15)).await;
            }
            Step::RotateSecret => {
                let new = format!("rotated-{:016x}-client-secret", rng.next());
                self.emu
                    .rotate_client_secret(az::TENANT, az::CLIENT_ID, &new);
                self.faults += 1;
                self.secrets.push(new.clone());
                self.secret = new;
                // The Secret follows the rotation a little later (as a GitOps sync would).
                let failures = self.token_failures();
                let deadline = Instant::now() + Duration::from_secs(rng.range(1, 6));
                while Instant::now() < deadline && self.token_failures() == failures {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                self.put_secret().await;
                let a = Self::random_action(rng);
                self.act(a, rng).await;
            }
            Step::DeleteSecret => {
                let api: Api<Secret> = Api::namespaced(self.admin.clone(), &self.ns);
                retry_kube("delete secret", || async {
                    match api.delete("azure-sp", &DeleteParams::default()).await {
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        r => r.map(|_| ()),
                    }
                })
                .await;
                self.faults += 1;
                // Work that needs the Secret: the object must say why it cannot proceed.
                if let Some(name) = self.update_gae(rng).await {
                    let ok = self
                        .wait_for(Duration::from_secs(30), |s| {
                            let name = name.clone();
                            async move {
                                s.get("GuestAttestationExtension", &name)
                                    .await
                                    .is_some_and(|o| {
                                        conditions(&o).iter().any(|c| {
                                            c["status"] == "False"
                                                && c["message"]
                                                    .as_str()
                                                    .is_some_and(|m| m.contains("azure-sp"))
                                        })
                                    })
                            }
                        })
                        .await;
                    if !ok {
                        let o = self.get("GuestAttestationExtension", &name).await;
                        self.violations.push(format!(
                            "{name}: no condition names the deleted Secret azure-sp: {:#}",
                            o.map_or(Value::Null, |o| o.data["status"].clone())
                        ));
                    }
                }
                self.supervise();
                if self
                    .operators
                    .iter()
                    .all(|o| self.killed.contains(&o.identity))
                {
                    self.violations
                        .push("no operator survived the Secret's deletion".into());
                }
                self.put_secret().await;
            }
            Step::KillMidDeploy => {
                let Some(name) = self.act(Action::Create, rng).await else {
                    return;
                };
                let m = machine(&vm_name(self.gaes[&name].vm));
                let before = self.writes_to(&m, "PUT");
                let deadline = Instant::now() + Duration::from_secs(25);
                while Instant::now() < deadline {
                    let in_flight = provisioning_state(&self.emu, &m)
                        .is_some_and(|s| s == "Creating" || s == "Updating");
                    if in_flight && self.writes_to(&m, "PUT") > before {
                        break;
                    }
                    self.supervise();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.kill_leader().await;
            }
            Step::KillMidDelete => {
                let Some(name) = self.act(Action::Delete, rng).await else {
                    return;
                };
                let m = machine(&vm_name(self.gaes[&name].vm));
                let deadline = Instant::now() + Duration::from_secs(25);
                while Instant::now() < deadline {
                    let deleting =
                        provisioning_state(&self.emu, &m).is_some_and(|s| s == "Deleting");
                    if deleting {
                        break;
                    }
                    self.supervise();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.kill_leader().await;
            }
            Step::KillRandom => {
                let a = Self::random_action(rng);
                self.act(a, rng).await;
                // A random instant within the next 3 s: the point of the step is not to choose.
                let at = Duration::from_millis(rng.range(0, 3000));
                tokio::time::sleep(at).await;
                self.kill_leader().await;
            }
            Step::Failover => {
                if self.operators.len() < 2 {
                    self.start_operator();
                }
                // The standby must be up before the leader goes.
                let standby = self.operators.len() - 1;
                let ok = self
                    .wait_for(Duration::from_secs(30), |s| async move {
                        s.leader().await.is_some()
                            && match s.operators.get(standby) {
                                Some(o) => matches!(o.get("/readyz").await, Some((200, _))),
                                None => false,
                            }
                    })
                    .await;
                if !ok {
                    self.violations
                        .push("no leader with a ready standby within 30 s".into());
                    return;
                }
                let a = Self::random_action(rng);
                self.act(a, rng).await;
                let Some(leader) = self.leader().await else {
                    return;
                };
                let mut op = self.operators.remove(leader);
                self.killed.insert(op.identity.clone());
                self.faults += 1;
                if rng.chance(50) {
                    op.signal("TERM");
                    let code = op.exited(Duration::from_secs(20)).await;
                    if code != Some(0) {
                        self.violations.push(format!(
                            "{} exited with {code:?} after SIGTERM",
                            op.identity
                        ));
                    }
                } else {
                    op.signal("KILL");
                    op.exited(Duration::from_secs(10)).await;
                }
                let ok = self
                    .wait_for(Duration::from_secs(20), |s| async move {
                        s.leader().await.is_some()
                    })
                    .await;
                if !ok {
                    self.violations
                        .push("the standby did not take the Lease within 20 s".into());
                }
            }
            Step::ApiRestart => {
                let a = Self::random_action(rng);
                self.act(a, rng).await;
                self.faults += 1;
                let env_dir = env.dir.clone();
                let bin = env.bin_dir.clone();
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new(bin.join("testenv"))
                        .args(["restart-apiserver", "--dir"])
                        .arg(env_dir)
                        .output()
                })
                .await
                .unwrap()
                .expect("run testenv restart-apiserver");
                assert!(
                    out.status.success(),
                    "testenv restart-apiserver: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                self.supervise();
            }
            Step::Drift => {
                // An extension in place, removed behind the operator's back: deployed again.
                let candidates: Vec<String> = self
                    .live_gaes()
                    .into_iter()
                    .filter(|n| {
                        self.emu
                            .extension(&machine(&vm_name(self.gaes[n].vm)), EXT)
                            .is_some_and(|e| e["properties"]["provisioningState"] == "Succeeded")
                    })
                    .collect();
                if candidates.is_empty() {
                    return;
                }
                let name = candidates
                    [usize::try_from(rng.range(0, candidates.len() as u64 - 1)).unwrap()]
                .clone();
                let m = machine(&vm_name(self.gaes[&name].vm));
                if self.emu.remove_extension(&m, EXT) {
                    self.faults += 1;
                    *self.required_puts.entry(ext_path(&m)).or_default() += 1;
                    // Wait for the redeployment before anything else touches this VM.
                    let n = self.writes_to(&m, "PUT") + 1;
                    let m2 = m.clone();
                    self.wait_for(Duration::from_secs(20), |s| {
                        let m = m2.clone();
                        async move { s.writes_to(&m, "PUT") >= n }
                    })
                    .await;
                }
            }
            Step::Health => {
                self.faults += 1;
                if rng.chance(50) {
                    let i = rng.range(0, WATCHED as u64 - 1);
                    let healthy = rng.chance(40);
                    self.emu
                        .set_attestation_status(
                            &machine(&format!("watch-{i}")),
                            Some(status_props(healthy)),
                        )
                        .unwrap();
                } else {
                    let live: Vec<usize> =
                        self.live_gaes().iter().map(|n| self.gaes[n].vm).collect();
                    if live.is_empty() {
                        return;
                    }
                    let vm = rng.pick(&live);
                    let m = machine(&vm_name(vm));
                    self.emu.set_compromised(&m, rng.chance(70)).unwrap();
                    // Reports only while the extension runs; otherwise the next report shows it.
                    let _ = self.emu.report_attestation_now(&m);
                }
            }
        }
    }

    fn close_fail_windows(&mut self) {
        let now = SystemTime::now();
        for w in &mut self.fail_windows {
            w.until.get_or_insert(now);
        }
    }

    fn token_failures(&self) -> usize {
        self.emu
            .requests()
            .iter()
            .filter(|r| r.path.contains("/oauth2/") && r.status != Some(200))
            .count()
    }

    /// Requests to one machine's extension.
    fn requests_to(&self, machine_id: &str) -> Vec<RequestRecord> {
        let p = ext_path(machine_id);
        self.emu
            .requests()
            .into_iter()
            .filter(|r| r.path.to_ascii_lowercase() == p)
            .collect()
    }

    async fn wait_requests(&mut self, machine_id: &str, n: usize, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline && self.requests_to(machine_id).len() < n {
            self.supervise();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn writes_to(&self, machine_id: &str, method: &str) -> usize {
        self.requests_to(machine_id)
            .iter()
            .filter(|r| r.method == method)
            .count()
    }

    // ----- the final check ------------------------------------------------------------------------

    async fn final_check(&mut self) {
        const DEADLINE: Duration = Duration::from_secs(120);
        let deadline = Instant::now() + DEADLINE;
        let mut issues;
        loop {
            self.supervise();
            issues = self.convergence_issues().await;
            if issues.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !issues.is_empty() {
            self.violations.push(format!(
                "not converged within {DEADLINE:?}:\n  {}",
                issues.join("\n  ")
            ));
        }
        self.check_writes();
        self.check_throttling();
        self.scan_cluster().await;
    }

    /// What still differs from the desired state (empty once converged).
    #[allow(clippy::too_many_lines)] // one rule per kind
    async fn convergence_issues(&mut self) -> Vec<String> {
        let mut issues = Vec::new();
        let mut checked = 0u64;
        for (name, g) in &self.gaes {
            checked += 1;
            let m = machine(&vm_name(g.vm));
            let obj = self.get("GuestAttestationExtension", name).await;
            let ext = self.emu.extension(&m, EXT);
            if g.live {
                let Some(o) = obj else {
                    issues.push(format!("{name}: object missing"));
                    continue;
                };
                let ready = condition(&o, "Ready");
                if !observed(&o) || ready.as_ref().is_none_or(|c| c["status"] != "True") {
                    issues.push(format!(
                        "{name}: not Ready at its generation: {}",
                        ready.map_or("no Ready condition".into(), |c| c.to_string())
                    ));
                }
                let Some(ext) = ext else {
                    issues.push(format!("{name}: no extension on {m}"));
                    continue;
                };
                let props = &ext["properties"];
                if props["provisioningState"] != "Succeeded" {
                    issues.push(format!("{name}: extension {}", props["provisioningState"]));
                }
                let freq =
                    &props["settings"]["AttestationConfig"]["AscSettings"]["ascReportingFrequency"];
                if freq != g.frequency.as_str() {
                    issues.push(format!(
                        "{name}: extension reports every {freq}, the spec asks {}",
                        g.frequency
                    ));
                }
            } else {
                if obj.is_some() {
                    issues.push(format!("{name}: deleted object still there (finalizer)"));
                }
                if ext.is_some() {
                    issues.push(format!("{name}: extension left behind on {m} after delete"));
                }
            }
        }
        // Every AttestationStatus tells the truth of the emulator (or Unknown while it cannot).
        match self.list("AttestationStatus").await {
            None => issues.push("cannot list AttestationStatuses".into()),
            Some(list) => {
                for name in self.live_gaes() {
                    if !list
                        .iter()
                        .any(|o| o.metadata.name.as_deref() == Some(&name))
                    {
                        issues.push(format!("{name}: its AttestationStatus is missing"));
                    }
                }
                for o in &list {
                    checked += 1;
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let machine_id = o.data["spec"]["machineId"].as_str().unwrap_or_default();
                    let truth = self
                        .emu
                        .attestation_status(machine_id)
                        .ok()
                        .flatten()
                        .and_then(|p| p.health_status);
                    let health = o.data["status"]["health"].as_str().unwrap_or("none");
                    if !observed(o) {
                        issues.push(format!("ats {name}: generation not observed"));
                    }
                    match truth.as_deref() {
                        Some("Healthy") if health != "Healthy" => {
                            issues.push(format!("ats {name}: {health}, the VM is Healthy"));
                        }
                        Some(t) if t != "Healthy" && health != t => {
                            issues.push(format!("ats {name}: {health}, the VM is {t}"));
                        }
                        None if health == "Healthy" => {
                            issues.push(format!("ats {name}: Healthy, the VM has not reported"));
                        }
                        _ => {}
                    }
                }
            }
        }
        // The provider: adopted, Ready, its policy in force.
        checked += 1;
        match self.get("AttestationProvider", "chaos").await {
            None => issues.push("provider: missing".into()),
            Some(o) => {
                let ready = condition(&o, "Ready");
                if !observed(&o) || ready.as_ref().is_none_or(|c| c["status"] != "True") {
                    issues.push(format!(
                        "provider: not Ready: {}",
                        ready.map_or("no Ready condition".into(), |c| c.to_string())
                    ));
                }
            }
        }
        match self.emu.policy(PROVIDER, "AzureGuest") {
            Ok(p) if p.text.trim() == POLICY.trim() => {}
            Ok(p) => issues.push(format!("provider: policy in force is {:?}", p.text)),
            Err(e) => issues.push(format!("provider: {e}")),
        }
        self.objects_checked = checked;
        issues
    }

    /// (c) No Azure write the desired state did not need, and (b) no delete skipped.
    fn check_writes(&mut self) {
        let records = self.emu.requests();
        self.requests = records.len() as u64;
        let excused = |r: &RequestRecord| r.fault.is_some() || r.status.is_none_or(|s| s >= 300);
        let is_write =
            |r: &RequestRecord| matches!(r.method.as_str(), "PUT" | "PATCH" | "DELETE" | "POST");
        let mut paths: BTreeSet<String> = self.required_puts.keys().cloned().collect();
        paths.extend(self.required_deletes.keys().cloned());
        paths.extend(
            records
                .iter()
                .filter(|r| is_write(r) && r.path.to_ascii_lowercase().contains("/extensions/"))
                .map(|r| r.path.to_ascii_lowercase()),
        );
        for path in &paths {
            let writes: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| is_write(r) && r.path.to_ascii_lowercase() == *path)
                .collect();
            let clean_puts: Vec<&&RequestRecord> = writes
                .iter()
                .filter(|r| r.method != "DELETE" && !excused(r))
                .collect();
            let failed_deployments = clean_puts
                .iter()
                .filter(|r| {
                    self.fail_windows.iter().any(|w| {
                        w.machine == *path
                            && r.time >= w.from
                            && w.until.is_none_or(|u| r.time <= u)
                    })
                })
                .count();
            let required = self.required_puts.get(path).copied().unwrap_or(0) as usize;
            if clean_puts.len() > required + failed_deployments {
                self.violations.push(format!(
                    "{path}: {} extension writes, the desired state needed {required} (+{failed_deployments} retries of failed deployments): {:?}",
                    clean_puts.len(),
                    writes.iter().map(|r| (r.seq, &r.method, r.status, &r.fault)).collect::<Vec<_>>()
                ));
            }
            let deletes: Vec<&&RequestRecord> =
                writes.iter().filter(|r| r.method == "DELETE").collect();
            let clean_deletes = deletes.iter().filter(|r| !excused(r)).count();
            let required = self.required_deletes.get(path).copied().unwrap_or(0) as usize;
            if clean_deletes > required {
                self.violations.push(format!(
                    "{path}: {clean_deletes} extension deletes, the desired state needed {required}"
                ));
            }
            if required > 0 && !deletes.iter().any(|r| r.status.is_some_and(|s| s < 300)) {
                self.violations.push(format!(
                    "{path}: the object was deleted with the extension in place, and no DELETE reached Azure"
                ));
            }
        }
        let provider_writes = records
            .iter()
            .filter(|r| is_write(r) && !excused(r))
            .filter(|r| {
                r.path
                    .to_ascii_lowercase()
                    .contains("/attestationproviders/")
            })
            .count();
        if provider_writes > self.provider_puts_required as usize {
            self.violations.push(format!(
                "{provider_writes} attestation provider writes, none needed (it was adopted)"
            ));
        }
        let policy_writes = records
            .iter()
            .filter(|r| is_write(r) && !excused(r))
            .filter(|r| r.path.to_ascii_lowercase().contains("/policies/"))
            .count();
        if policy_writes > 1 {
            self.violations
                .push(format!("{policy_writes} policy writes, one needed"));
        }
    }

    /// No request to a throttled ARM scope (subscription and operation kind; one principal here)
    /// before the `Retry-After` of a 429 elapsed. Requests already in flight when the 429 was sent
    /// (arriving within 500 ms of it) are not counted.
    fn check_throttling(&mut self) {
        let records = self.emu.requests();
        let kind = |m: &str| match m {
            "GET" | "HEAD" => 0,
            "DELETE" => 2,
            _ => 1,
        };
        for storm in &self.storms {
            for r in records
                .iter()
                .filter(|r| r.status == Some(429) && r.time >= storm.from && r.time <= storm.until)
            {
                let Some(sub) = &r.subscription else { continue };
                let from = r.time + Duration::from_millis(500);
                let until = r.time + storm.retry_after - Duration::from_millis(50);
                let early: Vec<&RequestRecord> = records
                    .iter()
                    .filter(|q| q.seq > r.seq && q.time > from && q.time < until)
                    .filter(|q| {
                        q.subscription.as_ref() == Some(sub) && kind(&q.method) == kind(&r.method)
                    })
                    .collect();
                if !early.is_empty() {
                    self.violations.push(format!(
                        "request #{} got 429 with Retry-After {:?}, and {} request(s) to the same scope came before it elapsed: {:?}",
                        r.seq,
                        storm.retry_after,
                        early.len(),
                        early
                            .iter()
                            .map(|q| (q.seq, &q.method, &q.path, q.time.duration_since(r.time).unwrap_or_default()))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
    }

    /// Negative controls: the checks above can fail. With no write required, the operator's
    /// writes must be flagged; a text holding the secret must be flagged.
    fn controls(&mut self) {
        let kept = self.violations.len();
        let (puts, deletes, windows) = (
            std::mem::take(&mut self.required_puts),
            std::mem::take(&mut self.required_deletes),
            std::mem::take(&mut self.fail_windows),
        );
        self.check_writes();
        let flagged_writes = self.violations.len() > kept;
        self.violations.truncate(kept);
        (self.required_puts, self.required_deletes, self.fail_windows) = (puts, deletes, windows);
        let secret = self.secret.clone();
        self.scan("control", &format!("x{secret}x"));
        let flagged_secret = self.violations.len() > kept;
        self.violations.truncate(kept);
        if !flagged_writes {
            self.violations
                .push("control: the write check flagged nothing when no write was needed".into());
        }
        if !flagged_secret {
            self.violations
                .push("control: the secret scan missed the client secret".into());
        }
        self.faulted = self
            .emu
            .requests()
            .iter()
            .filter(|r| r.fault.is_some())
            .count() as u64;
    }

    /// A place (log, Event, status, metrics) must hold no secret and no token.
    fn scan(&mut self, place: &str, text: &str) {
        let mut needles: Vec<(&str, String)> = self
            .secrets
            .iter()
            .map(|s| ("a client secret", s.clone()))
            .collect();
        needles.push(("the ServiceAccount token", self.sa_token.clone()));
        needles.push(("an emulator bearer token", self.token_header.clone()));
        needles.push(("a bearer header", "Bearer ey".to_owned()));
        for (what, needle) in needles {
            if text.contains(&needle) {
                self.violations.push(format!("{place} contains {what}"));
            }
        }
    }

    async fn scan_cluster(&mut self) {
        let events = Api::<Event>::namespaced(self.admin.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .map(|l| serde_json::to_string(&l.items).unwrap())
            .unwrap_or_default();
        self.scan("Events", &events);
        for kind in [
            "GuestAttestationExtension",
            "AttestationStatus",
            "AttestationProvider",
        ] {
            let text = self
                .list(kind)
                .await
                .map(|l| serde_json::to_string(&l).unwrap())
                .unwrap_or_default();
            self.scan(&format!("{kind} objects"), &text);
        }
    }

    fn scan_logs(&mut self) {
        let mut logs = Vec::new();
        for entry in fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                logs.push((
                    path.display().to_string(),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        if logs.is_empty() {
            self.violations.push("no operator log written".into());
        }
        for (path, text) in logs {
            self.scan(&path, &text);
        }
    }

    // ----- reading Kubernetes (tolerating an API server that restarts) --------------------------

    async fn get(&self, kind: &str, name: &str) -> Option<DynamicObject> {
        dynamic_api(&self.admin, &self.ns, kind)
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    async fn list(&self, kind: &str) -> Option<Vec<DynamicObject>> {
        dynamic_api(&self.admin, &self.ns, kind)
            .list(&ListParams::default())
            .await
            .ok()
            .map(|l| l.items)
    }

    /// Polls `check` every 200 ms until it holds (true) or `max` passed (false).
    async fn wait_for<'a, F, Fut>(&'a self, max: Duration, check: F) -> bool
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = bool> + 'a,
    {
        let deadline = Instant::now() + max;
        loop {
            if check(self).await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_condition(&mut self, name: &str, type_: &str, status: &str, max: Duration) {
        let (name, type_, status) = (name.to_owned(), type_.to_owned(), status.to_owned());
        self.wait_for(max, |s| {
            let (name, type_, status) = (name.clone(), type_.clone(), status.clone());
            async move {
                s.get("GuestAttestationExtension", &name)
                    .await
                    .is_some_and(|o| {
                        conditions(&o)
                            .iter()
                            .any(|c| c["type"] == type_.as_str() && c["status"] == status.as_str())
                    })
            }
        })
        .await;
        self.supervise();
    }
}

fn provisioning_state(emu: &Emulator, machine_id: &str) -> Option<String> {
    emu.extension(machine_id, EXT).and_then(|e| {
        e["properties"]["provisioningState"]
            .as_str()
            .map(str::to_owned)
    })
}

fn conditions(o: &DynamicObject) -> Vec<Value> {
    o.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn condition(o: &DynamicObject, type_: &str) -> Option<Value> {
    conditions(o).into_iter().find(|c| c["type"] == type_)
}

fn observed(o: &DynamicObject) -> bool {
    o.data["status"]["observedGeneration"].as_i64() == o.metadata.generation
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Retries a Kubernetes write for up to 60 s (the API server may be restarting).
async fn retry_kube<T, F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
