//! guest-attestation-operator: guest attestation of Trusted Launch VMs on Azure Local, as
//! Kubernetes resources.
//!
//! ```text
//!   AttestationProvider  <-- providerRef --  GuestAttestationExtension  -- owns -->  AttestationStatus
//!         |                                          |                                    |
//!   Microsoft.Attestation/attestationProviders   Microsoft.HybridCompute/machines/      .../virtualMachineInstances/default
//!   + MAA policy (data plane)                    {vm}/extensions/GuestAttestation       /attestationStatus/default
//! ```

pub mod attestation_status;
pub mod azure;
pub mod controller;
pub mod crd;
pub mod extension;
pub mod metrics;
pub mod provider;
pub mod runtime;
