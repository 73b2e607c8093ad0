//! The AttestationStatus controller: mirrors each VM's attestation health from Azure and applies
//! the 8-hour rule on time. It reads Azure (VM instance + attestationStatus) and writes only the
//! status of its own objects; it never writes to Azure.
//!
//! Modules: `timestamp`, `assess`, `schedule` and `render` are pure; `reconcile` does the I/O.

pub mod assess;
pub mod reconcile;
pub mod render;
pub mod schedule;
pub mod timestamp;

pub use reconcile::{Memory, StatusContext, error_policy, reconcile, run};
