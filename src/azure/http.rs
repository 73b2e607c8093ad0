//! The reqwest adapter (I/O): one reused HTTPS client, timeouts, TLS with ring and the platform's roots plus an
//! optional extra CA, bounded retries with full-jitter exponential backoff, `Retry-After` honoured and recorded per
//! scope, the ARM token buckets, `x-ms-client-request-id` and our user agent on every request, and a metrics
//! record per attempt.
//!
//! Never logged: request or response bodies, the `Authorization` header, query strings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, redirect};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{Instrument, debug};
use url::Url;

use super::auth::Secret;
use super::cloud::AzureConfig;
use super::error::{Error, HoldReason, Service, TransportKind, bounded, is_retryable_status};
use super::metrics::{AzureMetrics, RequestRecord};
use super::ratelimit::{Admission, OpKind, Prepaid, RateKey, RateLimiter};

/// The operation name of a reconcile's read booking, in errors and metrics.
pub(crate) const BOOK_READS: &str = "book_reads";
/// The operation label of a reconcile's write booking ([`HttpCore::admit`] of writes).
pub(crate) const BOOK_WRITES: &str = "book_writes";
/// The operation label of a reconcile's delete booking.
pub(crate) const BOOK_DELETES: &str = "book_deletes";

/// Our user agent.
pub const USER_AGENT: &str = concat!("guest-attestation-operator/", env!("CARGO_PKG_VERSION"));

/// The longest `Retry-After` accepted; longer values are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_hours(24);

/// Retries of one call (targets.md T7): base 500 ms, ×2, cap 30 s, full jitter, at most 6 attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (default 6).
    pub max_attempts: u32,
    /// The first backoff ceiling (default 500 ms).
    pub base_delay: Duration,
    /// The largest backoff ceiling (default 30 s).
    pub max_delay: Duration,
    /// The most a call may spend waiting (backoff, `Retry-After`, rate limit) before it gives up and returns the
    /// error with its retry hint, so a reconcile can requeue instead of holding its slot (default 20 s).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_wait: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The backoff after failed attempt `attempt` (1-based): a uniform fraction (`fraction` in `[0, 1]`) of
    /// `min(max_delay, base_delay × 2^(attempt−1))` ("full jitter").
    pub fn backoff(&self, attempt: u32, fraction: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .base_delay
            .checked_mul(1 << exp)
            .map_or(self.max_delay, |d| d.min(self.max_delay));
        ceiling.mul_f64(fraction.clamp(0.0, 1.0))
    }
}

/// Parses `Retry-After` (delta-seconds or an HTTP-date, relative to `now`), preferring Azure's
/// `retry-after-ms` / `x-ms-retry-after-ms`. `None` when absent or unparsable (the policy backoff applies).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms).min(MAX_RETRY_AFTER));
        }
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after_value(value, now)
}

/// Parses one `Retry-After` value: delta-seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime) whose
/// distance from `now` is returned (zero when it is past).
pub fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The scope a `Retry-After` applies to: ARM throttles per principal, subscription and operation kind; MAA,
/// Entra and IMDS per principal and host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScopeKey {
    principal: Arc<str>,
    service: Service,
    host: String,
    subscription: Option<String>,
    kind: Option<OpKind>,
}

/// Until when each scope is throttled.
#[derive(Debug, Default)]
pub(crate) struct ThrottleRegistry {
    until: Mutex<HashMap<ScopeKey, Instant>>,
}

impl ThrottleRegistry {
    fn record(&self, key: &ScopeKey, until: Instant) {
        let mut map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.len() > 1024 {
            map.retain(|_, t| *t > now);
        }
        let entry = map.entry(key.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn until(&self, key: &ScopeKey) -> Option<Instant> {
        let map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).copied().filter(|t| *t > Instant::now())
    }
}

/// One HTTP call, before retries.
#[derive(Debug)]
pub(crate) struct Request {
    pub service: Service,
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    /// Content type and bytes.
    pub body: Option<(&'static str, Vec<u8>)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the call may be repeated after it may have reached the server (GET, PUT, DELETE, ...).
    pub idempotent: bool,
    /// The identity the call is made as (never a secret).
    pub principal: Arc<str>,
    /// The ARM subscription, for the throttle scope and the token bucket.
    pub subscription: Option<String>,
    /// Tokens the caller booked ahead (a reconcile's admission): used before the bucket.
    pub prepaid: Option<Arc<Prepaid>>,
}

impl Request {
    pub(crate) fn new(
        service: Service,
        operation: &'static str,
        method: Method,
        url: Url,
        principal: Arc<str>,
    ) -> Self {
        let idempotent = method != Method::POST && method != Method::PATCH;
        Request {
            service,
            operation,
            method,
            url,
            body: None,
            headers: Vec::new(),
            idempotent,
            principal,
            subscription: None,
            prepaid: None,
        }
    }

