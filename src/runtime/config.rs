//! The operator's configuration: command-line flags, each with an environment fallback, parsed
//! and validated once at start-up (no I/O here except reading nothing; the CA file is read by
//! the Azure client builder).
//!
//! `--help` is the reference; docs/configuration.md repeats it with the chart's values.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use url::Url;

use crate::azure::{AzureConfig, BucketSpec, CloudEndpoints, RateLimits};
use crate::controller::Settings;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Kubernetes operator for guest attestation of Trusted Launch VMs on Azure Local.
///
/// Runs the AttestationStatus, GuestAttestationExtension and AttestationProvider controllers.
/// With leader election on (the default), only the replica holding the Lease runs them; the
/// others stand by. Every flag can also be set through the environment variable named in
/// brackets. Durations are written like 30s, 15m, 1h30m or 500ms.
#[derive(Clone, Debug, Parser)]
#[command(name = "guest-attestation-operator", version, about, long_about)]
#[allow(clippy::struct_excessive_bools)] // flags are flags
pub struct Config {
    // ----- Kubernetes -----
    /// Kubeconfig file to use. Without it: $KUBECONFIG or ~/.kube/config when present, else the
    /// in-cluster service account.
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespaces to watch, comma-separated or repeated. Empty: all namespaces (needs the
    /// chart's cluster-wide role). One controller per kind runs in each listed namespace.
    #[arg(
        long = "namespace",
        env = "GAO_WATCH_NAMESPACES",
        value_name = "NS",
        value_delimiter = ',',
        help_heading = "Kubernetes"
    )]
    pub namespaces: Vec<String>,

    /// How long to wait at start-up for the CRDs to be installed and readable, before exiting
    /// with an installation hint.
    #[arg(long, env = "GAO_CRD_TIMEOUT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Kubernetes")]
    pub crd_timeout: Duration,

    // ----- Controllers -----
    /// Reconciles running at once per controller (all its namespaces together); the others wait their
    /// turn, first come, first served.
    #[arg(long, env = "GAO_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256), help_heading = "Controllers")]
    pub concurrency: u16,

    /// Page size of the watchers' initial lists.
    #[arg(long, env = "GAO_PAGE_SIZE", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000), help_heading = "Controllers")]
    pub page_size: u32,

    /// Multiplies every refresh interval of the custom resources (spec.refreshInterval);
    /// 1.0 in production, smaller to speed up demos and tests.
    #[arg(long, env = "GAO_INTERVAL_SCALE", default_value_t = 1.0, value_parser = parse_scale, help_heading = "Controllers")]
    pub interval_scale: f64,

    /// How long Azure reads may fail before a VM's health turns Unknown (StatusUnavailable).
    #[arg(long, env = "GAO_FAILURE_GRACE", default_value = "15m", value_parser = parse_duration, value_name = "DURATION", help_heading = "Controllers")]
    pub failure_grace: Duration,

    /// A reconcile that takes longer is abandoned and retried with backoff.
    #[arg(long, env = "GAO_RECONCILE_TIMEOUT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Controllers")]
    pub reconcile_timeout: Duration,

    /// A long-running Azure operation (extension deployment) in flight longer than this is
    /// reported as stuck.
    #[arg(long, env = "GAO_OPERATION_TIMEOUT", default_value = "30m", value_parser = parse_duration, value_name = "DURATION", help_heading = "Controllers")]
    pub operation_timeout: Duration,

    /// Field manager name of the operator's server-side applies.
    #[arg(
        long,
        env = "GAO_FIELD_MANAGER",
        default_value = "guest-attestation-operator",
        help_heading = "Controllers"
    )]
    pub field_manager: String,

    /// On SIGTERM, how long in-flight reconciles may take to finish before they are cancelled
    /// (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "GAO_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Controllers")]
    pub shutdown_timeout: Duration,

    // ----- Azure -----
    /// Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud. Sets the authority host,
    /// the ARM endpoint and the token scopes; the flags below override single values.
    #[arg(
        long,
        env = "GAO_AZURE_CLOUD",
        default_value = "AzureCloud",
        help_heading = "Azure"
    )]
    pub azure_cloud: String,

    /// One base URL serving Entra ID, ARM and the IMDS token endpoint (an Azure emulator or a
    /// test double). Scopes stay those of --azure-cloud.
    #[arg(
        long,
        env = "GAO_AZURE_ENDPOINT",
        value_name = "URL",
        help_heading = "Azure"
    )]
    pub azure_endpoint: Option<Url>,

    /// Entra ID authority host (also read by the operator's own workload identity and client
    /// secret credentials).
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        value_name = "URL",
        help_heading = "Azure"
    )]
    pub authority_host: Option<Url>,

    /// Azure Resource Manager endpoint.
    #[arg(
        long,
        env = "GAO_ARM_ENDPOINT",
        value_name = "URL",
        help_heading = "Azure"
    )]
    pub arm_endpoint: Option<Url>,

    /// Token scope for ARM (default: the cloud's, e.g. https://management.azure.com/.default).
    #[arg(
        long,
        env = "GAO_ARM_SCOPE",
        value_name = "SCOPE",
        help_heading = "Azure"
    )]
    pub arm_scope: Option<String>,

    /// Token scope for the Microsoft Azure Attestation data plane (default: the cloud's, e.g.
    /// https://attest.azure.net/.default).
    #[arg(
        long,
        env = "GAO_MAA_SCOPE",
        value_name = "SCOPE",
        help_heading = "Azure"
    )]
    pub maa_scope: Option<String>,

    /// Managed-identity (IMDS) token endpoint, full URL.
    #[arg(
        long,
        env = "GAO_IMDS_ENDPOINT",
        value_name = "URL",
        help_heading = "Azure"
    )]
    pub imds_endpoint: Option<Url>,

    /// PEM file of extra CA certificates trusted for Azure, in addition to the system's roots
    /// (TLS is always verified).
    #[arg(
        long,
        env = "GAO_EXTRA_CA_FILE",
        value_name = "FILE",
        help_heading = "Azure"
    )]
    pub extra_ca_file: Option<PathBuf>,

    /// TCP and TLS connect timeout of Azure requests.
    #[arg(long, env = "GAO_AZURE_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Azure")]
    pub azure_connect_timeout: Duration,

    /// Whole-request timeout of Azure requests.
    #[arg(long, env = "GAO_AZURE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Azure")]
    pub azure_request_timeout: Duration,

    /// Client-side limit of ARM reads (GET) per second, per principal and subscription. The
    /// default is half of ARM's documented refill (25/s), so the operator leaves room for other
    /// callers; above the refill Azure answers 429, which the client honours. Refresh intervals
    /// are raised so a fleet's steady reads use at most half of this (docs/performance.md).
    #[arg(long, env = "GAO_ARM_READ_QPS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Azure")]
    pub arm_read_qps: u32,

    /// ARM reads that may go at once after a quiet period (the read bucket's size).
    #[arg(long, env = "GAO_ARM_READ_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000), help_heading = "Azure")]
    pub arm_read_burst: u32,

    /// Client-side limit of ARM writes (PUT, PATCH, POST) and, separately, deletes per second,
    /// per principal and subscription (default: half of ARM's documented 10/s).
    #[arg(long, env = "GAO_ARM_WRITE_QPS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Azure")]
    pub arm_write_qps: u32,

    /// ARM writes (and deletes) that may go at once after a quiet period.
    #[arg(long, env = "GAO_ARM_WRITE_BURST", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000), help_heading = "Azure")]
    pub arm_write_burst: u32,

    /// api-version of Microsoft.Attestation/attestationProviders (default 2021-06-01).
    #[arg(
        long,
        env = "GAO_API_VERSION_ATTESTATION_PROVIDERS",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_attestation_providers: Option<String>,

    /// api-version of the MAA data plane, policy get/set/reset (default 2022-08-01).
    #[arg(
        long,
        env = "GAO_API_VERSION_MAA",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_maa: Option<String>,

    /// api-version of Microsoft.HybridCompute machines and extensions (default 2025-01-13).
    #[arg(
        long,
        env = "GAO_API_VERSION_HYBRID_COMPUTE",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_hybrid_compute: Option<String>,

    /// api-version of Microsoft.AzureStackHCI/clusters (default 2025-10-01).
    #[arg(
        long,
        env = "GAO_API_VERSION_CLUSTERS",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_clusters: Option<String>,

    /// api-version of Microsoft.AzureStackHCI/virtualMachineInstances and their
    /// attestationStatus (default 2025-06-01-preview).
    #[arg(
        long,
        env = "GAO_API_VERSION_VM_INSTANCES",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_vm_instances: Option<String>,

    /// api-version of the IMDS token endpoint (default 2018-02-01).
    #[arg(
        long,
        env = "GAO_API_VERSION_IMDS",
        value_name = "VERSION",
        help_heading = "Azure api-versions"
    )]
    pub api_version_imds: Option<String>,

    // ----- Leader election -----
    /// Elect a leader on a coordination.k8s.io Lease; only the leader runs the controllers.
    /// Turn off only for a single replica that can never overlap with another.
    #[arg(long, env = "GAO_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", help_heading = "Leader election")]
    pub leader_elect: bool,

    /// Name of the Lease.
    #[arg(
        long,
        env = "GAO_LEASE_NAME",
        default_value = "guest-attestation-operator",
        help_heading = "Leader election"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace, from the kubeconfig context or
    /// the in-cluster service account).
    #[arg(
        long,
        env = "GAO_LEASE_NAMESPACE",
        value_name = "NS",
        help_heading = "Leader election"
    )]
    pub lease_namespace: Option<String>,

    /// How long a Lease holds without renewal; a crashed leader is replaced after about this
    /// long plus one retry period.
    #[arg(long, env = "GAO_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Leader election")]
    pub lease_duration: Duration,

    /// A leader that could not renew for this long stops its controllers and exits (must be
    /// below --lease-duration).
    #[arg(long, env = "GAO_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Leader election")]
    pub renew_deadline: Duration,

    /// How often the leader renews and a standby checks the Lease (must be below
    /// --renew-deadline).
    #[arg(long, env = "GAO_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration, value_name = "DURATION", help_heading = "Leader election")]
    pub retry_period: Duration,

    /// This replica's identity in the Lease, in Events and in the User-Agent (default: the
    /// pod name from $HOSTNAME, else a random one).
    #[arg(long, env = "GAO_IDENTITY", help_heading = "Leader election")]
    pub identity: Option<String>,

    // ----- HTTP and logs -----
    /// Address of the HTTP server: /metrics (Prometheus), /healthz and /readyz.
    #[arg(
        long,
        alias = "metrics-bind-address",
        env = "GAO_HTTP_BIND_ADDRESS",
        default_value = "0.0.0.0:8080",
        help_heading = "Observability"
    )]
    pub http_bind_address: SocketAddr,

    /// Export guest_attestation_vm_attested_timestamp_seconds with one series per
    /// AttestationStatus (namespace, name). Off by default: label cardinality grows with the fleet.
    #[arg(long, env = "GAO_PER_VM_METRICS", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", help_heading = "Observability")]
    pub per_vm_metrics: bool,

    /// Log format.
    #[arg(long, env = "GAO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, help_heading = "Observability")]
    pub log_format: LogFormat,

    /// Log level or filter directives (tracing EnvFilter syntax), e.g. info or
    /// info,guest_attestation_operator=debug,kube=warn.
    #[arg(
        long,
        env = "GAO_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER",
        help_heading = "Observability"
    )]
    pub log_level: String,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// --azure-cloud names no known cloud.
    #[error(
        "unknown Azure cloud {0:?}: use AzureCloud, AzureUSGovernment or AzureChinaCloud, or set the endpoints"
    )]
    UnknownCloud(String),
    /// The leader-election timings contradict each other.
    #[error(
        "leader election needs --retry-period < --renew-deadline < --lease-duration (got {retry:?}, {renew:?}, {lease:?})"
    )]
    LeaseTimings {
        /// --retry-period.
        retry: Duration,
        /// --renew-deadline.
        renew: Duration,
        /// --lease-duration.
        lease: Duration,
    },
    /// A URL flag cannot serve as a base URL.
    #[error("--azure-endpoint {0} cannot be a base URL")]
    BadEndpoint(String),
    /// The extra CA file cannot be read.
    #[error("cannot read --extra-ca-file")]
    CaFile(#[source] crate::azure::Error),
    /// A namespace name is empty.
    #[error("--namespace contains an empty name")]
    EmptyNamespace,
}

