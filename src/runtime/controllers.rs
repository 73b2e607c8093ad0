//! Wiring (I/O): builds each controller's context and starts one controller per kind and
//! watched namespace, all stopping on one shutdown signal; plus the start-up check that our
//! CRDs are installed and readable.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures::{FutureExt, future::Shared};
use kube::{Api, Client, Resource, api::ListParams};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::azure::{Azure, AzureClient, AzureClients, Credentials, Error as AzureError};
use crate::controller::{Context, Settings};
use crate::crd::{AttestationProvider, AttestationStatus, GuestAttestationExtension};
use crate::metrics::Metrics;

use super::status_metrics::StatusMetrics;

/// The one shutdown signal every controller waits on (cloneable, `Send + Sync`).
pub type ShutdownSignal = Shared<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// One Azure factory shared by every controller: one connection pool, one `Retry-After`
/// registry and one set of ARM token buckets per principal for the whole process.
#[derive(Clone, Debug)]
pub struct SharedAzure(pub Arc<Azure>);

impl AzureClients for SharedAzure {
    type Client = AzureClient;

    fn client_for(&self, credentials: Credentials) -> AzureClient {
        self.0.client_for(credentials)
    }

    fn operator_client(&self) -> Result<AzureClient, AzureError> {
        self.0.from_env()
    }
}

/// A running controller.
pub struct Running {
    /// `<kind>` and the namespace (or `*`).
    pub name: String,
    /// Its task; it ends after a graceful shutdown.
    pub task: JoinHandle<()>,
}

/// Everything the controllers share.
pub struct Parts {
    /// Kubernetes client.
    pub client: Client,
    /// Azure factory.
    pub azure: SharedAzure,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The fleet's size, shared so every controller raises its intervals to the read budget.
    pub fleet: Arc<crate::controller::fleet::Fleet>,
}

impl Parts {
    fn context(&self, controller: &str) -> Context<SharedAzure> {
        Context::new(
            self.client.clone(),
            self.azure.clone(),
            self.settings.clone(),
            Arc::clone(&self.metrics),
            controller,
        )
        .with_fleet(Arc::clone(&self.fleet))
    }
}

/// Starts every controller in every watched namespace (`None` = all namespaces).
pub fn start(
    parts: &Parts,
    namespaces: &[Option<String>],
    shutdown: &ShutdownSignal,
) -> Vec<Running> {
    let mut running = Vec::new();
    let label = |kind: &str, ns: &Option<String>| crate::controller::scope(kind, ns.as_deref());

    // AttestationStatus: mirrors each VM's attestation health.
    let status = Arc::new(crate::attestation_status::StatusContext::new(
        parts.context("attestationstatus"),
    ));
    for ns in namespaces {
        running.push(Running {
            name: label("attestationstatus", ns),
            task: tokio::spawn(crate::attestation_status::run(
                Arc::clone(&status),
                ns.clone(),
                shutdown.clone(),
            )),
        });
    }

    // GuestAttestationExtension: deploys the extension and creates AttestationStatus objects.
    let extension = Arc::new(crate::extension::ExtensionContext::new(
        parts.context(crate::extension::CONTROLLER),
    ));
    for ns in namespaces {
        running.push(Running {
            name: label("guestattestationextension", ns),
            task: tokio::spawn(crate::extension::run(
                Arc::clone(&extension),
                ns.clone(),
                shutdown.clone(),
            )),
        });
    }

    // AttestationProvider: the MAA endpoint and its policy.
    let provider = Arc::new(crate::provider::ProviderContext::new(
        parts.context(crate::provider::CONTROLLER),
    ));
    for ns in namespaces {
        running.push(Running {
            name: label("attestationprovider", ns),
            task: tokio::spawn(crate::provider::run(
                Arc::clone(&provider),
                ns.clone(),
                shutdown.clone(),
            )),
        });
    }

    for r in &running {
        info!(controller = %r.name, "controller started");
    }
    running
}

/// A CRD is missing or unreadable.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {plural} (is the CRD installed and does the RBAC allow it?)")]
pub struct CrdUnavailable {
    /// The resource's plural.
    pub plural: String,
    /// The last error.
    #[source]
    pub source: Box<kube::Error>,
}

async fn probe<K>(client: &Client, ns: Option<&str>) -> Result<(), CrdUnavailable>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|e| CrdUnavailable {
            plural: K::plural(&()).into_owned(),
            source: Box::new(e),
        })
}

/// Lists each of our kinds once (limit 1) in each watched namespace: proves the CRDs are
/// installed and the RBAC lets us list them.
pub async fn check_kinds(
    client: &Client,
    namespaces: &[Option<String>],
) -> Result<(), CrdUnavailable> {
    for ns in namespaces {
        let ns = ns.as_deref();
        probe::<AttestationStatus>(client, ns).await?;
        probe::<GuestAttestationExtension>(client, ns).await?;
        probe::<AttestationProvider>(client, ns).await?;
    }
    Ok(())
}

/// [`check_kinds`] until it succeeds or `timeout` passes (polling every second).
pub async fn wait_for_kinds(
    client: &Client,
    namespaces: &[Option<String>],
    timeout: Duration,
) -> Result<(), CrdUnavailable> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut warned = false;
    loop {
        match check_kinds(client, namespaces).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() + Duration::from_secs(1) < deadline => {
                if !warned {
                    warn!(error = %e, cause = %e.source, "waiting for the CRDs");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Makes the shared shutdown signal from a watch channel turning true.
pub fn shutdown_signal(mut rx: tokio::sync::watch::Receiver<bool>) -> ShutdownSignal {
    let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    fut.shared()
}

/// Starts the status-derived metrics: one watch per kind and namespace, until `stop`.
pub fn start_status_metrics(
    status_metrics: &Arc<StatusMetrics>,
    client: &Client,
    namespaces: &[Option<String>],
    page_size: u32,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for ns in namespaces {
        let sm = || Arc::clone(status_metrics);
        tasks.push(tokio::spawn(sm().watch::<AttestationStatus>(
            client.clone(),
            ns.clone(),
            page_size,
            stop.clone(),
        )));
        tasks.push(tokio::spawn(sm().watch::<GuestAttestationExtension>(
            client.clone(),
            ns.clone(),
            page_size,
            stop.clone(),
        )));
        tasks.push(tokio::spawn(sm().watch::<AttestationProvider>(
            client.clone(),
            ns.clone(),
            page_size,
            stop.clone(),
        )));
    }
    tasks
}