    fn scope(&self) -> ScopeKey {
        let host = format!(
            "{}:{}",
            self.url.host_str().unwrap_or_default(),
            self.url.port_or_known_default().unwrap_or_default()
        );
        let arm = self.service == Service::Arm;
        ScopeKey {
            principal: self.principal.clone(),
            service: self.service,
            host,
            subscription: self.subscription.clone().filter(|_| arm),
            kind: arm.then(|| OpKind::of(&self.method)),
        }
    }

    fn rate_key(&self) -> Option<RateKey> {
        if self.service != Service::Arm {
            return None;
        }
        Some(RateKey::new(
            self.principal.clone(),
            self.subscription.as_deref()?,
            OpKind::of(&self.method),
        ))
    }
}

/// A response with its whole body read.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Decodes the JSON body.
    pub(crate) fn json<T: DeserializeOwned>(
        &self,
        service: Service,
        operation: &'static str,
    ) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            service,
            operation,
            status: self.status,
            source,
        })
    }
}

enum Attempt {
    Response(Response),
    Transport(reqwest::Error),
}

/// Shared by every client of one [`Azure`](super::Azure): the HTTP clients, the configuration, the throttle
/// registry, the token buckets and the metrics sink.
#[derive(Debug)]
pub(crate) struct HttpCore {
    pub config: AzureConfig,
    https: reqwest::Client,
    imds: reqwest::Client,
    throttles: ThrottleRegistry,
    limiter: RateLimiter,
    pub metrics: Arc<dyn AzureMetrics>,
}

/// Parses a PEM bundle into certificates.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config {
            what: "the CA bundle is not valid PEM",
            source: Some(Box::new(e)),
        })?;
    if certs.is_empty() {
        return Err(Error::Config {
            what: "the CA bundle holds no certificate",
            source: None,
        });
    }
    Ok(certs)
}

fn tls_config(config: &AzureConfig) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match &config.extra_ca_pem {
        Some(pem) => pem_certificates(pem)?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()).map_err(
            |e| Error::Config {
                what: "cannot set up TLS certificate verification",
                source: Some(Box::new(e)),
            },
        )?;
    // A custom verifier only to add the platform's roots; it verifies chains and hostnames (never disabled).
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            what: "cannot set up TLS",
            source: Some(Box::new(e)),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// Whether a rustls error (an untrusted certificate, a failed handshake) is in the error's chain.
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && is_tls_failure(inner)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

fn classify(err: &reqwest::Error) -> TransportKind {
    if is_tls_failure(err) {
        TransportKind::Tls
    } else if err.is_timeout() {
        TransportKind::Timeout
    } else if err.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorField>,
    error_description: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Text(String),
    Object {
        #[serde(alias = "Code")]
        code: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    },
}

/// The Azure error code and message of an error body: ARM/MAA `{"error":{"code","message"}}`, Entra/IMDS
/// `{"error":"...","error_description":"..."}`, or a bare `{"code","message"}`. Unstructured bodies give nothing
/// (they are never quoted, as they could echo anything).
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(env) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return (None, None);
    };
    let (code, message) = match env.error {
        Some(ErrorField::Text(code)) => (Some(code), env.error_description),
        Some(ErrorField::Object { code, message }) => (code, message),
        None => (env.code, env.message),
    };
    (code.map(bounded), message.map(bounded))
}

