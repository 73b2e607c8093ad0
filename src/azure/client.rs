//! The client handles (I/O): [`Azure`], built once from the configuration, hands out a cheap-to-clone
//! [`AzureClient`] per set of credentials, cached and replaced when a Secret's content changes.
//!
//! All clients of one [`Azure`] share one HTTP connection pool, the `Retry-After` registry, the token buckets
//! (keyed by principal, so a rotated secret keeps its principal's budget) and the metrics sink. Each client has
//! its own token cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;

use super::auth::{Credentials, Secret, TokenCache, fetch_token};
use super::cloud::AzureConfig;
use super::error::Error;
use super::http::{HttpCore, Request, Response};
use super::metrics::{AzureMetrics, NoMetrics};
use super::models::JsonWebKeySet;
use super::ratelimit::{OpKind, Prepaid};

/// How long an admitted reconcile may wait in its slot for its booked reads; longer, and it requeues.
pub const ADMISSION_PATIENCE: Duration = Duration::from_secs(2);

/// The most clients kept; beyond that the cache starts afresh (each holds only tokens).
const MAX_CACHED_CLIENTS: usize = 256;

/// The factory of [`AzureClient`]s: one per operator process.
pub struct Azure {
    core: Arc<HttpCore>,
    clients: Mutex<HashMap<Credentials, AzureClient>>,
}

impl fmt::Debug for Azure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azure")
            .field("cloud", &self.core.config.cloud)
            .finish_non_exhaustive()
    }
}

impl Azure {
    /// Builds the shared HTTP client (TLS with ring, the platform's roots and the configured extra CA).
    pub fn new(config: AzureConfig) -> Result<Self, Error> {
        Self::with_metrics(config, Arc::new(NoMetrics))
    }

    /// [`Azure::new`] with a metrics sink.
    pub fn with_metrics(
        config: AzureConfig,
        metrics: Arc<dyn AzureMetrics>,
    ) -> Result<Self, Error> {
        Ok(Azure {
            core: Arc::new(HttpCore::new(config, metrics)?),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AzureConfig {
        &self.core.config
    }

    /// The client for `credentials`: the cached one when the same credentials were seen before. When a
    /// principal's credentials change (a rotated secret), its old client is dropped.
    pub fn client_for(&self, credentials: Credentials) -> AzureClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&credentials) {
            return c.clone();
        }
        let principal = credentials.principal();
        let same_kind = |a: &Credentials, b: &Credentials| {
            std::mem::discriminant(a) == std::mem::discriminant(b)
        };
        clients.retain(|k, _| !(k.principal() == principal && same_kind(k, &credentials)));
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        let client = AzureClient::new(self.core.clone(), credentials.clone());
        clients.insert(credentials, client.clone());
        client
    }

    /// The client of the operator's own identity, from its environment (see [`Credentials::from_env`]).
    pub fn from_env(&self) -> Result<AzureClient, Error> {
        Ok(self.client_for(Credentials::from_env()?))
    }
}

/// A client acting as one identity. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct AzureClient {
    inner: Arc<ClientInner>,
    /// The MAA data-plane api-version for this handle (a resource's own choice), else the config's.
    maa_api_version: Option<Arc<str>>,
    /// ARM reads this handle booked ahead ([`AzureClient::admit`]).
    prepaid: Option<Arc<Prepaid>>,
    /// The ARM write this handle booked ahead ([`AzureClient::admit_write`]).
    prepaid_write: Option<Arc<Prepaid>>,
}

struct ClientInner {
    core: Arc<HttpCore>,
    credentials: Credentials,
    principal: Arc<str>,
    tokens: TokenCache,
    /// MAA signing keys per instance.
    jwks: Mutex<HashMap<String, Arc<JsonWebKeySet>>>,
}

impl fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureClient")
            .field("principal", &self.inner.principal)
            .finish_non_exhaustive()
    }
}

impl AzureClient {
    fn new(core: Arc<HttpCore>, credentials: Credentials) -> Self {
        AzureClient {
            inner: Arc::new(ClientInner {
                principal: Arc::from(credentials.principal()),
                core,
                credentials,
                tokens: TokenCache::default(),
                jwks: Mutex::new(HashMap::new()),
            }),
            maa_api_version: None,
            prepaid: None,
            prepaid_write: None,
        }
    }

