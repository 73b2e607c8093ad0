//! The HTTP server (I/O): `/metrics` (Prometheus / OpenMetrics text), `/healthz` (the process
//! serves) and `/readyz` (ready when standing by, or when leading with the controllers started
//! and their kinds listable). hyper 1 directly: three routes need no framework.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

use super::status_metrics::StatusMetrics;
use crate::metrics::Metrics;

/// Where the replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting, waiting for the CRDs.
    Starting = 0,
    /// Another replica holds the Lease; this one polls it.
    Standby = 1,
    /// Holds the Lease (or runs alone); the controllers are starting.
    Syncing = 2,
    /// Holds the Lease and the controllers run.
    Leading = 3,
    /// Shutting down.
    Stopping = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Standby,
            2 => Self::Syncing,
            3 => Self::Leading,
            4 => Self::Stopping,
            _ => Self::Starting,
        }
    }

    /// Lower-case name, for /readyz and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby => "standby",
            Self::Syncing => "syncing",
            Self::Leading => "leading",
            Self::Stopping => "stopping",
        }
    }

    /// Whether /readyz answers 200.
    pub fn ready(self) -> bool {
        matches!(self, Self::Standby | Self::Leading)
    }
}

/// What the server shows: the phase and the metrics.
#[derive(Debug)]
pub struct State {
    phase: AtomicU8,
    metrics: Arc<Metrics>,
    runtime: Registry,
    leader: Gauge,
    ready: Gauge,
    leader_transitions: Counter,
}

impl State {
    /// A state in [`Phase::Starting`].
    pub fn new(metrics: Arc<Metrics>, status_metrics: Arc<StatusMetrics>) -> Self {
        let mut runtime = Registry::with_prefix("guest_attestation");
        runtime.register_collector(Box::new(status_metrics));
        let leader = Gauge::default();
        let ready = Gauge::default();
        let leader_transitions = Counter::default();
        let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        runtime.register(
            "leader",
            "1 while this replica holds the Lease and runs the controllers",
            leader.clone(),
        );
        runtime.register(
            "leader_acquisitions",
            "Times this replica acquired the Lease",
            leader_transitions.clone(),
        );
        runtime.register("ready", "1 while /readyz answers 200", ready.clone());
        runtime.register("build_info", "The operator's version", build);
        Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            metrics,
            runtime,
            leader,
            ready,
            leader_transitions,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        let old = Phase::from_u8(self.phase.swap(phase as u8, Ordering::SeqCst));
        if old != phase {
            debug!(from = old.as_str(), to = phase.as_str(), "phase");
        }
        let leading = matches!(phase, Phase::Syncing | Phase::Leading);
        if leading && !matches!(old, Phase::Syncing | Phase::Leading) {
            self.leader_transitions.inc();
        }
        self.leader.set(i64::from(leading));
        self.ready.set(i64::from(phase.ready()));
    }

    /// The Prometheus exposition: the operator's metrics, then the runtime's.
    pub fn encode_metrics(&self) -> String {
        let mut out = self.metrics.encode();
        // Both encodings end with the OpenMetrics terminator; keep only the last one.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        let _ = encode(&mut out, &self.runtime);
        out
    }
}

/// Binds the server's address (before anything else, so a bad address fails fast).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accepting an HTTP connection failed");
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&req, &state)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Some(Duration::from_secs(10)))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn handle(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.encode_metrics(),
        ),
        "/healthz" | "/livez" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            let phase = state.phase();
            let status = if phase.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, PLAIN, format!("{}\n", phase.as_str()))
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_by_phase() {
        assert!(!Phase::Starting.ready());
        assert!(Phase::Standby.ready());
        assert!(!Phase::Syncing.ready());
        assert!(Phase::Leading.ready());
        assert!(!Phase::Stopping.ready());
        for p in [
            Phase::Starting,
            Phase::Standby,
            Phase::Syncing,
            Phase::Leading,
            Phase::Stopping,
        ] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }

    #[test]
    fn one_exposition_with_one_terminator() {
        let metrics = Arc::new(Metrics::new());
        drop(metrics.reconcile("attestationstatus"));
        let state = State::new(metrics, Arc::default());
        state.set_phase(Phase::Syncing);
        state.set_phase(Phase::Leading);
        let text = state.encode_metrics();
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("guest_attestation_leader 1\n"), "{text}");
        assert!(
            text.contains("guest_attestation_leader_acquisitions_total 1\n"),
            "{text}"
        );
        assert!(text.contains("guest_attestation_ready 1\n"), "{text}");
        assert!(text.contains("guest_attestation_reconcile_runs"), "{text}");
        state.set_phase(Phase::Stopping);
        let text = state.encode_metrics();
        assert!(text.contains("guest_attestation_leader 0\n"), "{text}");
        assert!(text.contains("guest_attestation_ready 0\n"), "{text}");
    }
}
