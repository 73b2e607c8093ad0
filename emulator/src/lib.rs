//! A local stand-in for the Azure surfaces the guest-attestation operator uses: Entra ID (client
//! credentials with a secret or a federated assertion), IMDS managed identity, Azure Resource
//! Manager (Microsoft.Attestation providers, Azure Local clusters, Arc machines, VM instances,
//! attestation status, machine extensions as long-running operations) and the Microsoft Azure
//! Attestation data plane (policy GET/PUT/reset, `/certs`, OpenID metadata).
//!
//! It follows `shared/azure-specs/CONTRACTS.md`. It serves HTTPS on loopback with a CA it
//! generates, can script faults, keeps a request log, and has a virtual clock. Test
//! infrastructure only: never link it into the operator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), azure_emulator::Error> {
//! use azure_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! emu.add_service_principal("tenant-1", "client-1", "secret-1");
//! println!("{} trusts {}", emu.endpoint(), emu.ca_pem());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod arm;
mod clock;
mod config;
mod emulator;
mod error;
mod faults;
mod http;
mod jwt;
mod keys;
mod log;
mod maa;
mod router;
mod seed;
mod server;
pub mod signing;
mod sim;
mod state;
mod throttle;
mod timefmt;
mod tls;
mod tokens;

pub use config::{EmulatorConfig, LroConfig, ProviderNameRule, PutStyle, ThrottleConfig};
pub use emulator::{Control, Emulator};
pub use error::Error;
pub use faults::{Fault, FaultAction, FaultId, PathMatch, RetryAfter};
pub use log::RequestRecord;
pub use seed::{
    FederatedClientSeed, MachineSeed, ManagedIdentitySeed, Seed, ServicePrincipalSeed, TenantSeed,
};
pub use state::{
    AttestationStatusProps, ClusterSpec, ExtensionBehavior, ExtensionPatch, ExtensionSpec,
    FederatedCredential, IsolatedVmAttestationConfiguration, ProviderSpec, StoredPolicy, VmSpec,
};
pub use timefmt::format_status_timestamp;

/// Data-plane and ARM api-versions the emulator accepts, by surface.
pub mod api_versions {
    pub use crate::arm::{
        ATTESTATION_STATUS_VERSIONS, ATTESTATION_VERSIONS, CLUSTER_VERSIONS,
        HYBRID_COMPUTE_VERSIONS, VM_VERSIONS,
    };
    pub use crate::maa::{ATTESTATION_TYPES, DATAPLANE_VERSIONS, DEFAULT_POLICY};
}