impl HttpCore {
    pub(crate) fn new(config: AzureConfig, metrics: Arc<dyn AzureMetrics>) -> Result<Self, Error> {
        let tls = tls_config(&config)?;
        let builder = || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(config.connect_timeout)
                .timeout(config.request_timeout)
                .redirect(redirect::Policy::none())
        };
        let build_err = |e: reqwest::Error| Error::Config {
            what: "cannot build the HTTP client",
            source: Some(Box::new(e)),
        };
        let https = builder().https_only(true).build().map_err(build_err)?;
        // IMDS is plain HTTP on a link-local address, so only this client allows http, and never via a proxy.
        let imds = builder().no_proxy().build().map_err(build_err)?;
        Ok(HttpCore {
            limiter: RateLimiter::new(config.rate_limits),
            config,
            https,
            imds,
            throttles: ThrottleRegistry::default(),
            metrics,
        })
    }

    /// Books `tokens` ARM requests of `kind` in `subscription` for `holder` (see [`RateLimiter::admit`]): the
    /// tokens, once their wait (at most `patience`) is over; or [`Error::Held`] with the booked instant, to come
    /// back then.
    pub(crate) async fn admit(
        &self,
        principal: &Arc<str>,
        subscription: &str,
        holder: &str,
        (kind, tokens): (OpKind, u32),
        patience: Duration,
    ) -> Result<Prepaid, Error> {
        let key = RateKey::new(principal.clone(), subscription, kind);
        let operation = match kind {
            OpKind::Read => BOOK_READS,
            OpKind::Write => BOOK_WRITES,
            OpKind::Delete => BOOK_DELETES,
        };
        match self.limiter.admit(&key, holder, tokens, patience) {
            Admission::Granted { wait, prepaid } => {
                let prepaid = prepaid.reported_to(self.metrics.clone());
                if !wait.is_zero() {
                    self.metrics
                        .record_hold(Service::Arm, operation, HoldReason::RateLimit, wait);
                    tokio::time::sleep(wait).await;
                }
                Ok(prepaid)
            }
            Admission::Booked { retry_after } => {
                self.metrics.record_hold(
                    Service::Arm,
                    operation,
                    HoldReason::RateLimit,
                    Duration::ZERO,
                );
                Err(Error::Held {
                    service: Service::Arm,
                    operation,
                    reason: HoldReason::RateLimit,
                    retry_after,
                })
            }
        }
    }

    /// Sends a request with retries. Statuses below 300 are returned; others become [`Error::Api`].
    pub(crate) async fn send(
        &self,
        req: &Request,
        bearer: Option<&Secret>,
    ) -> Result<Response, Error> {
        let span = tracing::debug_span!(
            "azure_call",
            service = req.service.as_str(),
            operation = req.operation,
            method = %req.method,
            path = req.url.path(),
        );
        self.send_inner(req, bearer).instrument(span).await
    }

    #[allow(clippy::too_many_lines)] // one retry loop, kept in one place to be read as a whole
    async fn send_inner(&self, req: &Request, bearer: Option<&Secret>) -> Result<Response, Error> {
        let policy = self.config.retry;
        let request_id = new_request_id();
        let scope = req.scope();
        let rate_key = req.rate_key();
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_for_scope(req, &scope, &mut waited).await?;
            let prepaid = rate_key
                .as_ref()
                .zip(req.prepaid.as_deref())
                .is_some_and(|(key, p)| p.take(key));
            if let Some(key) = rate_key.as_ref().filter(|_| !prepaid) {
                match self
                    .limiter
                    .acquire(key, policy.max_wait.saturating_sub(waited))
                    .await
                {
                    Ok(w) => {
                        if !w.is_zero() {
                            waited += w;
                            self.metrics.record_hold(
                                req.service,
                                req.operation,
                                HoldReason::RateLimit,
                                w,
                            );
                        }
                    }
                    Err(retry_after) => {
                        self.metrics.record_hold(
                            req.service,
                            req.operation,
                            HoldReason::RateLimit,
                            Duration::ZERO,
                        );
                        return Err(Error::Held {
                            service: req.service,
                            operation: req.operation,
                            reason: HoldReason::RateLimit,
                            retry_after,
                        });
                    }
                }
            }

            let started = Instant::now();
            let outcome = self.attempt(req, bearer, &request_id).await?;
            let latency = started.elapsed();
            let status = match &outcome {
                Attempt::Response(r) => Some(r.status),
                Attempt::Transport(_) => None,
            };
            self.metrics.record_request(&RequestRecord {
                service: req.service,
                operation: req.operation,
                status,
                latency,
                attempt,
            });
            debug!(
                attempt,
                status,
                latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                client_request_id = %request_id,
                "azure request"
            );

            let (err, retry_after, may_retry) = match outcome {
                Attempt::Response(resp) if resp.status < 300 => return Ok(resp),
                Attempt::Response(resp) => {
                    let retry_after = parse_retry_after(&resp.headers, SystemTime::now());
                    let s = resp.status;
                    let throttled = s == 429 || (retry_after.is_some() && matches!(s, 409 | 503));
                    if throttled && let Some(ra) = retry_after {
                        self.throttles.record(&scope, Instant::now() + ra);
                    }
                    // 429 (and a 409/503 with Retry-After) were not processed: safe to repeat for any method.
                    let may_retry = throttled || (is_retryable_status(s) && req.idempotent);
                    (
                        Self::api_error(req, &resp, retry_after),
                        retry_after,
                        may_retry,
                    )
                }
                Attempt::Transport(source) => {
                    let kind = classify(&source);
                    // A connect error means the request never left; timeouts and broken connections may have
                    // reached the server, so only idempotent calls are repeated.
                    let may_retry = kind == TransportKind::Connect
                        || (kind != TransportKind::Tls && req.idempotent);
                    let err = Error::Transport {
                        service: req.service,
                        operation: req.operation,
                        kind,
                        source: source.without_url(),
                    };
                    (err, None, may_retry)
                }
            };
            if !may_retry || attempt >= policy.max_attempts {
                return Err(err);
            }
            let delay = retry_after.unwrap_or_else(|| policy.backoff(attempt, fastrand::f64()));
            if waited + delay > policy.max_wait {
                return Err(err);
            }
            debug!(
                attempt,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "retrying"
            );
            tokio::time::sleep(delay).await;
            waited += delay;
        }
    }

    /// Waits until the scope's `Retry-After` has elapsed, or fails without sending when that is beyond the
    /// call's wait budget.
    async fn wait_for_scope(
        &self,
        req: &Request,
        scope: &ScopeKey,
        waited: &mut Duration,
    ) -> Result<(), Error> {
        while let Some(until) = self.throttles.until(scope) {
            let wait = until.saturating_duration_since(Instant::now());
            if *waited + wait > self.config.retry.max_wait {
                self.metrics.record_hold(
                    req.service,
                    req.operation,
                    HoldReason::RetryAfter,
                    Duration::ZERO,
                );
                return Err(Error::Held {
                    service: req.service,
                    operation: req.operation,
                    reason: HoldReason::RetryAfter,
                    retry_after: wait,
                });
            }
            self.metrics
                .record_hold(req.service, req.operation, HoldReason::RetryAfter, wait);
            tokio::time::sleep_until(until).await;
            *waited += wait;
        }
        Ok(())
    }

    /// Builds one attempt: `x-ms-client-request-id`, our user agent, `Accept`, the bearer token (marked
    /// sensitive so it never shows in debug output), extra headers and the body.
    fn build(
        &self,
        req: &Request,
        bearer: Option<&Secret>,
        request_id: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let client = if req.service == Service::Imds {
            &self.imds
        } else {
            &self.https
        };
        let mut rb = client
            .request(req.method.clone(), req.url.clone())
            .header("x-ms-client-request-id", request_id)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(ACCEPT, "application/json");
        for (name, value) in &req.headers {
            rb = rb.header(name.clone(), value.clone());
        }
        if let Some(token) = bearer {
            let mut value =
                HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                    Error::Credential {
                        what: "the access token is not a valid header value",
                        source: None,
                    }
                })?;
            value.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, value);
        }
        if let Some((content_type, body)) = &req.body {
            rb = rb.header(CONTENT_TYPE, *content_type).body(body.clone());
        }
        Ok(rb)
    }

    async fn attempt(
        &self,
        req: &Request,
        bearer: Option<&Secret>,
        request_id: &str,
    ) -> Result<Attempt, Error> {
        let rb = self.build(req, bearer, request_id)?;
        let mut resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Transport(e)),
        };
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let limit = self.config.max_body_bytes;
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(Error::InvalidResponse {
                            service: req.service,
                            operation: req.operation,
                            reason: "the response body is larger than the limit",
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Ok(Attempt::Transport(e)),
            }
        }
        Ok(Attempt::Response(Response {
            status,
            headers,
            body,
        }))
    }

    fn api_error(req: &Request, resp: &Response, retry_after: Option<Duration>) -> Error {
        let (code, message) = parse_error_body(&resp.body);
        let code = code.or_else(|| {
            resp.header("x-ms-error-code")
                .map(|c| bounded(c.to_owned()))
        });
        let request_id = resp
            .header("x-ms-request-id")
            .or_else(|| resp.header("x-ms-correlation-request-id"))
            .map(|s| bounded(s.to_owned()));
        Error::Api {
            service: req.service,
            operation: req.operation,
            status: resp.status,
            code,
            message,
            retry_after,
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", " 0 ")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&headers(&[]), now), None);
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "-1")]), now),
            None
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "99999999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:28:03 GMT", now),
            Some(Duration::from_secs(3))
        );
        // RFC 850 and asctime forms are accepted too
        assert_eq!(
            parse_retry_after_value("Wednesday, 21-Oct-15 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after_value("Wed Oct 21 07:28:10 2015", now),
            Some(Duration::from_secs(10))
        );
        // a date in the past means "now"
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after_value("Wed, 32 Oct 2015 07:27:00 GMT", now),
            None
        );
    }

    #[test]
    fn retry_after_ms_headers_win() {
        let h = headers(&[("retry-after", "3"), ("retry-after-ms", "1500")]);
        assert_eq!(
            parse_retry_after(&h, SystemTime::now()),
            Some(Duration::from_millis(1500))
        );
        let h = headers(&[("x-ms-retry-after-ms", "250")]);
        assert_eq!(
            parse_retry_after(&h, SystemTime::now()),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn backoff_bounds() {
        let p = RetryPolicy::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(p.backoff(1, 1.0)), 500);
        assert_eq!(ms(p.backoff(2, 1.0)), 1000);
        assert_eq!(ms(p.backoff(3, 1.0)), 2000);
        assert_eq!(ms(p.backoff(6, 1.0)), 16000);
        assert_eq!(ms(p.backoff(7, 1.0)), 30000);
        assert_eq!(ms(p.backoff(60, 1.0)), 30000);
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(ms(p.backoff(3, 0.5)), 1000);
        // out-of-range fractions are clamped
        assert_eq!(ms(p.backoff(1, 7.0)), 500);
        for attempt in 1..10 {
            for _ in 0..100 {
                let d = p.backoff(attempt, fastrand::f64());
                assert!(d <= p.max_delay);
                assert!(d <= p.base_delay * 2u32.pow(attempt - 1));
            }
        }
    }

    #[test]
    fn error_bodies() {
        let arm =
            br#"{"error":{"code":"ResourceNotFound","message":"The Resource 'x' was not found."}}"#;
        assert_eq!(
            parse_error_body(arm),
            (
                Some("ResourceNotFound".into()),
                Some("The Resource 'x' was not found.".into())
            )
        );
        let entra = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        assert_eq!(
            parse_error_body(entra),
            (
                Some("invalid_client".into()),
                Some("AADSTS7000215: Invalid client secret provided.".into())
            )
        );
        assert_eq!(parse_error_body(b"<html>oops</html>"), (None, None));
        assert_eq!(parse_error_body(b""), (None, None));
        assert_eq!(
            parse_error_body(br#"{"code":"BadRequest","message":"m"}"#),
            (Some("BadRequest".into()), Some("m".into()))
        );
    }

    #[test]
    fn request_ids_are_uuids() {
        let a = new_request_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_request_id());
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_registry_keeps_the_latest_deadline() {
        let reg = ThrottleRegistry::default();
        let key = ScopeKey {
            principal: Arc::from("p"),
            service: Service::Arm,
            host: "h:443".into(),
            subscription: Some("s".into()),
            kind: Some(OpKind::Read),
        };
        let now = Instant::now();
        reg.record(&key, now + Duration::from_secs(5));
        reg.record(&key, now + Duration::from_secs(2));
        assert_eq!(reg.until(&key), Some(now + Duration::from_secs(5)));
        let other = ScopeKey {
            kind: Some(OpKind::Write),
            ..key.clone()
        };
        assert_eq!(reg.until(&other), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(reg.until(&key), None);
    }

    #[test]
    fn every_request_carries_request_id_user_agent_and_a_sensitive_token() {
        let core = HttpCore::new(
            AzureConfig::default(),
            Arc::new(super::super::metrics::NoMetrics),
        )
        .unwrap();
        let mut req = Request::new(
            Service::Arm,
            "get_cluster",
            Method::GET,
            Url::parse("https://management.azure.com/subscriptions/x?api-version=1").unwrap(),
            Arc::from("p"),
        );
        req.body = Some(("application/json", b"{}".to_vec()));
        let built = core
            .build(&req, Some(&Secret::new("tok")), "3f2c-id")
            .unwrap()
            .build()
            .unwrap();
        let h = built.headers();
        assert_eq!(h["x-ms-client-request-id"], "3f2c-id");
        assert!(USER_AGENT.starts_with("guest-attestation-operator/"));
        assert_eq!(h[reqwest::header::USER_AGENT], USER_AGENT);
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(!format!("{h:?}").contains("tok"));
        // IMDS goes through the client that allows plain http
        let imds = Request::new(
            Service::Imds,
            "get_token",
            Method::GET,
            Url::parse("http://169.254.169.254/metadata/identity/oauth2/token").unwrap(),
            Arc::from("p"),
        );
        assert!(core.build(&imds, None, "id").unwrap().build().is_ok());
    }
}
