//! Test support: one real control plane (kube-apiserver + etcd from tests/control-plane) per
//! test run, shared by every test, each test isolating itself in its own namespace.
//!
//! The control plane is reused from `TESTENV_DIR` (as `.ci/run` starts it) or started here with
//! `testenv up --exit-on-stdin-eof`, holding its stdin so it stops when this process ends. It is
//! never skipped: if it cannot start, the test fails and says how to build it.

pub mod azure;
pub mod operator;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use k8s_openapi::api::{core::v1::Namespace, events::v1::Event};
use kube::{
    Api, Client, Config,
    api::{DynamicObject, GroupVersionKind, ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    discovery::ApiResource,
};

/// The shared control plane.
pub struct TestEnv {
    /// Directory with admin.kubeconfig, ca.crt, audit.log.
    pub dir: PathBuf,
    /// Directory with kubectl, helm and friends.
    pub bin_dir: PathBuf,
    /// The child we started, kept alive with its stdin open (None when reused).
    _child: Option<Mutex<Child>>,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane for this test run, started on first use, with the CRDs installed.
pub fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_test_writer()
            .try_init();
        let bin_dir = bin_dir();
        let (dir, child) = if let Some(dir) = std::env::var_os("TESTENV_DIR") {
            (PathBuf::from(dir), None)
        } else {
            let dir = std::env::temp_dir().join(format!("gao-testenv-{}", std::process::id()));
            let (dir, child) = start(&bin_dir, &dir);
            (dir, Some(Mutex::new(child)))
        };
        let env = TestEnv {
            dir,
            bin_dir,
            _child: child,
        };
        env.install_crds();
        env
    })
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESTENV_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let script = repo_root().join("tests/control-plane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run `make control-plane`",
                script.display()
            )
        });
    assert!(
        out.status.success(),
        "tests/control-plane/build.sh failed; run `make control-plane` and read its output"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

/// kubectl (admin) with `input` on stdin.
pub fn kubectl_stdin(args: &[&str], input: &str) -> Output {
    let mut child = env()
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn start(bin_dir: &Path, dir: &Path) -> (PathBuf, Child) {
    let testenv = bin_dir.join("testenv");
    let mut child = Command::new(&testenv)
        .args(["up", "--audit", "--exit-on-stdin-eof", "--dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; run `make control-plane`",
                testenv.display()
            )
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read testenv output");
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!("testenv did not become ready ({e}): {line:?}; see its logs above")
    });
    assert_eq!(ready["ready"], true, "testenv: {line}");
    let dir = ready["dir"]
        .as_str()
        .map_or_else(|| dir.to_owned(), PathBuf::from);
    (dir, child)
}

impl TestEnv {
    /// A control plane of its own (not the shared one), for a test that disturbs it, e.g.
    /// restarts its API server; stopped when dropped. The CRDs are installed.
    #[allow(dead_code)] // used by the fault schedules
    pub fn private(name: &str) -> TestEnv {
        let _ = env(); // the shared set-up (crypto provider, logs) and the binaries it checked
        let bin_dir = bin_dir();
        let dir = std::env::temp_dir().join(format!("gao-testenv-{name}-{}", std::process::id()));
        let (dir, child) = start(&bin_dir, &dir);
        let env = TestEnv {
            dir,
            bin_dir,
            _child: Some(Mutex::new(child)),
        };
        env.install_crds();
        env
    }

    /// Restarts the API server of this control plane (same port, PKI and etcd data) with
    /// `testenv restart-apiserver`, returning once it is ready again.
    #[allow(dead_code)] // used by the fault schedules
    pub fn restart_apiserver(&self) {
        let out = Command::new(self.bin_dir.join("testenv"))
            .args(["restart-apiserver", "--dir"])
            .arg(&self.dir)
            .output()
            .expect("run testenv restart-apiserver");
        assert!(
            out.status.success(),
            "testenv restart-apiserver: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A kubectl command bound to the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd
    }

    /// Runs kubectl and returns its stdout, failing the test with its stderr otherwise.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl().args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn install_crds(&self) {
        let crds = repo_root().join("crds");
        let crds = crds.to_str().expect("utf-8 path");
        self.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", crds]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            crds,
        ]);
    }

    /// An admin client (built from the kubeconfig file, never from the ambient KUBECONFIG).
    pub async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(self.kubeconfig()).expect("read admin kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("admin kubeconfig");
        Client::try_from(config).expect("admin client")
    }
}

/// A fresh, randomly named namespace for one test (namespaces are never reused: a lone
/// apiserver leaves deleted ones Terminating).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand_u32());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"guestattestation.dev/test": prefix}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    #[allow(clippy::cast_possible_truncation)] // only a random suffix
    let v = h.finish() as u32;
    v
}

/// Waits for `check` to hold, polling every 100 ms, failing after `timeout` with `what`.
#[allow(dead_code)] // used by the controller tests
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `name` every 100 ms until `check` holds, returning it; fails after `timeout` with the
/// last object seen.
pub async fn wait_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let obj = api.get(name).await.expect("get object");
        if check(&obj) {
            return obj;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} on {name}; last seen {obj:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Events (events.k8s.io) in `ns` about the object `name`.
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Waits for an Event of `type_` and `reason` about `name`, failing after `timeout` with the
/// events seen.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
    timeout: Duration,
) -> Event {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let events = events(client, ns, name).await;
        if let Some(e) = events
            .iter()
            .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
        {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for a {type_} {reason} event for {name}; events: {:?}",
            events
                .iter()
                .map(|e| (e.type_.clone(), e.reason.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An API for one of the operator's kinds in `ns`, as untyped objects.
pub fn dynamic_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("guestattestation.dev", "v1alpha1", kind);
    let plural = match kind {
        "AttestationProvider" => "attestationproviders",
        "GuestAttestationExtension" => "guestattestationextensions",
        _ => "attestationstatuses",
    };
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}