impl Config {
    /// Checks what clap cannot: leader-election timings, namespaces, the cloud name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.leader_elect
            && !(self.retry_period < self.renew_deadline
                && self.renew_deadline < self.lease_duration)
        {
            return Err(ConfigError::LeaseTimings {
                retry: self.retry_period,
                renew: self.renew_deadline,
                lease: self.lease_duration,
            });
        }
        if self.namespaces.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::EmptyNamespace);
        }
        self.cloud().map(|_| ())
    }

    /// The namespaces to watch: `[None]` for all, else each listed one (deduplicated, sorted).
    pub fn watch_namespaces(&self) -> Vec<Option<String>> {
        let mut ns: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .collect();
        ns.sort();
        ns.dedup();
        if ns.is_empty() {
            vec![None]
        } else {
            ns.into_iter().map(Some).collect()
        }
    }

    fn cloud(&self) -> Result<CloudEndpoints, ConfigError> {
        let mut cloud = CloudEndpoints::by_name(&self.azure_cloud)
            .ok_or_else(|| ConfigError::UnknownCloud(self.azure_cloud.clone()))?;
        if let Some(base) = &self.azure_endpoint {
            if base.cannot_be_a_base() {
                return Err(ConfigError::BadEndpoint(base.to_string()));
            }
            cloud.authority_host = base.clone();
            cloud.arm_endpoint = base.clone();
        }
        if let Some(u) = &self.authority_host {
            cloud.authority_host = u.clone();
        }
        if let Some(u) = &self.arm_endpoint {
            cloud.arm_endpoint = u.clone();
        }
        if let Some(s) = &self.arm_scope {
            cloud.arm_scope.clone_from(s);
        }
        if let Some(s) = &self.maa_scope {
            cloud.maa_scope.clone_from(s);
        }
        Ok(cloud)
    }

    /// The Azure client configuration (reads --extra-ca-file).
    pub fn azure_config(&self) -> Result<AzureConfig, ConfigError> {
        let mut config = AzureConfig {
            cloud: self.cloud()?,
            connect_timeout: self.azure_connect_timeout,
            request_timeout: self.azure_request_timeout,
            operation_timeout: self.operation_timeout,
            rate_limits: self.rate_limits(),
            ..AzureConfig::default()
        };
        if let Some(base) = &self.azure_endpoint {
            config.imds_endpoint = base
                .join("/metadata/identity/oauth2/token")
                .map_err(|_| ConfigError::BadEndpoint(base.to_string()))?;
        }
        if let Some(u) = &self.imds_endpoint {
            config.imds_endpoint = u.clone();
        }
        let v = &mut config.api_versions;
        let overrides = [
            (
                &self.api_version_attestation_providers,
                &mut v.attestation_providers,
            ),
            (&self.api_version_maa, &mut v.maa),
            (&self.api_version_hybrid_compute, &mut v.hybrid_compute),
            (&self.api_version_clusters, &mut v.clusters),
            (&self.api_version_vm_instances, &mut v.vm_instances),
            (&self.api_version_imds, &mut v.imds),
        ];
        for (flag, value) in overrides {
            if let Some(f) = flag {
                value.clone_from(f);
            }
        }
        match &self.extra_ca_file {
            Some(path) => config
                .with_ca_bundle_file(path)
                .map_err(ConfigError::CaFile),
            None => Ok(config),
        }
    }

    /// The client-side ARM token buckets.
    pub fn rate_limits(&self) -> RateLimits {
        let writes = BucketSpec {
            per_second: self.arm_write_qps,
            burst: self.arm_write_burst,
        };
        RateLimits {
            reads: BucketSpec {
                per_second: self.arm_read_qps,
                burst: self.arm_read_burst,
            },
            writes,
            deletes: writes,
        }
    }

    /// The controllers' settings.
    pub fn settings(&self, identity: &str) -> Settings {
        Settings {
            concurrency: self.concurrency,
            page_size: self.page_size,
            interval_scale: self.interval_scale,
            failure_grace: self.failure_grace,
            reconcile_timeout: self.reconcile_timeout,
            operation_timeout: self.operation_timeout,
            field_manager: self.field_manager.clone(),
            instance: Some(identity.to_owned()),
            per_vm_metrics: self.per_vm_metrics,
        }
    }

    /// This replica's identity: --identity, else $HOSTNAME (the pod name), else a random one.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| format!("guest-attestation-operator-{:08x}", fastrand::u32(..)))
    }
}

