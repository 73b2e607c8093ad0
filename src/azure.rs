//! The operator's only door to Azure: the port ([`AzureApi`]) the controllers are generic over, its domain types,
//! [`Error`], and the reqwest adapter behind it. Independent of Kubernetes.
//!
//! ```text
//!   Azure (one per process: config, HTTP pool, Retry-After registry, token buckets, metrics)
//!     └── client_for(Credentials) -> AzureClient (cached per credentials; own token cache)
//!            ├── arm.rs   clusters, machines, VM instances, attestation status, extensions (LRO), providers
//!            └── maa.rs   policy get / set / reset on a provider's attestUri (JWS, verified response tokens)
//!   http.rs   retries, Retry-After per scope, token buckets (ratelimit.rs), request ids, metrics hooks
//!   auth.rs   client secret, workload identity, managed identity; tokens cached per (identity, scope)
//! ```
//!
//! Modules that do I/O: `auth`, `http`, `arm`, `maa`, `client`. Pure: `cloud`, `ids`, `models`, `ratelimit`,
//! `error`, `metrics`.

use std::future::Future;

mod arm;
mod auth;
mod client;
mod cloud;
mod error;
mod http;
mod ids;
mod maa;
mod metrics;
mod models;
mod ratelimit;

pub use arm::{GET_VM_INSTANCE, Lro, LroKind, LroOutput, LroPoll};
pub use auth::{Credentials, Secret};
pub use client::{Azure, AzureClient};
pub use cloud::{ApiVersions, AzureConfig, CloudEndpoints, DEFAULT_IMDS_ENDPOINT};
pub use error::{Error, HoldReason, Service, TransportKind};
pub use http::{RetryPolicy, USER_AGENT, parse_retry_after, parse_retry_after_value};
pub use ids::{ClusterId, IdError, MachineId, ProviderId, ResourceId};
pub use maa::{
    MaaPolicy, PolicyDecodeError, PolicyOutcome, PolicyResult, PolicySigner, UNSIGNED_HEADER,
    UNSIGNED_RESET_JWS, decode_policy_jws, normalize_policy, policy_jws, policy_payload,
    policy_token_hash, reset_jws, unsigned_policy_jws,
};
// The response-token decoding, for tests/properties.rs and the fuzz targets only.
#[doc(hidden)]
pub use maa::{Jwt, check_claims, parse_jwt, verify_jwt};
pub use metrics::{AzureMetrics, NoMetrics, RequestRecord};
pub use models::*;
pub use ratelimit::{BucketSpec, OpKind, RateKey, RateLimiter, RateLimits};

