//! HTTPS (and plain-HTTP control) serving: accept loop, TLS, per-connection hyper service, the
//! request pipeline (fault → route → log), and connection resets.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::emulator::Inner;
use crate::faults::{FaultAction, RetryAfter};
use crate::http::{Req, Resp};
use crate::log::RequestRecord;

const MAX_BODY: usize = 4 << 20;

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Azure,
    Admin,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inner: Arc<Inner>,
    kind: Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                let inner = Arc::clone(&inner);
                let tls = tls.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(tcp, tls, inner, kind, shutdown).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    inner: Arc<Inner>,
    kind: Listener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // A duplicate of the socket so that a reset can set SO_LINGER(0) after hyper owns the stream.
    let std_stream = tcp.into_std()?;
    let dup = std_stream.try_clone()?;
    let tcp = TcpStream::from_std(std_stream)?;
    tcp.set_nodelay(true)?;
    let kill = Arc::new(Notify::new());
    let svc_kill = Arc::clone(&kill);
    let service = hyper::service::service_fn(move |req| {
        let inner = Arc::clone(&inner);
        let kill = Arc::clone(&svc_kill);
        async move { Ok::<_, Infallible>(handle(inner, req, kill, kind).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Some(acceptor) = tls {
        let stream = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await??;
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            r = conn => r,
            () = kill.notified() => { reset(&dup); Ok(()) }
            _ = shutdown.changed() => Ok(()),
        }
    } else {
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        tokio::select! {
            r = conn => r,
            () = kill.notified() => { reset(&dup); Ok(()) }
            _ = shutdown.changed() => Ok(()),
        }
    }
}

/// Makes the close of this socket send RST instead of FIN.
fn reset(sock: &std::net::TcpStream) {
    let s = socket2::SockRef::from(sock);
    let _ = s.set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(std::net::Shutdown::Both);
}

async fn handle(
    inner: Arc<Inner>,
    req: hyper::Request<Incoming>,
    kill: Arc<Notify>,
    kind: Listener,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return to_hyper(Resp::cloud_error(
                413,
                "RequestEntityTooLarge",
                "The request body is too large.",
            ));
        }
    };
    let req = Req::new(
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        parts.headers,
        body,
    );
    if kind == Listener::Admin {
        return to_hyper(crate::admin::handle(&inner, &req));
    }
    let time = SystemTime::now();
    let virtual_time = inner.clock.now();
    let principal = crate::router::principal(&inner, &req);
    let (subscription, provider) = crate::router::scope(&req);
    let mut record = RequestRecord {
        seq: inner.log().next_seq(),
        time,
        virtual_time,
        method: req.method.to_string(),
        path: req.path.clone(),
        query: redact_query(&req.query_raw),
        api_version: req.api_version().map(str::to_owned),
        status: None,
        principal,
        subscription,
        provider,
        fault: None,
    };
    tracing::debug!(method = %record.method, path = %record.path, "request");
    let fault = inner.faults().check(req.method.as_str(), &req.path);
    let mut post = None;
    if let Some(action) = fault {
        record.fault = Some(action.kind());
        match action {
            FaultAction::Status {
                status,
                code,
                message,
                retry_after,
            } => {
                let mut resp = crate::router::fault_response(&req, status, &code, &message);
                if let Some(ra) = retry_after {
                    resp = resp.header("retry-after", retry_after_value(ra));
                }
                return finish(&inner, &req, record, resp);
            }
            FaultAction::Delay { millis } => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
            }
            FaultAction::Hang => {
                inner.log().push(record);
                return std::future::pending().await;
            }
            FaultAction::Reset => {
                inner.log().push(record);
                kill.notify_one();
                return std::future::pending().await;
            }
            other @ (FaultAction::Truncate | FaultAction::Malformed) => post = Some(other),
        }
    }
    let mut resp = crate::router::route(&inner, &req);
    match post {
        Some(FaultAction::Truncate) => {
            let keep = resp.body.len() / 2;
            resp.body.truncate(keep);
        }
        Some(FaultAction::Malformed) => resp.body = b"{\"error\": {\"code\": \"Internal".to_vec(),
        _ => {}
    }
    finish(&inner, &req, record, resp)
}

fn retry_after_value(ra: RetryAfter) -> String {
    match ra {
        RetryAfter::Seconds(s) => s.to_string(),
        RetryAfter::HttpDate(s) => {
            // Round up to the next whole second so the date is never earlier than promised.
            let at = crate::timefmt::add(SystemTime::now(), Duration::from_secs(s + 1));
            crate::timefmt::http_date(at)
        }
    }
}

fn finish(
    inner: &Inner,
    req: &Req,
    mut record: RequestRecord,
    mut resp: Resp,
) -> hyper::Response<Full<Bytes>> {
    record.status = Some(resp.status);
    if !resp.has_header("x-ms-request-id") {
        resp = resp.header("x-ms-request-id", inner.random_id());
    }
    let corr = req
        .header("x-ms-correlation-request-id")
        .map_or_else(|| inner.random_id(), str::to_owned);
    resp = resp.header("x-ms-correlation-request-id", corr);
    if let Some(c) = req.header("x-ms-client-request-id") {
        resp = resp.header("x-ms-client-request-id", c.to_owned());
    }
    tracing::debug!(status = resp.status, "response");
    inner.log().push(record);
    to_hyper(resp)
}

fn to_hyper(resp: Resp) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| {
            let mut r = hyper::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

/// Drops query values that could carry secrets (none of the emulated APIs put secrets in the
/// query, but the log must never hold one).
fn redact_query(q: &str) -> String {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if lower.contains("secret") || lower.contains("token") || lower.contains("assertion") {
                format!("{k}=REDACTED")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}