/// Parses a duration: one or more `<number><unit>` with unit ms, s, m or h (`1h30m`, `500ms`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let err = || format!("{value:?} is not a duration such as 30s, 15m, 1h30m or 500ms");
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        let n = u32::try_from(n).map_err(|_| err())?;
        total = unit
            .checked_mul(n)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(err)?;
    }
    Ok(total)
}

fn parse_scale(value: &str) -> Result<f64, String> {
    let v: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(format!("{value} must be above 0 and at most 1000"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["guest-attestation-operator"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m5s").unwrap(), Duration::from_secs(125));
        for bad in ["", "5", "s", "5d", "1.5s", "-1s", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_production_values() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.page_size, 50);
        assert!(c.leader_elect);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.watch_namespaces(), vec![None]);
        assert_eq!(c.log_format, LogFormat::Json);
        let s = c.settings("me");
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.reconcile_timeout, Duration::from_secs(60));
        assert_eq!(s.instance.as_deref(), Some("me"));
        let a = c.azure_config().unwrap();
        assert_eq!(a.rate_limits, RateLimits::default());
        assert_eq!(a.cloud, CloudEndpoints::public());
        assert_eq!(a.api_versions.vm_instances, "2025-06-01-preview");
    }

    #[test]
    fn arm_rate_limits_are_flags() {
        let c = parse(&[
            "--arm-read-qps",
            "200",
            "--arm-read-burst",
            "400",
            "--arm-write-qps",
            "9",
        ]);
        let r = c.azure_config().unwrap().rate_limits;
        assert_eq!((r.reads.per_second, r.reads.burst), (200, 400));
        assert_eq!((r.writes.per_second, r.writes.burst), (9, 50));
        assert_eq!(r.deletes, r.writes);
        for bad in [["--arm-read-qps", "0"], ["--arm-write-burst", "0"]] {
            let err = Config::try_parse_from(["x", bad[0], bad[1]]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        }
    }

    #[test]
    fn concurrency_is_never_zero() {
        let err = Config::try_parse_from(["x", "--concurrency", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn one_endpoint_for_an_emulator_keeps_scopes() {
        let c = parse(&[
            "--azure-endpoint",
            "https://127.0.0.1:8443",
            "--api-version-vm-instances",
            "2024-01-01",
        ]);
        let a = c.azure_config().unwrap();
        assert_eq!(a.cloud.arm_endpoint.as_str(), "https://127.0.0.1:8443/");
        assert_eq!(a.cloud.authority_host.as_str(), "https://127.0.0.1:8443/");
        assert_eq!(a.cloud.arm_scope, "https://management.azure.com/.default");
        assert_eq!(
            a.imds_endpoint.as_str(),
            "https://127.0.0.1:8443/metadata/identity/oauth2/token"
        );
        assert_eq!(a.api_versions.vm_instances, "2024-01-01");
    }

    #[test]
    fn sovereign_clouds_and_overrides() {
        let c = parse(&[
            "--azure-cloud",
            "AzureUSGovernment",
            "--maa-scope",
            "https://attest.example/.default",
        ]);
        let a = c.azure_config().unwrap();
        assert_eq!(
            a.cloud.arm_endpoint.as_str(),
            "https://management.usgovcloudapi.net/"
        );
        assert_eq!(a.cloud.maa_scope, "https://attest.example/.default");
        let bad = parse(&["--azure-cloud", "mars"]);
        assert!(matches!(bad.validate(), Err(ConfigError::UnknownCloud(_))));
    }

    #[test]
    fn namespaces_and_lease_timings() {
        let c = parse(&["--namespace", "b,a", "--namespace", "a"]);
        assert_eq!(
            c.watch_namespaces(),
            vec![Some("a".to_owned()), Some("b".to_owned())]
        );
        let c = parse(&["--lease-duration", "5s", "--renew-deadline", "10s"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseTimings { .. })
        ));
        let c = parse(&[
            "--leader-elect=false",
            "--lease-duration",
            "5s",
            "--renew-deadline",
            "10s",
        ]);
        assert!(!c.leader_elect);
        c.validate().unwrap();
    }

    #[test]
    fn every_option_is_documented() {
        let help = Config::command().render_long_help().to_string();
        for arg in Config::command().get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(
                arg.get_long_help().or(arg.get_help()).is_some(),
                "{}",
                arg.get_id()
            );
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            if let Some(env) = env {
                assert!(help.contains(&env), "{env} missing from --help");
            }
        }
    }
}
