//! The operator binary as a separate process, as a Deployment would run it: a ServiceAccount
//! token kubeconfig, its own /metrics /healthz /readyz port, JSON logs in a file, signals.
//! Shared by the chart tests (tests/it/chart.rs) and the fault schedules (tests/it/chaos.rs).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{
    Api, Client, Config,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

use super::TestEnv;

/// The operator binary built by cargo for this test target.
pub const OPERATOR: &str = env!("CARGO_BIN_EXE_guest-attestation-operator");

/// How to run one operator process.
#[derive(Clone, Debug)]
pub struct OperatorSpec {
    /// Kubeconfig (a ServiceAccount token, see [`token_kubeconfig`]).
    pub kubeconfig: PathBuf,
    /// Namespaces to watch.
    pub namespaces: Vec<String>,
    /// Namespace and name of the Lease.
    pub lease_ns: String,
    /// Name of the Lease.
    pub lease: String,
    /// Base URL of the Azure emulator.
    pub azure_endpoint: String,
    /// PEM file of the emulator's CA.
    pub ca: PathBuf,
    /// Where the logs go (`{identity}.log`).
    pub dir: PathBuf,
    /// Appended to every identity (unique per run).
    pub suffix: String,
    /// More flags.
    pub extra_args: Vec<String>,
}

/// One operator process; killed (SIGKILL) when dropped.
pub struct Operator {
    /// Its identity in the Lease.
    pub identity: String,
    /// Its HTTP port on loopback.
    pub port: u16,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    child: Option<Child>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    /// Starts `{name}-{suffix}` with `spec`.
    pub fn start(spec: &OperatorSpec, name: &str) -> Self {
        let identity = format!("{name}-{}", spec.suffix);
        let port = free_port();
        let log = spec.dir.join(format!("{identity}.log"));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(OPERATOR)
            .arg("--kubeconfig")
            .arg(&spec.kubeconfig)
            .args(["--namespace", &spec.namespaces.join(",")])
            .args(["--lease-namespace", &spec.lease_ns])
            .args(["--lease-name", &spec.lease])
            .args(["--identity", &identity])
            .args(["--http-bind-address", &format!("127.0.0.1:{port}")])
            .args(["--azure-endpoint", &spec.azure_endpoint])
            .arg("--extra-ca-file")
            .arg(&spec.ca)
            .args(["--log-format", "json", "--log-level", "info"])
            .args(&spec.extra_args)
            // The operator's own identity is never used here (every object has credentialsRef).
            .env_remove("KUBECONFIG")
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start the operator binary");
        Operator {
            identity,
            port,
            log,
            child: Some(child),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `kill -{sig}`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}; log:\n{}",
                self.identity,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its exit status once the process has exited, without waiting.
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// Whether the process still runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything it wrote so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on its HTTP port.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path).await
    }
}

/// A minimal HTTP/1.0 GET on loopback: (status, body).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Waits until the operator's /readyz answers 200 with `body` (`leading` or `standby`).
pub async fn wait_ready(op: &Operator, body: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        if let Some((200, b)) = op.get("/readyz").await
            && b.trim() == body
        {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{} not ready ({body}) within {timeout:?}; log:\n{}",
            op.identity,
            op.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TokenRequest token (empty audiences) of ServiceAccount `ns/sa`.
pub async fn service_account_token(admin: &Client, ns: &str, sa: &str) -> String {
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(
            sa,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: None,
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

/// A kubeconfig holding `token` for the API server of `env`.
pub fn token_kubeconfig(env: &TestEnv, path: &Path, ns: &str, token: &str) {
    let admin = Kubeconfig::read_from(env.kubeconfig()).unwrap();
    let cluster = admin.clusters[0].cluster.as_ref().unwrap();
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "testenv", "user": "operator", "namespace": ns}}],
        "current-context": "operator",
    });
    fs::write(path, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Runs Helm v4 of `env` (its own cache and config under the temporary directory).
pub fn helm(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let home = std::env::temp_dir().join(format!("gao-helm-{}", std::process::id()));
    Command::new(env.bin_dir.join("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(super::repo_root())
        .output()
        .expect("run helm")
}

/// [`helm`], failing the test with its output unless it succeeds; its stdout.
pub fn helm_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = helm(env, args);
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
