//! Integration tests against the real kube-apiserver and etcd (tests/control-plane), one control
//! plane per run. Never skipped: without a control plane they fail and name `make control-plane`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod attestation_status;
#[allow(dead_code)] // each test target uses part of the table
#[path = "../support/cases.rs"]
mod cases;
mod chaos;
mod chart;
mod crds;
mod events;
mod extension;
mod provider;
mod security;
mod support;
