//! Prometheus metrics (prometheus-client). Labels are bounded: controller, reason, health,
//! Azure service, operation and status code; never an object name.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::azure::{AzureMetrics, HoldReason, OpKind, RequestRecord, Service};

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// attestationstatus, guestattestationextension or attestationprovider.
    pub controller: &'static str,
}

/// Labels of reconcile failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The controller.
    pub controller: &'static str,
    /// The error's reason.
    pub reason: &'static str,
}

/// Labels of health transitions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The health before ("None" for a first verdict).
    pub from: &'static str,
    /// The health after.
    pub to: &'static str,
}

/// Labels of the per-VM gauge (only with `--per-vm-metrics`: one series per object).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VmLabels {
    /// The AttestationStatus namespace.
    pub namespace: String,
    /// The AttestationStatus name.
    pub name: String,
}

/// Labels of Azure requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AzureLabels {
    /// arm, maa, entra, imds.
    pub service: &'static str,
    /// The client operation.
    pub operation: &'static str,
    /// HTTP status, or "error" when no response came.
    pub code: String,
}

/// Labels of client-side holds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabels {
    /// arm, maa, entra, imds.
    pub service: &'static str,
    /// retry_after or rate_limit.
    pub reason: &'static str,
    /// The call held (e.g. get_machine), or the booking (book_reads, book_writes).
    pub operation: &'static str,
}

/// Labels of booked ARM read tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BookingLabels {
    /// used (sent on a read) or unused (spent budget no read was sent on).
    pub outcome: &'static str,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconcile_runs: Family<ControllerLabels, Counter>,
    /// Reconciles failed, by reason.
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// Reconcile duration.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Reconciles in flight.
    pub reconcile_in_flight: Family<ControllerLabels, Gauge>,
    /// Health transitions.
    pub health_transitions: Family<TransitionLabels, Counter>,
    /// Status writes skipped because nothing changed.
    pub status_writes_skipped: Family<ControllerLabels, Counter>,
    /// Status writes made.
    pub status_writes: Family<ControllerLabels, Counter>,
    /// Per VM: when its attestation was last validated (Unix seconds); only with
    /// `--per-vm-metrics`. Age in PromQL: `time() - guest_attestation_vm_attested_timestamp_seconds`.
    pub vm_attested_time: Family<VmLabels, Gauge>,
    /// Azure requests by service, operation and status code.
    pub azure_requests: Family<AzureLabels, Counter>,
    /// Azure request latency.
    pub azure_latency: Family<AzureLabels, Histogram>,
    /// Requests held back client-side (Retry-After or rate limit).
    pub azure_holds: Family<HoldLabels, Counter>,
    /// ARM read tokens reconciles booked ahead, used or not.
    pub azure_booked_reads: Family<BookingLabels, Counter>,
    /// ARM write tokens reconciles booked ahead, used or not.
    pub azure_booked_writes: Family<BookingLabels, Counter>,
    /// The shortest refresh interval the fleet's size allows within the ARM read budget (T6).
    pub refresh_floor: Gauge,
    /// Bytes held by the packed caches of the per-VM kinds.
    pub cache_bytes: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `guest_attestation` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guest_attestation");
        let m = Self {
            reconcile_runs: Family::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Family::new_with_constructor(latency_histogram),
            reconcile_in_flight: Family::default(),
            health_transitions: Family::default(),
            status_writes_skipped: Family::default(),
            status_writes: Family::default(),
            vm_attested_time: Family::default(),
            azure_requests: Family::default(),
            azure_latency: Family::new_with_constructor(latency_histogram),
            azure_holds: Family::default(),
            azure_booked_reads: Family::default(),
            azure_booked_writes: Family::default(),
            refresh_floor: Gauge::default(),
            cache_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconcile_runs",
            "Reconciles started",
            m.reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles failed",
            m.reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_in_flight",
            "Reconciles in flight",
            m.reconcile_in_flight.clone(),
        );
        registry.register(
            "health_transitions",
            "VM health transitions",
            m.health_transitions.clone(),
        );
        registry.register("status_writes", "Status writes", m.status_writes.clone());
        registry.register(
            "status_writes_skipped",
            "Status writes skipped because nothing changed",
            m.status_writes_skipped.clone(),
        );
        registry.register(
            "vm_attested_timestamp_seconds",
            "When each VM's attestation was last validated (only with --per-vm-metrics)",
            m.vm_attested_time.clone(),
        );
        registry.register(
            "azure_requests",
            "Azure HTTP requests",
            m.azure_requests.clone(),
        );
        registry.register(
            "azure_request_duration_seconds",
            "Azure HTTP request latency",
            m.azure_latency.clone(),
        );
        registry.register(
            "azure_holds",
            "Azure requests held back client-side",
            m.azure_holds.clone(),
        );
        registry.register(
            "azure_booked_reads",
            "ARM read tokens booked ahead by reconciles, by whether a read was sent on them",
            m.azure_booked_reads.clone(),
        );
        registry.register(
            "azure_booked_writes",
            "ARM write tokens booked ahead by reconciles, by whether a write was sent on them",
            m.azure_booked_writes.clone(),
        );
        registry.register(
            "refresh_floor_seconds",
            "The shortest refresh and drift-check interval the fleet's size allows within the ARM read budget",
            m.refresh_floor.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the packed caches of GuestAttestationExtensions and AttestationStatuses (compressed objects and their dictionaries)",
            m.cache_bytes.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts a reconcile and measures it until the guard drops.
    pub fn reconcile(self: &Arc<Self>, controller: &'static str) -> ReconcileGuard {
        let labels = ControllerLabels { controller };
        self.reconcile_runs.get_or_create(&labels).inc();
        self.reconcile_in_flight.get_or_create(&labels).inc();
        ReconcileGuard {
            metrics: Arc::clone(self),
            labels,
            start: std::time::Instant::now(),
        }
    }
}

