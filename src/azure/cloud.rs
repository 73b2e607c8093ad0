//! Endpoints, scopes and api-versions: presets for the public, US Government and China clouds, every value
//! overridable so the Azure emulator can serve them on loopback (no I/O except reading a CA bundle file).

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::error::Error;
use super::http::RetryPolicy;
use super::ratelimit::RateLimits;

/// The endpoints and token scopes of one Azure cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEndpoints {
    /// The Entra ID authority host, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: Url,
    /// The ARM endpoint, e.g. `https://management.azure.com/`.
    pub arm_endpoint: Url,
    /// The token scope for ARM, e.g. `https://management.azure.com/.default`.
    pub arm_scope: String,
    /// The token scope for the MAA data plane, e.g. `https://attest.azure.net/.default`.
    pub maa_scope: String,
}

/// Parses one of this module's URL literals.
#[allow(clippy::expect_used)] // only called with the constant literals below, all covered by the preset tests
fn url_literal(s: &'static str) -> Url {
    Url::parse(s).expect("URL literals of the cloud presets parse")
}

fn preset(authority: &'static str, arm: &'static str, maa_scope: &str) -> CloudEndpoints {
    CloudEndpoints {
        authority_host: url_literal(authority),
        arm_endpoint: url_literal(arm),
        arm_scope: format!("{}/.default", arm.trim_end_matches('/')),
        maa_scope: maa_scope.to_owned(),
    }
}

impl CloudEndpoints {
    /// The public Azure cloud (`AzureCloud`).
    pub fn public() -> Self {
        preset(
            "https://login.microsoftonline.com/",
            "https://management.azure.com/",
            "https://attest.azure.net/.default",
        )
    }

    /// Azure US Government (`AzureUSGovernment`).
    pub fn us_government() -> Self {
        preset(
            "https://login.microsoftonline.us/",
            "https://management.usgovcloudapi.net/",
            "https://attest.azure.us/.default",
        )
    }

    /// Azure operated by 21Vianet (`AzureChinaCloud`).
    pub fn china() -> Self {
        preset(
            "https://login.chinacloudapi.cn/",
            "https://management.chinacloudapi.cn/",
            "https://attest.azure.cn/.default",
        )
    }

    /// A preset by its `az cloud` name (`AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`; case-insensitive;
    /// `public`, `usgov` and `china` also work).
    pub fn by_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "azurecloud" | "public" | "azurepubliccloud" => Some(Self::public()),
            "azureusgovernment" | "usgov" | "usgovernment" => Some(Self::us_government()),
            "azurechinacloud" | "china" => Some(Self::china()),
            _ => None,
        }
    }

    /// The same cloud with every endpoint pointed at one base URL (the Azure emulator serves Entra, ARM and
    /// MAA on one port); scopes are unchanged.
    pub fn on(base: &Url) -> Self {
        let public = Self::public();
        CloudEndpoints {
            authority_host: base.clone(),
            arm_endpoint: base.clone(),
            ..public
        }
    }
}

impl Default for CloudEndpoints {
    fn default() -> Self {
        Self::public()
    }
}

/// The api-version of every surface (defaults from CONTRACTS.md §0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    /// `Microsoft.Attestation/attestationProviders` (default `2021-06-01`).
    pub attestation_providers: String,
    /// The MAA data plane, policy get/set/reset (default `2022-08-01`).
    pub maa: String,
    /// `Microsoft.HybridCompute` machines and extensions (default `2025-01-13`).
    pub hybrid_compute: String,
    /// `Microsoft.AzureStackHCI/clusters` (default `2025-10-01`).
    pub clusters: String,
    /// `Microsoft.AzureStackHCI/virtualMachineInstances` and `attestationStatus` (default
    /// `2025-06-01-preview`).
    pub vm_instances: String,
    /// The IMDS token endpoint (default `2018-02-01`).
    pub imds: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        ApiVersions {
            attestation_providers: "2021-06-01".into(),
            maa: "2022-08-01".into(),
            hybrid_compute: "2025-01-13".into(),
            clusters: "2025-10-01".into(),
            vm_instances: "2025-06-01-preview".into(),
            imds: "2018-02-01".into(),
        }
    }
}

/// The default managed-identity token endpoint.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Everything the Azure client is configured with.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// Endpoints and scopes.
    pub cloud: CloudEndpoints,
    /// The managed-identity token endpoint (full URL; plain HTTP is allowed here only, as IMDS is link-local).
    pub imds_endpoint: Url,
    /// api-versions.
    pub api_versions: ApiVersions,
    /// Extra trusted CA certificates (PEM), added to the platform's roots. TLS is always verified.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// TCP/TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout (default 30 s).
    pub request_timeout: Duration,
    /// Retries of one call.
    pub retry: RetryPolicy,
    /// Client-side ARM token buckets.
    pub rate_limits: RateLimits,
    /// How long a long-running operation may take before `poll_operation` gives up (default 30 min).
    pub operation_timeout: Duration,
    /// How long to wait before polling a long-running operation when Azure sent no `Retry-After` (default 10 s).
    pub default_poll_interval: Duration,
    /// The largest response body accepted (default 4 MiB).
    pub max_body_bytes: usize,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            cloud: CloudEndpoints::public(),
            imds_endpoint: url_literal(DEFAULT_IMDS_ENDPOINT),
            api_versions: ApiVersions::default(),
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            operation_timeout: Duration::from_mins(30),
            default_poll_interval: Duration::from_secs(10),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl AzureConfig {
    /// Trusts the CA certificates of a PEM bundle file in addition to the platform's roots.
    pub fn with_ca_bundle_file(mut self, path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::Config {
            what: "cannot read the CA bundle file",
            source: Some(Box::new(e)),
        })?;
        self.extra_ca_pem = Some(pem);
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM bundle in addition to the platform's roots.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_ca_pem = Some(pem.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        let p = CloudEndpoints::public();
        assert_eq!(p.arm_scope, "https://management.azure.com/.default");
        assert_eq!(p.maa_scope, "https://attest.azure.net/.default");
        assert_eq!(
            p.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        let g = CloudEndpoints::by_name("AzureUSGovernment").unwrap();
        assert_eq!(g.arm_scope, "https://management.usgovcloudapi.net/.default");
        assert_eq!(
            g.authority_host.as_str(),
            "https://login.microsoftonline.us/"
        );
        let c = CloudEndpoints::by_name("azurechinacloud").unwrap();
        assert_eq!(
            c.arm_endpoint.as_str(),
            "https://management.chinacloudapi.cn/"
        );
        assert!(CloudEndpoints::by_name("mars").is_none());
    }

    #[test]
    fn default_api_versions_follow_contracts() {
        let v = ApiVersions::default();
        assert_eq!(v.attestation_providers, "2021-06-01");
        assert_eq!(v.maa, "2022-08-01");
        assert_eq!(v.hybrid_compute, "2025-01-13");
        assert_eq!(v.clusters, "2025-10-01");
        assert_eq!(v.vm_instances, "2025-06-01-preview");
    }

    #[test]
    fn defaults() {
        let c = AzureConfig::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.imds_endpoint.as_str(), DEFAULT_IMDS_ENDPOINT);
    }
}