/// The Azure operations the controllers need. [`AzureClient`] implements it against Azure; narrow unit tests
/// can implement it in memory. Every future is `Send`, as `Controller::run` requires.
///
/// GETs return `Ok(None)` when the resource does not exist: absence is an observation, not an error.
pub trait AzureApi: Clone + Send + Sync + 'static {
    /// This client with `reads` ARM reads of `subscription` booked for `holder` (one object), so a reconcile
    /// waits for its turn in the requeue queue rather than in its slot: [`Error::Held`] when the booking is
    /// for later (requeue after its `retry_after`). In-memory fakes have no rate limit.
    fn admit(
        &self,
        subscription: &str,
        holder: &str,
        reads: u32,
    ) -> impl Future<Output = Result<Self, Error>> + Send {
        let _ = (subscription, holder, reads);
        std::future::ready(Ok(self.clone()))
    }

    /// This client with one ARM write of `subscription` booked for `holder`, as [`AzureApi::admit`] books reads:
    /// [`Error::Held`] when the write budget is spent for longer than a reconcile should wait in its slot.
    fn admit_write(
        &self,
        subscription: &str,
        holder: &str,
    ) -> impl Future<Output = Result<Self, Error>> + Send {
        let _ = (subscription, holder);
        std::future::ready(Ok(self.clone()))
    }

    /// Gets an Azure Local cluster.
    fn get_cluster(
        &self,
        id: &ClusterId,
    ) -> impl Future<Output = Result<Option<Cluster>, Error>> + Send;

    /// Gets an Arc machine.
    fn get_machine(
        &self,
        id: &MachineId,
    ) -> impl Future<Output = Result<Option<Machine>, Error>> + Send;

    /// Gets a machine's Azure Local VM instance.
    fn get_vm_instance(
        &self,
        machine: &MachineId,
    ) -> impl Future<Output = Result<Option<VmInstance>, Error>> + Send;

    /// Gets a VM instance's attestation status.
    fn get_attestation_status(
        &self,
        machine: &MachineId,
    ) -> impl Future<Output = Result<Option<VmAttestationStatus>, Error>> + Send;

    /// Gets a machine extension.
    fn get_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> impl Future<Output = Result<Option<MachineExtension>, Error>> + Send;

    /// Starts creating or updating a machine extension.
    fn begin_put_extension(
        &self,
        machine: &MachineId,
        name: &str,
        spec: &MachineExtensionSpec,
    ) -> impl Future<Output = Result<Lro<MachineExtension>, Error>> + Send;

    /// Starts deleting a machine extension.
    fn begin_delete_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> impl Future<Output = Result<Lro<()>, Error>> + Send;

    /// Polls a long-running operation once.
    fn poll_operation<T: LroOutput + 'static>(
        &self,
        lro: &Lro<T>,
    ) -> impl Future<Output = Result<LroPoll<T>, Error>> + Send;

    /// Gets an attestation provider.
    fn get_provider(
        &self,
        id: &ProviderId,
    ) -> impl Future<Output = Result<Option<AttestationProvider>, Error>> + Send;

    /// Creates or replaces an attestation provider.
    fn put_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderCreate,
    ) -> impl Future<Output = Result<AttestationProvider, Error>> + Send;

    /// Updates an attestation provider.
    fn patch_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderPatch,
    ) -> impl Future<Output = Result<AttestationProvider, Error>> + Send;

    /// Deletes an attestation provider.
    fn delete_provider(
        &self,
        id: &ProviderId,
    ) -> impl Future<Output = Result<DeleteOutcome, Error>> + Send;

    /// This client, using `version` for MAA data-plane calls (a resource's own choice). The
    /// default keeps the configured one (in-memory fakes have no api-version).
    #[must_use]
    fn with_maa_api_version(&self, version: &str) -> Self {
        let _ = version;
        self.clone()
    }

    /// Gets the MAA policy of an attestation type.
    fn maa_get_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
    ) -> impl Future<Output = Result<MaaPolicy, Error>> + Send;

    /// Sets the MAA policy of an attestation type, unsigned or signed.
    fn maa_set_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        policy: &str,
        signer: Option<&PolicySigner>,
    ) -> impl Future<Output = Result<PolicyOutcome, Error>> + Send;

    /// Resets the MAA policy of an attestation type.
    fn maa_reset_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        signer: Option<&PolicySigner>,
    ) -> impl Future<Output = Result<PolicyOutcome, Error>> + Send;
}

/// Hands out [`AzureApi`] clients per credentials (implemented by [`Azure`]), so controllers can be generic
/// over the whole Azure side.
pub trait AzureClients: Send + Sync + 'static {
    /// The client type.
    type Client: AzureApi;

    /// The client for a CR's `credentialsRef` credentials.
    fn client_for(&self, credentials: Credentials) -> Self::Client;

    /// The client of the operator's own identity (workload identity, client secret or managed identity).
    fn operator_client(&self) -> Result<Self::Client, Error>;
}

impl AzureClients for Azure {
    type Client = AzureClient;

    fn client_for(&self, credentials: Credentials) -> AzureClient {
        Azure::client_for(self, credentials)
    }

    fn operator_client(&self) -> Result<AzureClient, Error> {
        self.from_env()
    }
}

