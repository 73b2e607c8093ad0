//! The request log: one record per request, for assertions in tests.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One handled (or deliberately dropped) request. Never contains secrets or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Sequence number (starts at 1, never reused within one emulator).
    pub seq: u64,
    /// Real time the request arrived.
    pub time: SystemTime,
    /// Virtual time the request arrived (see `Emulator::advance_clock`).
    pub virtual_time: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Path (percent-decoded), without the query.
    pub path: String,
    /// Raw query string (empty if none). Secrets never travel in queries here.
    pub query: String,
    /// The `api-version` query parameter, if any.
    pub api_version: Option<String>,
    /// Response status; `None` when the connection was reset or the request hung.
    pub status: Option<u16>,
    /// Caller identity: the `appid` of a verified bearer token, or the `client_id` of a token
    /// request. `None` for anonymous requests.
    pub principal: Option<String>,
    /// Subscription id from an ARM path (lower case), if any.
    pub subscription: Option<String>,
    /// Attestation provider name for MAA data-plane requests, if any.
    pub provider: Option<String>,
    /// Name of the fault that shaped the response, if any.
    pub fault: Option<String>,
}

/// Bounded in-memory log.
#[derive(Debug)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    capacity: usize,
    next_seq: u64,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub(crate) fn push(&mut self, record: RequestRecord) {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        let mut v: Vec<_> = self.records.iter().cloned().collect();
        v.sort_by_key(|r| r.seq);
        v
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}
