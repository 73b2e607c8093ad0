//! ARM calls (I/O): GET/PUT/PATCH/DELETE of the resources the operator uses, and long-running operations.
//!
//! A long-running operation is started with `begin_*`, which returns an [`Lro`] handle, and followed with
//! [`AzureClient::poll_operation`], one request per call, which answers [`LroPoll::Pending`] (ask again after
//! `retry_after`) or [`LroPoll::Done`]. A controller never waits on an operation: it keeps the handle (it is
//! serialisable) and requeues. Polling follows ARM's rules (async-operations.md): `Azure-AsyncOperation` when
//! present (its `status`), else `Location` (202 while running), else the resource's own `provisioningState`.
//! Operation URLs must be on the ARM endpoint, so the ARM token never goes elsewhere.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::client::AzureClient;
use super::error::{Error, Service};
use super::http::{Request, Response, parse_retry_after};
use super::ids::{ClusterId, MachineId, ProviderId, ResourceId};
use super::models::{
    AttestationProvider, AttestationProviderCreate, AttestationProviderPatch, Cluster,
    DeleteOutcome, Machine, MachineExtension, MachineExtensionSpec, ProvisioningState,
    VmAttestationStatus, VmInstance,
};

/// The client operation that reads a VM instance, as errors and metrics name it.
pub const GET_VM_INSTANCE: &str = "get_vm_instance";

/// Which long-running operation a handle follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LroKind {
    /// Create or update a machine extension.
    PutExtension,
    /// Delete a machine extension.
    DeleteExtension,
}

impl LroKind {
    /// The client operation name (for errors and metrics).
    pub fn operation(self) -> &'static str {
        match self {
            LroKind::PutExtension => "put_extension",
            LroKind::DeleteExtension => "delete_extension",
        }
    }

    fn is_delete(self) -> bool {
        matches!(self, LroKind::DeleteExtension)
    }
}

/// How a handle is followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "via")]
enum LroState {
    /// Finished in the first response (the final body, if any).
    Done { body: Option<Value> },
    /// Poll the `Azure-AsyncOperation` URL.
    AsyncOperation { url: String },
    /// Poll the `Location` URL.
    Location { url: String },
    /// Poll the resource itself.
    Resource,
}

/// A long-running ARM operation in flight. Serialisable, so a controller can keep it across reconciles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Lro<T> {
    kind: LroKind,
    resource_id: ResourceId,
    api_version: String,
    state: LroState,
    /// The `Retry-After` of the first response, or the default poll interval.
    retry_after_ms: u64,
    started_unix_ms: u64,
    deadline_unix_ms: u64,
    #[serde(skip)]
    output: PhantomData<fn() -> T>,
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<T> Lro<T> {
    /// Which operation this is.
    pub fn kind(&self) -> LroKind {
        self.kind
    }

    /// The resource the operation works on.
    pub fn resource_id(&self) -> &ResourceId {
        &self.resource_id
    }

    /// Whether the operation already finished in its first response (polling then sends nothing).
    pub fn finished_at_start(&self) -> bool {
        matches!(self.state, LroState::Done { .. })
    }

    /// How long to wait before the first poll.
    pub fn retry_after(&self) -> Duration {
        Duration::from_millis(self.retry_after_ms)
    }

    /// The URL polled (`Azure-AsyncOperation` or `Location`), if any.
    pub fn status_url(&self) -> Option<&str> {
        match &self.state {
            LroState::AsyncOperation { url } | LroState::Location { url } => Some(url),
            _ => None,
        }
    }

    /// When polling gives up with [`Error::OperationTimeout`].
    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.deadline_unix_ms)
    }

    /// The same operation with another deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline_unix_ms = unix_ms(deadline);
        self
    }
}

/// The answer of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LroPoll<T> {
    /// Still running: poll again after `retry_after`.
    Pending {
        /// From Azure's `Retry-After`, or the configured default.
        retry_after: Duration,
        /// Azure's status text, e.g. `InProgress`, `Creating`.
        status: Option<String>,
    },
    /// Finished successfully.
    Done(T),
}

/// What a finished operation yields.
pub trait LroOutput: Sized + Send {
    /// Builds the output from the final resource body (`None` for deletions).
    fn from_final(body: Option<Value>) -> Result<Self, serde_json::Error>;
}

impl LroOutput for MachineExtension {
    fn from_final(body: Option<Value>) -> Result<Self, serde_json::Error> {
        serde_json::from_value(body.unwrap_or(Value::Null))
    }
}

