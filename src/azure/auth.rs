//! Credentials and access tokens (I/O: the Entra ID and IMDS token endpoints, the federated token file).
//!
//! * [`Credentials`]: a service principal with a client secret (from a CR's `credentialsRef` Secret or
//!   `AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`, re-read on every exchange because the
//!   kubelet rotates it), or a managed identity (IMDS).
//! * Tokens are cached per (identity, scope) — one [`TokenCache`] per client, and one client per identity — and
//!   refreshed 5 minutes before expiry, or at half their lifetime when they live less than 10 minutes. One fetch
//!   per scope runs at a time; concurrent callers wait for it (single flight).
//! * [`Secret`] redacts itself in `Debug` and `Display`; secrets and tokens never reach logs or error messages.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use url::Url;

use super::error::{Error, Service};
use super::http::{HttpCore, Request};

/// A secret value (client secret, access token). `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Only for sending it where it belongs; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// How the client authenticates to Azure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// A service principal with a client secret (a CR's `credentialsRef` Secret, or `AZURE_CLIENT_SECRET`).
    ClientSecret {
        /// The Entra tenant (GUID or domain).
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// Overrides the cloud's authority host (`AZURE_AUTHORITY_HOST`).
        authority_host: Option<Url>,
    },
    /// Workload identity federation: the projected service-account token is exchanged for an Entra token.
    WorkloadIdentity {
        /// The Entra tenant (`AZURE_TENANT_ID`).
        tenant_id: String,
        /// The application (client) id (`AZURE_CLIENT_ID`).
        client_id: String,
        /// The projected token file (`AZURE_FEDERATED_TOKEN_FILE`), re-read on every exchange.
        token_file: PathBuf,
        /// Overrides the cloud's authority host (`AZURE_AUTHORITY_HOST`).
        authority_host: Option<Url>,
    },
    /// A managed identity, from the IMDS endpoint.
    ManagedIdentity {
        /// A user-assigned identity's client id; `None` for the system-assigned identity.
        client_id: Option<String>,
    },
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => write!(f, "client secret of {client_id} in tenant {tenant_id}"),
            Credentials::WorkloadIdentity {
                tenant_id,
                client_id,
                ..
            } => write!(f, "workload identity {client_id} in tenant {tenant_id}"),
            Credentials::ManagedIdentity { client_id: Some(c) } => {
                write!(f, "managed identity {c}")
            }
            Credentials::ManagedIdentity { client_id: None } => {
                f.write_str("system-assigned managed identity")
            }
        }
    }
}

fn env_error(what: &'static str) -> Error {
    Error::Credential { what, source: None }
}

impl Credentials {
    /// A service principal with a client secret, as read from a `credentialsRef` Secret.
    pub fn client_secret(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Credentials::ClientSecret {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            authority_host: None,
        }
    }

    /// The operator's own identity from its environment: workload identity when `AZURE_FEDERATED_TOKEN_FILE`
    /// is set, else a client secret when `AZURE_CLIENT_SECRET` is set, else a managed identity (user-assigned
    /// when `AZURE_CLIENT_ID` is set). `AZURE_AUTHORITY_HOST` overrides the authority host.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Credentials::from_env`] with a custom variable lookup (for tests and for reading a config map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let authority_host = get("AZURE_AUTHORITY_HOST")
            .map(|h| Url::parse(&h))
            .transpose()
            .map_err(|e| Error::Credential {
                what: "AZURE_AUTHORITY_HOST is not a URL",
                source: Some(Box::new(e)),
            })?;
        let tenant = get("AZURE_TENANT_ID");
        let client = get("AZURE_CLIENT_ID");
        if let Some(file) = get("AZURE_FEDERATED_TOKEN_FILE") {
            return Ok(Credentials::WorkloadIdentity {
                tenant_id: tenant.ok_or_else(|| {
                    env_error("AZURE_FEDERATED_TOKEN_FILE is set but AZURE_TENANT_ID is not")
                })?,
                client_id: client.ok_or_else(|| {
                    env_error("AZURE_FEDERATED_TOKEN_FILE is set but AZURE_CLIENT_ID is not")
                })?,
                token_file: PathBuf::from(file),
                authority_host,
            });
        }
        if let Some(secret) = get("AZURE_CLIENT_SECRET") {
            return Ok(Credentials::ClientSecret {
                tenant_id: tenant.ok_or_else(|| {
                    env_error("AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID is not")
                })?,
                client_id: client.ok_or_else(|| {
                    env_error("AZURE_CLIENT_SECRET is set but AZURE_CLIENT_ID is not")
                })?,
                client_secret: Secret(secret),
                authority_host,
            });
        }
        Ok(Credentials::ManagedIdentity { client_id: client })
    }

    /// The identity the credentials stand for, without any secret: `tenant/client` for service principals
    /// (a client secret and a federated credential of one app are one principal), `msi/<client>` or
    /// `msi/system` for managed identities. Keys token caches, throttle scopes and rate limits.
    pub fn principal(&self) -> String {
        match self {
            Credentials::ClientSecret {
                tenant_id,
                client_id,
                ..
            }
            | Credentials::WorkloadIdentity {
                tenant_id,
                client_id,
                ..
            } => format!(
                "{}/{}",
                tenant_id.to_ascii_lowercase(),
                client_id.to_ascii_lowercase()
            ),
            Credentials::ManagedIdentity { client_id } => format!(
                "msi/{}",
                client_id
                    .as_deref()
                    .map_or_else(|| "system".to_owned(), str::to_ascii_lowercase)
            ),
        }
    }
}