    /// Books `reads` ARM reads of `subscription` for `holder` (one object's reconcile) and returns this client
    /// with them: its next reads of that subscription skip the rate limiter. When the reads are more than
    /// [`ADMISSION_PATIENCE`] away they are booked all the same and [`Error::Held`] says when to come back (the
    /// same holder then gets them without queueing again), so a reconcile requeues instead of waiting in its
    /// slot.
    pub async fn admit(
        &self,
        subscription: &str,
        holder: &str,
        reads: u32,
    ) -> Result<AzureClient, Error> {
        let prepaid = self.book(subscription, holder, OpKind::Read, reads).await?;
        Ok(AzureClient {
            prepaid: Some(prepaid),
            ..self.clone()
        })
    }

    /// Books one ARM write (PUT, PATCH, POST) of `subscription` for `holder`, as [`AzureClient::admit`] books
    /// reads: a reconcile about to write waits for the write budget in the requeue queue, holding its place,
    /// instead of in its slot ([`Error::Held`] says when to come back).
    pub async fn admit_write(
        &self,
        subscription: &str,
        holder: &str,
    ) -> Result<AzureClient, Error> {
        let prepaid = self.book(subscription, holder, OpKind::Write, 1).await?;
        Ok(AzureClient {
            prepaid_write: Some(prepaid),
            ..self.clone()
        })
    }

    async fn book(
        &self,
        subscription: &str,
        holder: &str,
        kind: OpKind,
        tokens: u32,
    ) -> Result<Arc<Prepaid>, Error> {
        let core = &self.inner.core;
        let principal = &self.inner.principal;
        core.admit(
            principal,
            subscription,
            holder,
            (kind, tokens),
            ADMISSION_PATIENCE,
        )
        .await
        .map(Arc::new)
    }

    /// The tokens booked ahead for requests of `method` (reads, or the write), if any.
    pub(crate) fn prepaid(&self, method: &Method) -> Option<Arc<Prepaid>> {
        match OpKind::of(method) {
            OpKind::Read => self.prepaid.clone(),
            OpKind::Write => self.prepaid_write.clone(),
            OpKind::Delete => None,
        }
    }

    /// This client, using `version` for MAA data-plane calls (token cache and keys shared).
    #[must_use]
    pub fn with_maa_api_version(&self, version: &str) -> Self {
        AzureClient {
            inner: Arc::clone(&self.inner),
            maa_api_version: Some(Arc::from(version)),
            ..self.clone()
        }
    }

    /// The MAA data-plane api-version this handle uses.
    pub fn maa_api_version(&self) -> &str {
        self.maa_api_version
            .as_deref()
            .unwrap_or(&self.inner.core.config.api_versions.maa)
    }

    /// The credentials this client uses.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The identity this client acts as (no secret).
    pub fn principal(&self) -> &str {
        &self.inner.principal
    }

    /// The configuration.
    pub fn config(&self) -> &AzureConfig {
        &self.inner.core.config
    }

    pub(crate) fn core(&self) -> &HttpCore {
        &self.inner.core
    }

    pub(crate) fn principal_arc(&self) -> Arc<str> {
        self.inner.principal.clone()
    }

    pub(crate) fn cached_jwks(&self, instance: &str) -> Option<Arc<JsonWebKeySet>> {
        let map = self
            .inner
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(instance).cloned()
    }

    pub(crate) fn store_jwks(&self, instance: String, keys: Arc<JsonWebKeySet>) {
        let mut map = self
            .inner
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() > 64 {
            map.clear();
        }
        map.insert(instance, keys);
    }

    /// A token for `scope`, cached.
    async fn token(&self, scope: &str) -> Result<Secret, Error> {
        let inner = &self.inner;
        inner
            .tokens
            .get(scope, || {
                fetch_token(&inner.core, &inner.credentials, &inner.principal, scope)
            })
            .await
    }

    /// Sends with a bearer token of `scope`. A 401 drops the cached token and tries once more with a new one
    /// (the token may have been revoked or the clocks may differ).
    pub(crate) async fn send_authed(&self, req: &Request, scope: &str) -> Result<Response, Error> {
        let token = self.token(scope).await?;
        match self.inner.core.send(req, Some(&token)).await {
            Err(e) if e.status() == Some(401) => {
                tracing::debug!(operation = req.operation, "401: fetching a new token");
                self.inner.tokens.invalidate(scope, &token).await;
                let token = self.token(scope).await?;
                self.inner.core.send(req, Some(&token)).await
            }
            other => other,
        }
    }
}