impl LroOutput for () {
    fn from_final(_: Option<Value>) -> Result<Self, serde_json::Error> {
        Ok(())
    }
}

#[derive(Deserialize)]
struct OperationStatus {
    status: Option<String>,
    error: Option<OperationError>,
}

#[derive(Deserialize)]
struct OperationError {
    code: Option<String>,
    message: Option<String>,
}

fn provisioning_state(body: &Value) -> Option<ProvisioningState> {
    body.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .map(ProvisioningState::from)
}

/// `OperationFailed` from a resource that ended `Failed`/`Canceled`, with its instance-view status as the error.
fn failed_resource(operation: &'static str, state: &ProvisioningState, body: &Value) -> Error {
    let status = body.pointer("/properties/instanceView/status");
    let text = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .map(|s| super::error::bounded(s.to_owned()))
    };
    Error::OperationFailed {
        operation,
        status: state.to_string(),
        code: text("code"),
        message: text("message"),
    }
}

/// The subscription of an ARM path (`/subscriptions/{sub}/...`), for rate limiting polls.
fn subscription_of(url: &Url) -> Option<String> {
    let mut segs = url.path_segments()?;
    while let Some(s) = segs.next() {
        if s.eq_ignore_ascii_case("subscriptions") {
            return segs.next().map(str::to_owned);
        }
    }
    None
}

impl AzureClient {
    fn arm_url(&self, id: &ResourceId, api_version: &str) -> Result<Url, Error> {
        let mut url = self.core().config.cloud.arm_endpoint.clone();
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| Error::Config {
                what: "the ARM endpoint cannot be a base URL",
                source: None,
            })?
            .pop_if_empty()
            .extend(id.segments());
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    fn arm_request(
        &self,
        operation: &'static str,
        method: Method,
        id: &ResourceId,
        api_version: &str,
    ) -> Result<Request, Error> {
        let url = self.arm_url(id, api_version)?;
        let mut req = Request::new(Service::Arm, operation, method, url, self.principal_arc());
        req.subscription = Some(id.subscription().to_owned());
        req.prepaid = self.prepaid(&req.method);
        Ok(req)
    }