/// A freshly fetched token and how long it lives.
#[derive(Debug)]
pub(crate) struct FetchedToken {
    pub value: Secret,
    pub lifetime: Duration,
}

#[derive(Debug)]
struct CachedToken {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// When a token fetched `now` with `lifetime` should be refreshed: 5 minutes before expiry, or at half-life
/// for tokens that live less than 10 minutes.
pub(crate) fn refresh_at(now: Instant, lifetime: Duration) -> Instant {
    const MARGIN: Duration = Duration::from_mins(5);
    let margin = if lifetime >= 2 * MARGIN {
        MARGIN
    } else {
        lifetime / 2
    };
    now + lifetime.saturating_sub(margin)
}

/// After a failed refresh while the old token is still valid, the next attempt waits this long.
const FAILED_REFRESH_PAUSE: Duration = Duration::from_secs(30);

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Tokens of one identity, per scope.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    fn slot(&self, scope: &str) -> Slot {
        let mut map = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(scope.to_owned()).or_default().clone()
    }

    /// The cached token of `scope`, or a new one from `fetch` when it is due for refresh. One fetch per scope
    /// at a time. If a refresh fails while the old token is still valid, the old token is used.
    pub(crate) async fn get<F, Fut>(&self, scope: &str, fetch: F) -> Result<Secret, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, Error>>,
    {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        let now = Instant::now();
        if let Some(t) = cached.as_ref()
            && now < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        match fetch().await {
            Ok(fresh) => {
                let now = Instant::now();
                let value = fresh.value.clone();
                *cached = Some(CachedToken {
                    value: fresh.value,
                    refresh_at: refresh_at(now, fresh.lifetime),
                    expires_at: now + fresh.lifetime,
                });
                Ok(value)
            }
            Err(e) => match cached.as_mut() {
                Some(t) if Instant::now() < t.expires_at => {
                    tracing::debug!(error = %e, "token refresh failed; the cached token is still valid");
                    t.refresh_at = Instant::now() + FAILED_REFRESH_PAUSE;
                    Ok(t.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Drops the cached token of `scope` if it is `rejected` (Azure answered 401 to it).
    pub(crate) async fn invalidate(&self, scope: &str, rejected: &Secret) {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == *rejected) {
            *cached = None;
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_on: Option<u64>,
}

/// Entra sends `expires_in` as a number, IMDS as a string.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        Some(NumOrStr::Num(n)) => Some(n),
        Some(NumOrStr::Str(s)) => s.trim().parse().ok(),
        None => None,
    })
}

fn check_tenant(tenant: &str) -> Result<(), Error> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(env_error("the tenant id is not a GUID or domain name"))
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, joined whatever the authority's trailing slash.
fn token_url(authority: &Url, tenant: &str) -> Result<Url, Error> {
    check_tenant(tenant)?;
    let mut url = authority.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| env_error("the authority host cannot be a base URL"))?
        .pop_if_empty()
        .extend([tenant, "oauth2", "v2.0", "token"]);
    Ok(url)
}

/// Fetches a token for `scope` (e.g. `https://management.azure.com/.default`).
pub(crate) async fn fetch_token(
    core: &HttpCore,
    credentials: &Credentials,
    principal: &Arc<str>,
    scope: &str,
) -> Result<FetchedToken, Error> {
    let (service, resp) = match credentials {
        Credentials::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
            authority_host,
        } => {
            let form = [
                ("client_id", client_id.as_str()),
                ("scope", scope),
                ("grant_type", "client_credentials"),
                ("client_secret", client_secret.expose()),
            ];
            let authority = authority_host
                .as_ref()
                .unwrap_or(&core.config.cloud.authority_host);
            let url = token_url(authority, tenant_id)?;
            (
                Service::Entra,
                entra_request(core, principal, url, &form).await?,
            )
        }
        Credentials::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
            authority_host,
        } => {
            let assertion = read_federated_token(token_file).await?;
            let form = [
                ("client_id", client_id.as_str()),
                ("scope", scope),
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.expose()),
            ];
            let authority = authority_host
                .as_ref()
                .unwrap_or(&core.config.cloud.authority_host);
            let url = token_url(authority, tenant_id)?;
            (
                Service::Entra,
                entra_request(core, principal, url, &form).await?,
            )
        }
        Credentials::ManagedIdentity { client_id } => (
            Service::Imds,
            imds_request(core, principal, client_id.as_deref(), scope).await?,
        ),
    };
    parse_token_response(service, &resp.body)
}

