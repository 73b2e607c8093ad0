//! Metrics hooks: the client reports every HTTP attempt and every client-side hold to an [`AzureMetrics`]
//! implementation. The operator runtime backs it with prometheus-client; labels are bounded (service, operation,
//! status code), never per object.

use std::time::Duration;

use super::error::{HoldReason, Service};
use super::ratelimit::OpKind;

/// One HTTP attempt, as reported to [`AzureMetrics::record_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// The service called.
    pub service: Service,
    /// The client operation, e.g. `get_cluster` (a bounded set of names).
    pub operation: &'static str,
    /// The HTTP status, or `None` when no response arrived (connect error, timeout).
    pub status: Option<u16>,
    /// Time from sending the request to having read the whole response.
    pub latency: Duration,
    /// 1 for the first attempt of a call, 2 for its first retry, ...
    pub attempt: u32,
}

/// Receives the client's measurements. Implementations must be cheap and must not block.
pub trait AzureMetrics: Send + Sync + std::fmt::Debug {
    /// One HTTP attempt finished (with a status or a transport error).
    fn record_request(&self, record: &RequestRecord);

    /// A request was delayed (`waited`) or held back (`waited` is zero and the call failed) on the client side.
    fn record_hold(
        &self,
        service: Service,
        operation: &'static str,
        reason: HoldReason,
        waited: Duration,
    ) {
        let _ = (service, operation, reason, waited);
    }

    /// A reconcile's booking of ARM requests of `kind` ended with `unused` of its `booked` tokens not sent on.
    fn record_booking(&self, kind: OpKind, booked: u32, unused: u32) {
        let _ = (kind, booked, unused);
    }
}

/// Metrics that go nowhere (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl AzureMetrics for NoMetrics {
    fn record_request(&self, _: &RequestRecord) {}
}
