//! The operator process: configuration → logs → HTTP server → Kubernetes and Azure clients →
//! CRD check → (Lease) → controllers → bounded graceful shutdown.
//!
//! ```text
//!   start ──► Starting ──► CRDs listable ──► Standby ──(Lease acquired)──► Syncing ──► Leading
//!                                   │  (--leader-elect=false) ─────────────────┘          │
//!   SIGTERM/SIGINT: standby exits at once; a leader stops its controllers (in-flight        │
//!   reconciles finish within --shutdown-timeout, then are cancelled), releases the Lease    │
//!   and exits 0. Lease lost: controllers are cancelled at once and the process exits 1. ◄──┘
//! ```
//!
//! Modules: `config` (flags, pure), `telemetry` (logs), `server` (/metrics /healthz /readyz),
//! `leader` (Lease election), `controllers` (wiring and the CRD check), `status_metrics` (gauges
//! from the custom resources' conditions, for alerts).

pub mod config;
pub mod controllers;
pub mod leader;
pub mod server;
pub mod status_metrics;
pub mod telemetry;

use std::{process::ExitCode, sync::Arc, time::Duration};

use hyper::header::{HeaderValue, USER_AGENT};
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use self::config::{Config, ConfigError};
use self::controllers::{CrdUnavailable, Parts, Running, SharedAzure};
use self::leader::{Elector, LeaseSettings, Term};
use self::server::{Phase, State};
use self::status_metrics::StatusMetrics;
use crate::azure::Azure;
use crate::controller::fleet::Fleet;
use crate::metrics::{AzureMetricsAdapter, Metrics};

/// Why the operator stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags do not work together.
    #[error("invalid configuration")]
    Config(#[source] ConfigError),
    /// The Azure client could not be built.
    #[error("cannot build the Azure client")]
    Azure(#[source] crate::azure::Error),
    /// The HTTP server could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No usable Kubernetes configuration.
    #[error("cannot configure the Kubernetes client")]
    Kubeconfig(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Signal handlers could not be installed.
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
    /// The CRDs are missing or unreadable.
    #[error(
        "the guestattestation.dev CRDs are not available: install the Helm chart (charts/guest-attestation-operator) or `kubectl apply --server-side -f crds/`, and check the RBAC"
    )]
    Crds(#[source] CrdUnavailable),
    /// Another replica took the Lease, or it could not be renewed.
    #[error("lost the leader Lease")]
    LeaseLost,
    /// A controller ended while it should have run.
    #[error("controller {0} stopped unexpectedly")]
    ControllerEnded(String),
}

impl Error {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// `error: cause: cause` on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Runs the operator until a signal or a fatal error; the process's exit code.
pub async fn main(config: Config) -> ExitCode {
    if let Err(e) = telemetry::init(config.log_format, &config.log_level) {
        eprintln!("guest-attestation-operator: {}", chain(&e));
        return ExitCode::from(2);
    }
    // ring is the one crypto provider of kube and the Azure client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(config).await {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %chain(&e), "exiting");
            e.exit_code()
        }
    }
}

/// The operator's life; `Ok` after a clean shutdown.
pub async fn run(config: Config) -> Result<(), Error> {
    config.validate().map_err(Error::Config)?;
    let identity = config.identity();
    let metrics = Arc::new(Metrics::new());
    let azure = Azure::with_metrics(
        config.azure_config().map_err(Error::Config)?,
        Arc::new(AzureMetricsAdapter(Arc::clone(&metrics))),
    )
    .map_err(Error::Azure)?;
    let status_metrics = Arc::new(StatusMetrics::default());
    let state = Arc::new(State::new(
        Arc::clone(&metrics),
        Arc::clone(&status_metrics),
    ));
    let addr = config.http_bind_address;
    let listener = server::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    info!(
        address = %listener.local_addr().unwrap_or(addr),
        identity = %identity,
        version = env!("CARGO_PKG_VERSION"),
        "serving /metrics, /healthz and /readyz"
    );
    let (stop_tx, stop) = watch::channel(false);
    install_signal_handlers(stop_tx)?;
    let (http_stop_tx, http_stop) = watch::channel(false);
    let http = tokio::spawn(server::serve(listener, Arc::clone(&state), http_stop));

    let result = operate(
        &config,
        &identity,
        azure,
        metrics,
        (&state, &status_metrics),
        stop,
    )
    .await;

    state.set_phase(Phase::Stopping);
    let _ = http_stop_tx.send(true);
    let _ = http.await;
    result
}