/// Reads the projected service-account token; called on every exchange, as the kubelet rotates it.
async fn read_federated_token(path: &std::path::Path) -> Result<Secret, Error> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| Error::Credential {
            what: "cannot read the federated token file",
            source: Some(Box::new(e)),
        })?;
    let token = Secret(text.trim().to_owned());
    if token.is_empty() {
        return Err(env_error("the federated token file is empty"));
    }
    Ok(token)
}

/// `GET {imds}?api-version=..&resource=..[&client_id=..]` with `Metadata: true`.
async fn imds_request(
    core: &HttpCore,
    principal: &Arc<str>,
    client_id: Option<&str>,
    scope: &str,
) -> Result<super::http::Response, Error> {
    let mut url = core.config.imds_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("api-version", &core.config.api_versions.imds);
        q.append_pair("resource", scope.strip_suffix("/.default").unwrap_or(scope));
        if let Some(c) = client_id {
            q.append_pair("client_id", c);
        }
    }
    let mut req = Request::new(
        Service::Imds,
        "get_token",
        Method::GET,
        url,
        principal.clone(),
    );
    req.headers.push((
        HeaderName::from_static("metadata"),
        HeaderValue::from_static("true"),
    ));
    core.send(&req, None).await
}

/// Decodes a token response (Entra: `expires_in` a number; IMDS: strings, plus `expires_on`).
fn parse_token_response(service: Service, body: &[u8]) -> Result<FetchedToken, Error> {
    let invalid = |reason| Error::InvalidResponse {
        service,
        operation: "get_token",
        reason,
    };
    // serde's message could quote a field value, so the decode error is not kept.
    let token: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| invalid("the token response is not a JSON object with access_token"))?;
    let lifetime = match (token.expires_in, token.expires_on) {
        (Some(secs), _) => Duration::from_secs(secs),
        (None, Some(on)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Duration::from_secs(on.saturating_sub(now))
        }
        (None, None) => return Err(invalid("the token response has no expires_in")),
    };
    if token.access_token.is_empty() {
        return Err(invalid("the token response has an empty access_token"));
    }
    Ok(FetchedToken {
        value: token.access_token,
        lifetime,
    })
}