    fn with_json<B: Serialize>(mut req: Request, body: &B) -> Result<Request, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Config {
            what: "the request body cannot be serialised",
            source: Some(Box::new(e)),
        })?;
        req.body = Some(("application/json", bytes));
        Ok(req)
    }

    async fn arm_send(&self, req: &Request) -> Result<Response, Error> {
        let scope = self.core().config.cloud.arm_scope.clone();
        self.send_authed(req, &scope).await
    }

    async fn arm_get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        id: &ResourceId,
        api_version: &str,
    ) -> Result<Option<T>, Error> {
        let req = self.arm_request(operation, Method::GET, id, api_version)?;
        match self.arm_send(&req).await {
            Ok(resp) => resp.json(Service::Arm, operation).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gets an Azure Local cluster; `None` if it does not exist.
    pub async fn get_cluster(&self, id: &ClusterId) -> Result<Option<Cluster>, Error> {
        let v = self.core().config.api_versions.clusters.clone();
        self.arm_get("get_cluster", id.as_resource_id(), &v).await
    }

    /// Gets an Arc machine; `None` if it does not exist.
    pub async fn get_machine(&self, id: &MachineId) -> Result<Option<Machine>, Error> {
        let v = self.core().config.api_versions.hybrid_compute.clone();
        self.arm_get("get_machine", id.as_resource_id(), &v).await
    }

    /// Gets the Azure Local VM instance of a machine; `None` if it does not exist.
    pub async fn get_vm_instance(&self, machine: &MachineId) -> Result<Option<VmInstance>, Error> {
        let v = self.core().config.api_versions.vm_instances.clone();
        self.arm_get(GET_VM_INSTANCE, &machine.vm_instance_id(), &v)
            .await
    }

    /// Gets the attestation status of a machine's VM instance; `None` if there is none (yet).
    pub async fn get_attestation_status(
        &self,
        machine: &MachineId,
    ) -> Result<Option<VmAttestationStatus>, Error> {
        let v = self.core().config.api_versions.vm_instances.clone();
        self.arm_get(
            "get_attestation_status",
            &machine.attestation_status_id(),
            &v,
        )
        .await
    }

    /// Gets a machine extension; `None` if it does not exist.
    pub async fn get_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> Result<Option<MachineExtension>, Error> {
        let v = self.core().config.api_versions.hybrid_compute.clone();
        self.arm_get("get_extension", &machine.extension_id(name)?, &v)
            .await
    }

    /// Starts creating or updating a machine extension.
    pub async fn begin_put_extension(
        &self,
        machine: &MachineId,
        name: &str,
        spec: &MachineExtensionSpec,
    ) -> Result<Lro<MachineExtension>, Error> {
        let kind = LroKind::PutExtension;
        let id = machine.extension_id(name)?;
        let v = self.core().config.api_versions.hybrid_compute.clone();
        let req = Self::with_json(
            self.arm_request(kind.operation(), Method::PUT, &id, &v)?,
            spec,
        )?;
        let resp = self.arm_send(&req).await?;
        self.start_lro(kind, id, v, &resp)
    }

    /// Starts deleting a machine extension. A missing extension is a finished deletion.
    pub async fn begin_delete_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> Result<Lro<()>, Error> {
        let kind = LroKind::DeleteExtension;
        let id = machine.extension_id(name)?;
        let v = self.core().config.api_versions.hybrid_compute.clone();
        let req = self.arm_request(kind.operation(), Method::DELETE, &id, &v)?;
        match self.arm_send(&req).await {
            Ok(resp) => self.start_lro(kind, id, v, &resp),
            Err(e) if e.is_not_found() => {
                let empty = Response {
                    status: 204,
                    headers: reqwest::header::HeaderMap::new(),
                    body: Vec::new(),
                };
                self.start_lro(kind, id, v, &empty)
            }
            Err(e) => Err(e),
        }
    }

    fn start_lro<T>(
        &self,
        kind: LroKind,
        resource_id: ResourceId,
        api_version: String,
        resp: &Response,
    ) -> Result<Lro<T>, Error> {
        let config = &self.core().config;
        let op = kind.operation();
        let retry_after = parse_retry_after(&resp.headers, SystemTime::now())
            .unwrap_or(config.default_poll_interval);
        let header_url = |name: &str| -> Result<Option<String>, Error> {
            match resp.header(name) {
                Some(u) => Ok(Some(self.check_operation_url(op, u)?.to_string())),
                None => Ok(None),
            }
        };
        let state = if let Some(url) = header_url("azure-asyncoperation")? {
            LroState::AsyncOperation { url }
        } else if let (Some(url), true) = (
            header_url("location")?,
            resp.status == 202 || resp.status == 201,
        ) {
            LroState::Location { url }
        } else if resp.status == 202 {
            LroState::Resource
        } else if kind.is_delete() {
            LroState::Done { body: None }
        } else {
            let body: Value = resp.json(Service::Arm, op)?;
            match provisioning_state(&body) {
                Some(s) if !s.is_terminal() => LroState::Resource,
                _ => LroState::Done { body: Some(body) },
            }
        };
        let now = SystemTime::now();
        Ok(Lro {
            kind,
            resource_id,
            api_version,
            state,
            retry_after_ms: duration_ms(retry_after),
            started_unix_ms: unix_ms(now),
            deadline_unix_ms: unix_ms(now + config.operation_timeout),
            output: PhantomData,
        })
    }

    /// Operation URLs come from response headers: they must be https on the ARM endpoint's host and port.
    fn check_operation_url(&self, operation: &'static str, raw: &str) -> Result<Url, Error> {
        let arm = &self.core().config.cloud.arm_endpoint;
        let url = Url::parse(raw).map_err(|_| Error::InvalidResponse {
            service: Service::Arm,
            operation,
            reason: "the operation URL is not a URL",
        })?;
        let same_origin = url.scheme() == arm.scheme()
            && url.host_str().map(str::to_ascii_lowercase)
                == arm.host_str().map(str::to_ascii_lowercase)
            && url.port_or_known_default() == arm.port_or_known_default();
        if !same_origin {
            return Err(Error::InvalidResponse {
                service: Service::Arm,
                operation,
                reason: "the operation URL is not on the ARM endpoint",
            });
        }
        Ok(url)
    }

    /// Polls a long-running operation once (at most one status request and one final GET). Never waits for
    /// the operation; `Err(OperationTimeout)` once the handle's deadline has passed, `Err(OperationFailed)` when
    /// it ended `Failed`/`Canceled`.
    pub async fn poll_operation<T: LroOutput>(&self, lro: &Lro<T>) -> Result<LroPoll<T>, Error> {
        let op = lro.kind.operation();
        if let LroState::Done { body } = &lro.state {
            return Self::finish_with_body(lro, body.clone());
        }
        if unix_ms(SystemTime::now()) >= lro.deadline_unix_ms {
            return Err(Error::OperationTimeout {
                operation: op,
                timeout: Duration::from_millis(
                    lro.deadline_unix_ms.saturating_sub(lro.started_unix_ms),
                ),
            });
        }
        let default_wait = self.core().config.default_poll_interval;
        match &lro.state {
            LroState::AsyncOperation { url } => {
                let resp = self.poll_get(op, url).await?;
                let status: OperationStatus = resp.json(Service::Arm, op)?;
                let text = status.status.unwrap_or_default();
                match ProvisioningState::from(text.as_str()) {
                    ProvisioningState::Succeeded => self.finish(lro).await,
                    s @ (ProvisioningState::Failed | ProvisioningState::Canceled) => {
                        let (code, message) = status
                            .error
                            .map(|e| (e.code, e.message.map(super::error::bounded)))
                            .unwrap_or_default();
                        Err(Error::OperationFailed {
                            operation: op,
                            status: s.to_string(),
                            code,
                            message,
                        })
                    }
                    _ => Ok(LroPoll::Pending {
                        retry_after: parse_retry_after(&resp.headers, SystemTime::now())
                            .unwrap_or(default_wait),
                        status: (!text.is_empty()).then_some(text),
                    }),
                }
            }
            LroState::Location { url } => {
                let resp = match self.poll_get(op, url).await {
                    // the resource of a finished deletion may answer 404 at its Location
                    Err(e) if e.is_not_found() && lro.kind.is_delete() => {
                        return self.finish(lro).await;
                    }
                    other => other?,
                };
                if resp.status == 202 {
                    Ok(LroPoll::Pending {
                        retry_after: parse_retry_after(&resp.headers, SystemTime::now())
                            .unwrap_or(default_wait),
                        status: None,
                    })
                } else {
                    self.finish(lro).await
                }
            }
            LroState::Resource => self.poll_resource(lro).await,
            LroState::Done { .. } => unreachable_done(op),
        }
    }

    async fn poll_get(&self, operation: &'static str, url: &str) -> Result<Response, Error> {
        let url = self.check_operation_url(operation, url)?;
        let mut req = Request::new(
            Service::Arm,
            operation,
            Method::GET,
            url.clone(),
            self.principal_arc(),
        );
        req.subscription = subscription_of(&url);
        req.prepaid = self.prepaid(&req.method);
        self.arm_send(&req).await
    }

    /// GETs the resource: the final state of a successful operation.
    async fn finish<T: LroOutput>(&self, lro: &Lro<T>) -> Result<LroPoll<T>, Error> {
        if lro.kind.is_delete() {
            return Self::finish_with_body(lro, None);
        }
        let op = lro.kind.operation();
        let body: Option<Value> = self.arm_get(op, &lro.resource_id, &lro.api_version).await?;
        match body {
            Some(b) => Self::finish_with_body(lro, Some(b)),
            None => Err(Error::InvalidResponse {
                service: Service::Arm,
                operation: op,
                reason: "the resource is missing after its operation succeeded",
            }),
        }
    }

    fn finish_with_body<T: LroOutput>(
        lro: &Lro<T>,
        body: Option<Value>,
    ) -> Result<LroPoll<T>, Error> {
        let op = lro.kind.operation();
        if let Some(b) = &body
            && let Some(s @ (ProvisioningState::Failed | ProvisioningState::Canceled)) =
                provisioning_state(b)
        {
            return Err(failed_resource(op, &s, b));
        }
        T::from_final(body)
            .map(LroPoll::Done)
            .map_err(|source| Error::Decode {
                service: Service::Arm,
                operation: op,
                status: 200,
                source,
            })
    }

    /// Follows the resource's own provisioningState (no operation URL was given).
    async fn poll_resource<T: LroOutput>(&self, lro: &Lro<T>) -> Result<LroPoll<T>, Error> {
        let op = lro.kind.operation();
        let body: Option<Value> = self.arm_get(op, &lro.resource_id, &lro.api_version).await?;
        let Some(body) = body else {
            return if lro.kind.is_delete() {
                Self::finish_with_body(lro, None)
            } else {
                Err(Error::InvalidResponse {
                    service: Service::Arm,
                    operation: op,
                    reason: "the resource disappeared while it was being created",
                })
            };
        };
        match provisioning_state(&body) {
            Some(s) if !s.is_terminal() => Ok(LroPoll::Pending {
                retry_after: self.core().config.default_poll_interval,
                status: Some(s.to_string()),
            }),
            // a deletion that ended Succeeded/absent-state but still exists: still going
            _ if lro.kind.is_delete() => Ok(LroPoll::Pending {
                retry_after: self.core().config.default_poll_interval,
                status: provisioning_state(&body).map(|s| s.to_string()),
            }),
            _ => Self::finish_with_body(lro, Some(body)),
        }
    }

    /// Gets an attestation provider; `None` if it does not exist.
    pub async fn get_provider(
        &self,
        id: &ProviderId,
    ) -> Result<Option<AttestationProvider>, Error> {
        let v = self
            .core()
            .config
            .api_versions
            .attestation_providers
            .clone();
        self.arm_get("get_provider", id.as_resource_id(), &v).await
    }

    /// Creates or replaces an attestation provider (synchronous: 200 or 201 with the provider).
    pub async fn put_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderCreate,
    ) -> Result<AttestationProvider, Error> {
        const OP: &str = "put_provider";
        let v = self
            .core()
            .config
            .api_versions
            .attestation_providers
            .clone();
        let req = Self::with_json(
            self.arm_request(OP, Method::PUT, id.as_resource_id(), &v)?,
            body,
        )?;
        self.arm_send(&req).await?.json(Service::Arm, OP)
    }

    /// Updates an attestation provider's tags and properties (synchronous: 200 with the provider).
    pub async fn patch_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderPatch,
    ) -> Result<AttestationProvider, Error> {
        const OP: &str = "patch_provider";
        let v = self
            .core()
            .config
            .api_versions
            .attestation_providers
            .clone();
        let mut req = Self::with_json(
            self.arm_request(OP, Method::PATCH, id.as_resource_id(), &v)?,
            body,
        )?;
        // Setting the same properties twice has the same effect.
        req.idempotent = true;
        self.arm_send(&req).await?.json(Service::Arm, OP)
    }

    /// Deletes an attestation provider (200 deleted, 202 accepted, 204/404 did not exist).
    pub async fn delete_provider(&self, id: &ProviderId) -> Result<DeleteOutcome, Error> {
        const OP: &str = "delete_provider";
        let v = self
            .core()
            .config
            .api_versions
            .attestation_providers
            .clone();
        let req = self.arm_request(OP, Method::DELETE, id.as_resource_id(), &v)?;
        match self.arm_send(&req).await {
            Ok(resp) => Ok(match resp.status {
                202 => DeleteOutcome::Accepted,
                204 => DeleteOutcome::NotFound,
                _ => DeleteOutcome::Deleted,
            }),
            Err(e) if e.is_not_found() => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(e),
        }
    }
}