async fn operate(
    config: &Config,
    identity: &str,
    azure: Azure,
    metrics: Arc<Metrics>,
    (state, status_metrics): (&Arc<State>, &Arc<StatusMetrics>),
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = kube_client(config, identity).await?;
    let namespaces = config.watch_namespaces();
    info!(
        namespaces = ?namespaces.iter().map(|n| n.as_deref().unwrap_or("*")).collect::<Vec<_>>(),
        "checking the CRDs"
    );
    tokio::select! {
        r = controllers::wait_for_kinds(&client, &namespaces, config.crd_timeout) => r.map_err(Error::Crds)?,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let parts = Parts {
        client: client.clone(),
        azure: SharedAzure(Arc::new(azure)),
        settings: config.settings(identity),
        metrics,
        fleet: Arc::new(Fleet::new(config.arm_read_qps)),
    };
    let keeper = if config.leader_elect {
        let lease = LeaseSettings {
            name: config.lease_name.clone(),
            namespace: config
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned()),
            identity: identity.to_owned(),
            duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
        };
        info!(lease = %lease.name, namespace = %lease.namespace, "leader election on");
        let mut elector = Elector::new(client.clone(), lease);
        state.set_phase(Phase::Standby);
        if !elector.acquire(&mut stop.clone()).await {
            return Ok(());
        }
        let (keep_stop, keep_rx) = oneshot::channel();
        Some((keep_stop, tokio::spawn(elector.keep(keep_rx))))
    } else {
        None
    };
    state.set_phase(Phase::Syncing);
    let (ctrl_stop_tx, ctrl_stop) = watch::channel(false);
    let running = controllers::start(
        &parts,
        &namespaces,
        &controllers::shutdown_signal(ctrl_stop),
    );
    let (exporter_stop, exporter_rx) = watch::channel(false);
    let exporters = controllers::start_status_metrics(
        status_metrics,
        &client,
        &namespaces,
        config.page_size,
        &exporter_rx,
    );
    let ready = tokio::spawn(mark_ready(Arc::clone(status_metrics), Arc::clone(state)));
    let outcome = supervise(running, keeper, ctrl_stop_tx, stop, config.shutdown_timeout).await;
    ready.abort();
    let _ = exporter_stop.send(true);
    for e in exporters {
        let _ = e.await;
    }
    status_metrics.clear();
    outcome
}

/// Syncing → Leading once a watch of each kind in each namespace has listed everything (the
/// controllers' own stores are not exposed by their `run`; these watches make the same lists
/// with the same permissions).
async fn mark_ready(status_metrics: Arc<StatusMetrics>, state: Arc<State>) {
    while !status_metrics.synced() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if state.phase() == Phase::Syncing {
        state.set_phase(Phase::Leading);
        info!("controllers running and synced");
    }
}

type Keeper = (oneshot::Sender<()>, JoinHandle<(Elector, Term)>);