async fn entra_request(
    core: &HttpCore,
    principal: &Arc<str>,
    url: Url,
    form: &[(&str, &str)],
) -> Result<super::http::Response, Error> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
        .into_bytes();
    let mut req = Request::new(
        Service::Entra,
        "get_token",
        Method::POST,
        url,
        principal.clone(),
    );
    // A token request changes nothing on the server: safe to repeat.
    req.idempotent = true;
    req.body = Some(("application/x-www-form-urlencoded", body));
    core.send(&req, None).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let c = Credentials::client_secret("t", "c", Secret::new("hunter2-very-secret"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c}").contains("hunter2"));
        assert!(format!("{c:?}").contains("[REDACTED]"));
        let s = Secret::new("tok");
        assert_eq!(format!("{s} {s:?}"), "[REDACTED] [REDACTED]");
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc.def","expires_in":"3599"}"#).unwrap();
        assert_eq!(r.access_token.expose(), "abc.def");
        assert_eq!(r.expires_in, Some(3599));
    }

    #[test]
    fn credentials_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let wi = Credentials::from_lookup(env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
            ("AZURE_CLIENT_SECRET", "ignored"),
        ]))
        .unwrap();
        assert!(
            matches!(wi, Credentials::WorkloadIdentity { ref authority_host, .. } if authority_host.is_some())
        );
        let cs = Credentials::from_lookup(env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        assert!(matches!(cs, Credentials::ClientSecret { .. }));
        let mi = Credentials::from_lookup(env(&[("AZURE_CLIENT_ID", "C")])).unwrap();
        assert_eq!(mi.principal(), "msi/c");
        let sys = Credentials::from_lookup(env(&[])).unwrap();
        assert_eq!(sys.principal(), "msi/system");
        let missing = Credentials::from_lookup(env(&[("AZURE_CLIENT_SECRET", "s")])).unwrap_err();
        assert!(matches!(missing, Error::Credential { .. }));
        assert!(missing.to_string().contains("AZURE_TENANT_ID"));
        let bad = Credentials::from_lookup(env(&[("AZURE_AUTHORITY_HOST", "not a url")]));
        assert!(bad.is_err());
        // one app = one principal, whatever the credential kind
        assert_eq!(wi.principal(), cs.principal());
    }

    #[test]
    fn token_urls() {
        for authority in [
            "https://login.microsoftonline.com/",
            "https://login.microsoftonline.com",
        ] {
            let u = token_url(&Url::parse(authority).unwrap(), "contoso.onmicrosoft.com").unwrap();
            assert_eq!(
                u.as_str(),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
            );
        }
        let u = token_url(&Url::parse("https://127.0.0.1:8443/entra/").unwrap(), "t").unwrap();
        assert_eq!(
            u.as_str(),
            "https://127.0.0.1:8443/entra/t/oauth2/v2.0/token"
        );
        assert!(token_url(&Url::parse("https://x/").unwrap(), "../evil").is_err());
        assert!(token_url(&Url::parse("https://x/").unwrap(), "").is_err());
    }

    #[test]
    fn refresh_schedule() {
        let now = Instant::now();
        let hour = Duration::from_hours(1);
        assert_eq!(refresh_at(now, hour), now + hour - Duration::from_mins(5));
        assert_eq!(
            refresh_at(now, Duration::from_mins(10)),
            now + Duration::from_mins(5)
        );
        assert_eq!(
            refresh_at(now, Duration::from_mins(2)),
            now + Duration::from_mins(1)
        );
        assert_eq!(refresh_at(now, Duration::ZERO), now);
    }

    /// A token endpoint that counts its calls.
    async fn fetcher(counter: &AtomicU32, lifetime: Duration) -> Result<FetchedToken, Error> {
        tokio::task::yield_now().await;
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(FetchedToken {
            value: Secret(format!("token-{n}")),
            lifetime,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_five_minutes_before_expiry() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let hour = Duration::from_hours(1);
        let t1 = cache.get("arm", || fetcher(&n, hour)).await.unwrap();
        assert_eq!(t1.expose(), "token-1");
        tokio::time::advance(Duration::from_secs(3600 - 301)).await;
        let t = cache.get("arm", || fetcher(&n, hour)).await.unwrap();
        assert_eq!(t.expose(), "token-1");
        // another scope has its own token
        let m = cache.get("maa", || fetcher(&n, hour)).await.unwrap();
        assert_eq!(m.expose(), "token-2");
        tokio::time::advance(Duration::from_secs(2)).await;
        let t = cache.get("arm", || fetcher(&n, hour)).await.unwrap();
        assert_eq!(t.expose(), "token-3");
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_refresh_at_half_life() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let life = Duration::from_mins(1);
        cache.get("s", || fetcher(&n, life)).await.unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            cache.get("s", || fetcher(&n, life)).await.unwrap().expose(),
            "token-1"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            cache.get("s", || fetcher(&n, life)).await.unwrap().expose(),
            "token-2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn single_flight() {
        let cache = Arc::new(TokenCache::default());
        let n = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let cache = cache.clone();
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get("arm", || async {
                        // a slow token endpoint
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        fetcher(&n, Duration::from_hours(1)).await
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().expose(), "token-1");
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_and_failed_refresh() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let hour = Duration::from_hours(1);
        let t1 = cache.get("arm", || fetcher(&n, hour)).await.unwrap();
        // invalidating another value does nothing
        cache.invalidate("arm", &Secret::new("other")).await;
        assert_eq!(cache.get("arm", || fetcher(&n, hour)).await.unwrap(), t1);
        cache.invalidate("arm", &t1).await;
        let t2 = cache.get("arm", || fetcher(&n, hour)).await.unwrap();
        assert_eq!(t2.expose(), "token-2");
        // in the refresh window, a failing endpoint leaves the still-valid token in use
        tokio::time::advance(Duration::from_secs(3400)).await;
        let failing = || async { Err(env_error("endpoint down")) };
        assert_eq!(cache.get("arm", failing).await.unwrap(), t2);
        // past expiry the error surfaces
        tokio::time::advance(Duration::from_mins(5)).await;
        assert!(cache.get("arm", failing).await.is_err());
    }
}