/// `Done` is handled before the match; kept as a typed error rather than a panic.
fn unreachable_done<T>(operation: &'static str) -> Result<LroPoll<T>, Error> {
    Err(Error::InvalidResponse {
        service: Service::Arm,
        operation,
        reason: "internal: a finished operation was polled",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_serialise() {
        let id = ResourceId::parse(
            "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm/extensions/GuestAttestation",
        )
        .unwrap();
        let lro: Lro<MachineExtension> = Lro {
            kind: LroKind::PutExtension,
            resource_id: id,
            api_version: "2025-01-13".into(),
            state: LroState::AsyncOperation {
                url: "https://management.azure.com/subscriptions/x/providers/Microsoft.HybridCompute/locations/eastus/operationstatus/1?api-version=2025-01-13".into(),
            },
            retry_after_ms: 5000,
            started_unix_ms: 1,
            deadline_unix_ms: 2,
            output: PhantomData,
        };
        let json = serde_json::to_string(&lro).unwrap();
        assert!(json.contains("\"via\":\"asyncOperation\""));
        let back: Lro<MachineExtension> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, lro);
        assert_eq!(back.retry_after(), Duration::from_secs(5));
        assert!(back.status_url().unwrap().contains("operationstatus"));
        assert!(!back.finished_at_start());
    }

    #[test]
    fn subscription_of_operation_urls() {
        let u = Url::parse(
            "https://management.azure.com/subscriptions/SUB/providers/Microsoft.HybridCompute/locations/eastus/operationstatus/1",
        )
        .unwrap();
        assert_eq!(subscription_of(&u).as_deref(), Some("SUB"));
        assert_eq!(
            subscription_of(&Url::parse("https://x/ops/1").unwrap()),
            None
        );
    }

    #[test]
    fn failed_resources_carry_the_instance_view() {
        let body = serde_json::json!({"properties": {"provisioningState": "Failed",
            "instanceView": {"status": {"code": "1", "level": "Error", "message": "install failed"}}}});
        let e = failed_resource("put_extension", &ProvisioningState::Failed, &body);
        assert_eq!(e.code(), Some("1"));
        assert_eq!(e.message(), Some("install failed"));
        assert!(!e.retryable());
    }
}
