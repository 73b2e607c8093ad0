//! The GuestAttestationExtension controller: automates the product documentation's manual
//! procedure for one VM. It checks the VM's prerequisites, renders the extension settings exactly
//! as documented, deploys the `GuestAttestation` extension on the VM's Arc machine as a
//! long-running operation (never waiting on it inside a reconcile), keeps it as specified (drift
//! is put back, or only reported in Observe mode), removes it on delete (finalizer), and creates
//! the machine's AttestationStatus.
//!
//! ```text
//!   GuestAttestationExtension ──reads──> machine, VM instance, cluster (or AttestationProvider + its cluster)
//!            │                                     │
//!            │ PUT / DELETE (LRO, polled across reconciles)
//!            ▼                                     ▼
//!   .../machines/{vm}/extensions/GuestAttestation     AttestationStatus {name} (owned)
//! ```
//!
//! Pure modules (no I/O, unit-tested): `preflight` (the VM's prerequisites), `settings` (the
//! settings document and where its endpoints come from), `desired` (the extension to PUT),
//! `compare` (desired vs actual), `plan` (what to do next, when to retry, when to give up) and
//! `render` (conditions). I/O: `reconcile` (the driver, the PUT, the controller), `observe`
//! (Azure reads), `cleanup` (deletion), `report` (status writes, Events), `children` (the
//! owned AttestationStatus) and `owned` (what the watch has seen of the AttestationStatuses).

pub mod children;
mod cleanup;
pub mod compare;
pub mod desired;
pub mod observe;
pub mod owned;
pub mod plan;
pub mod preflight;
pub mod reconcile;
pub mod render;
mod report;
pub mod settings;

pub use reconcile::{
    CONTROLLER, Error, ExtensionContext, FINALIZER, Memory, error_policy, reconcile, run,
};