/// Waits for a signal, a lost Lease or a controller ending; then stops everything in order.
async fn supervise(
    mut running: Vec<Running>,
    keeper: Option<Keeper>,
    ctrl_stop: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
) -> Result<(), Error> {
    enum Why {
        Signal,
        Lost,
        Ended(String),
    }
    let (keep_stop, mut keep_task) = match keeper {
        Some((s, t)) => (Some(s), Some(t)),
        None => (None, None),
    };
    let names: Vec<String> = running.iter().map(|r| r.name.clone()).collect();
    let why = {
        let lease = async {
            match keep_task.as_mut() {
                Some(t) => t.await.ok(),
                None => std::future::pending().await,
            }
        };
        let any_ended = async {
            if running.is_empty() {
                return std::future::pending().await;
            }
            let (_, i, _) =
                futures::future::select_all(running.iter_mut().map(|r| &mut r.task)).await;
            i
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Why::Signal,
            // The keeper ends on its own only when the Lease is lost (or the task failed).
            _ = lease => Why::Lost,
            i = any_ended => Why::Ended(names.get(i).cloned().unwrap_or_default()),
        }
    };
    if matches!(why, Why::Lost) {
        // Someone else may lead within (lease duration − renew deadline): stop at once.
        error!("lost the Lease: cancelling the controllers");
        for r in &running {
            r.task.abort();
        }
        return Err(Error::LeaseLost);
    }
    let started = std::time::Instant::now();
    info!(timeout = ?shutdown_timeout, "stopping the controllers; in-flight reconciles may finish");
    let _ = ctrl_stop.send(true);
    drain(running, shutdown_timeout).await;
    info!(took = ?started.elapsed(), "controllers stopped");
    if let (Some(keep_stop), Some(task)) = (keep_stop, keep_task) {
        let _ = keep_stop.send(());
        match task.await {
            Ok((mut elector, Term::Stopped)) => match elector.release().await {
                Ok(_) => {}
                Err(e) => warn!(error = %e, "releasing the Lease failed; it expires by itself"),
            },
            Ok((_, Term::Lost)) => warn!("the Lease was lost while stopping"),
            Err(e) => warn!(error = %e, "the Lease task failed"),
        }
    }
    match why {
        Why::Ended(name) => Err(Error::ControllerEnded(name)),
        Why::Signal | Why::Lost => Ok(()),
    }
}

/// Waits for every controller to finish, at most `timeout`; then cancels the rest.
async fn drain(running: Vec<Running>, timeout: Duration) {
    let names: Vec<String> = running.iter().map(|r| r.name.clone()).collect();
    let mut tasks: Vec<JoinHandle<()>> = running.into_iter().map(|r| r.task).collect();
    let all = futures::future::join_all(tasks.iter_mut());
    if tokio::time::timeout(timeout, all).await.is_err() {
        warn!(timeout = ?timeout, controllers = ?names, "in-flight reconciles did not finish in time; cancelling them");
        for t in &tasks {
            t.abort();
        }
    }
}

fn install_signal_handlers(stop: watch::Sender<bool>) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
        let _ = stop.send(true);
        // A second signal ends the process at once.
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!("second signal: exiting now");
        std::process::exit(1);
    });
    Ok(())
}

/// The Kubernetes client: --kubeconfig, else kube's inference ($KUBECONFIG, ~/.kube/config,
/// in-cluster). Its User-Agent names this replica, so the audit log can tell replicas apart.
async fn kube_client(config: &Config, identity: &str) -> Result<Client, Error> {
    let boxed = |e: kube::Error| Error::Kubeconfig(Box::new(e));
    let mut kc = match &config.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(Box::new(e)))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig(Box::new(e)))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Kubeconfig(Box::new(e)))?,
    };
    let agent = format!(
        "guest-attestation-operator/{} ({identity})",
        env!("CARGO_PKG_VERSION")
    );
    let agent = HeaderValue::from_str(&agent)
        .or_else(|_| {
            HeaderValue::from_str(concat!(
                "guest-attestation-operator/",
                env!("CARGO_PKG_VERSION")
            ))
        })
        .map_err(|e| Error::Kubeconfig(Box::new(e)))?;
    kc.headers.push((USER_AGENT, agent));
    Client::try_from(kc).map_err(boxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_on_one_line() {
        let e = Error::Crds(CrdUnavailable {
            plural: "attestationstatuses".into(),
            source: Box::new(kube::Error::LinesCodecMaxLineLengthExceeded),
        });
        let s = chain(&e);
        assert!(
            s.starts_with("the guestattestation.dev CRDs are not available"),
            "{s}"
        );
        assert!(s.contains(": cannot list attestationstatuses"), "{s}");
        assert_eq!(e.exit_code(), ExitCode::FAILURE);
    }
}