impl AzureApi for AzureClient {
    fn admit(
        &self,
        subscription: &str,
        holder: &str,
        reads: u32,
    ) -> impl Future<Output = Result<Self, Error>> + Send {
        AzureClient::admit(self, subscription, holder, reads)
    }

    fn admit_write(
        &self,
        subscription: &str,
        holder: &str,
    ) -> impl Future<Output = Result<Self, Error>> + Send {
        AzureClient::admit_write(self, subscription, holder)
    }

    fn get_cluster(
        &self,
        id: &ClusterId,
    ) -> impl Future<Output = Result<Option<Cluster>, Error>> + Send {
        AzureClient::get_cluster(self, id)
    }

    fn get_machine(
        &self,
        id: &MachineId,
    ) -> impl Future<Output = Result<Option<Machine>, Error>> + Send {
        AzureClient::get_machine(self, id)
    }

    fn get_vm_instance(
        &self,
        machine: &MachineId,
    ) -> impl Future<Output = Result<Option<VmInstance>, Error>> + Send {
        AzureClient::get_vm_instance(self, machine)
    }

    fn get_attestation_status(
        &self,
        machine: &MachineId,
    ) -> impl Future<Output = Result<Option<VmAttestationStatus>, Error>> + Send {
        AzureClient::get_attestation_status(self, machine)
    }

    fn get_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> impl Future<Output = Result<Option<MachineExtension>, Error>> + Send {
        AzureClient::get_extension(self, machine, name)
    }

    fn begin_put_extension(
        &self,
        machine: &MachineId,
        name: &str,
        spec: &MachineExtensionSpec,
    ) -> impl Future<Output = Result<Lro<MachineExtension>, Error>> + Send {
        AzureClient::begin_put_extension(self, machine, name, spec)
    }

    fn begin_delete_extension(
        &self,
        machine: &MachineId,
        name: &str,
    ) -> impl Future<Output = Result<Lro<()>, Error>> + Send {
        AzureClient::begin_delete_extension(self, machine, name)
    }

    fn poll_operation<T: LroOutput + 'static>(
        &self,
        lro: &Lro<T>,
    ) -> impl Future<Output = Result<LroPoll<T>, Error>> + Send {
        AzureClient::poll_operation(self, lro)
    }

    fn get_provider(
        &self,
        id: &ProviderId,
    ) -> impl Future<Output = Result<Option<AttestationProvider>, Error>> + Send {
        AzureClient::get_provider(self, id)
    }

    fn put_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderCreate,
    ) -> impl Future<Output = Result<AttestationProvider, Error>> + Send {
        AzureClient::put_provider(self, id, body)
    }

    fn patch_provider(
        &self,
        id: &ProviderId,
        body: &AttestationProviderPatch,
    ) -> impl Future<Output = Result<AttestationProvider, Error>> + Send {
        AzureClient::patch_provider(self, id, body)
    }

    fn delete_provider(
        &self,
        id: &ProviderId,
    ) -> impl Future<Output = Result<DeleteOutcome, Error>> + Send {
        AzureClient::delete_provider(self, id)
    }

    fn with_maa_api_version(&self, version: &str) -> Self {
        AzureClient::with_maa_api_version(self, version)
    }

    fn maa_get_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
    ) -> impl Future<Output = Result<MaaPolicy, Error>> + Send {
        AzureClient::maa_get_policy(self, attest_uri, attestation_type)
    }

    fn maa_set_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        policy: &str,
        signer: Option<&PolicySigner>,
    ) -> impl Future<Output = Result<PolicyOutcome, Error>> + Send {
        AzureClient::maa_set_policy(self, attest_uri, attestation_type, policy, signer)
    }

    fn maa_reset_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        signer: Option<&PolicySigner>,
    ) -> impl Future<Output = Result<PolicyOutcome, Error>> + Send {
        AzureClient::maa_reset_policy(self, attest_uri, attestation_type, signer)
    }
}