/// Records the duration and in-flight count of one reconcile.
#[derive(Debug)]
pub struct ReconcileGuard {
    metrics: Arc<Metrics>,
    labels: ControllerLabels,
    start: std::time::Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.metrics
            .reconcile_in_flight
            .get_or_create(&self.labels)
            .dec();
        self.metrics
            .reconcile_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Backs the Azure client's metrics hooks.
#[derive(Debug, Clone)]
pub struct AzureMetricsAdapter(pub Arc<Metrics>);

impl AzureMetrics for AzureMetricsAdapter {
    fn record_request(&self, r: &RequestRecord) {
        let labels = AzureLabels {
            service: r.service.as_str(),
            operation: r.operation,
            code: r
                .status
                .map_or_else(|| "error".to_owned(), |s| s.to_string()),
        };
        self.0.azure_requests.get_or_create(&labels).inc();
        self.0
            .azure_latency
            .get_or_create(&labels)
            .observe(r.latency.as_secs_f64());
    }

    fn record_hold(&self, service: Service, op: &'static str, reason: HoldReason, _w: Duration) {
        let reason = match reason {
            HoldReason::RetryAfter => "retry_after",
            HoldReason::RateLimit => "rate_limit",
        };
        self.0
            .azure_holds
            .get_or_create(&HoldLabels {
                service: service.as_str(),
                reason,
                operation: op,
            })
            .inc();
    }

    fn record_booking(&self, kind: OpKind, booked: u32, unused: u32) {
        let family = match kind {
            OpKind::Read => &self.0.azure_booked_reads,
            // Deletes are not booked; were they, they would count with the writes.
            OpKind::Write | OpKind::Delete => &self.0.azure_booked_writes,
        };
        let count = |outcome, n: u32| {
            family
                .get_or_create(&BookingLabels { outcome })
                .inc_by(u64::from(n));
        };
        count("used", booked.saturating_sub(unused));
        count("unused", unused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_prefix_and_bounded_labels() {
        let m = Arc::new(Metrics::new());
        drop(m.reconcile("attestationstatus"));
        let text = m.encode();
        assert!(
            text.contains(
                "guest_attestation_reconcile_runs_total{controller=\"attestationstatus\"} 1"
            ),
            "{text}"
        );
        // VMs by health come from the object store (runtime::status_metrics), not from here.
        assert!(!text.contains("guest_attestation_vms"), "{text}");
        assert!(
            text.contains(
                "guest_attestation_reconcile_in_flight{controller=\"attestationstatus\"} 0"
            )
        );
    }
}
