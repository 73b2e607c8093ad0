//! Emulator configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the emulator is started and how its simulated Azure behaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmulatorConfig {
    /// Address of the HTTPS listener (Entra, IMDS, ARM, MAA). Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Address of the plain-HTTP control API, or `None` for no control listener (in-process
    /// tests use the Rust API instead). Default `None`.
    pub admin_bind: Option<SocketAddr>,
    /// Seed for every random choice (RSA keys, ids). Same seed, same keys and id sequence.
    pub seed: u64,
    /// RSA modulus size for token-signing keys. Default 2048 (ring's minimum).
    pub rsa_bits: usize,
    /// Lifetime of access tokens issued by Entra and IMDS. Default 3599 s.
    #[serde(with = "secs")]
    pub token_lifetime: Duration,
    /// Clock skew tolerated when checking token `exp`/`nbf`. Default 0 (so short-lived test
    /// tokens expire exactly).
    #[serde(with = "secs")]
    pub token_clock_skew: Duration,
    /// Tenant used for managed-identity (IMDS) tokens. Default
    /// `00000000-0000-0000-0000-000000000001`.
    pub default_tenant: String,
    /// Long-running operation behaviour.
    pub lro: LroConfig,
    /// Optional ARM throttling (token buckets).
    pub throttle: ThrottleConfig,
    /// How often a healthy guest extension reports attestation status (virtual time).
    /// Default 8 h, as the product documentation says.
    #[serde(with = "secs")]
    pub attestation_interval: Duration,
    /// Name rule enforced for attestation providers.
    pub provider_name_rule: ProviderNameRule,
    /// Maximum number of request records kept (oldest dropped first). Default 100 000.
    pub request_log_capacity: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_bind: None,
            seed: 0,
            rsa_bits: 2048,
            token_lifetime: Duration::from_secs(3599),
            token_clock_skew: Duration::ZERO,
            default_tenant: "00000000-0000-0000-0000-000000000001".into(),
            lro: LroConfig::default(),
            throttle: ThrottleConfig::default(),
            attestation_interval: Duration::from_hours(8),
            provider_name_rule: ProviderNameRule::Spec,
            request_log_capacity: 100_000,
        }
    }
}

/// How ARM long-running operations (extension PUT/DELETE) progress.
///
/// An operation completes (unless the machine's extension behaviour is `Stuck`) as soon as it has
/// been observed `polls` times (a GET of its `Azure-AsyncOperation` URL, its `Location` URL, or the
/// extension resource itself) **or** `duration` of virtual time has passed since it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LroConfig {
    /// Observations before completion. Default 2.
    pub polls: u32,
    /// Virtual time before completion regardless of polling. Default none.
    #[serde(with = "opt_secs")]
    pub duration: Option<Duration>,
    /// `Retry-After` seconds sent with 201/202 and while in progress. Default 1.
    pub retry_after_secs: u64,
    /// Status code style of the extension PUT.
    pub put_style: PutStyle,
}

impl Default for LroConfig {
    fn default() -> Self {
        Self {
            polls: 2,
            duration: None,
            retry_after_secs: 1,
            put_style: PutStyle::CreatedOrOk,
        }
    }
}

/// Response style of an asynchronous extension PUT (CONTRACTS.md §3 marks the live behaviour as
/// UNCONFIRMED, so both are offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutStyle {
    /// 201 (create) / 200 (update) with the resource body in `Creating`/`Updating` plus
    /// `Azure-AsyncOperation`, `Location` and `Retry-After` (ARM RPC default). The default.
    CreatedOrOk,
    /// 202 with an empty body and the same headers (the 2025-01-13 swagger's 202).
    Accepted,
}

/// Server-side ARM throttling: one token bucket per (principal, subscription, operation kind).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ThrottleConfig {
    /// Answer 429 when a bucket is empty. Default false (headers are still sent).
    pub enabled: bool,
    /// Read refill per second (default 25) and bucket size (default 250).
    pub reads_per_sec: f64,
    /// Read bucket size.
    pub read_burst: f64,
    /// Write refill per second (default 10) and bucket size (default 200).
    pub writes_per_sec: f64,
    /// Write bucket size.
    pub write_burst: f64,
    /// Delete refill per second (default 10) and bucket size (default 200).
    pub deletes_per_sec: f64,
    /// Delete bucket size.
    pub delete_burst: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            reads_per_sec: 25.0,
            read_burst: 250.0,
            writes_per_sec: 10.0,
            write_burst: 200.0,
            deletes_per_sec: 10.0,
            delete_burst: 200.0,
        }
    }
}

/// Which attestation provider names PUT accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderNameRule {
    /// The swagger/TypeSpec pattern `^[a-zA-Z0-9-]{3,24}$`. The default.
    Spec,
    /// The quickstart rule: 3-24 lower-case letters and digits.
    LowercaseAlphanumeric,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` signature
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}
