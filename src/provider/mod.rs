//! The AttestationProvider controller: adopts, creates or repairs a Microsoft Azure Attestation
//! provider (the MAA endpoint of an Azure Local instance) and keeps its attestation policy as
//! declared, reporting drift. It automates the product documentation's repair path (an endpoint
//! deleted by accident, a policy to move to another root certificate).
//!
//! Modules: `desired`, `policy`, `policy_check`, `status`, `deletion`, `triggers` and `error` are
//! pure; `reconcile` does the I/O (Kubernetes and Azure). See docs/provider.md.

pub mod deletion;
pub mod desired;
pub mod error;
pub mod policy;
pub mod policy_check;
pub mod reconcile;
pub mod status;
pub mod triggers;

pub use error::Error;
pub use reconcile::{
    BLOCKED_RECHECK_INTERVAL, CONTROLLER, DRIFT_CHECK_INTERVAL, FINALIZER, Memory, ProviderContext,
    error_policy, reconcile, run,
};
