//! Scripted faults: match requests by method and path, then answer with an error status, delay,
//! hang, drop the connection, or corrupt the JSON body.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A scripted fault. Faults are checked in the order they were added; the first live match wins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// HTTP method to match (case-insensitive); `None` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path matcher (the query string is not part of the path).
    pub path: PathMatch,
    /// Let this many matching requests through untouched before the fault starts. Default 0.
    #[serde(default)]
    pub skip: u32,
    /// Apply to at most this many requests (after `skip`); `None` means forever.
    #[serde(default)]
    pub count: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

impl Fault {
    /// A fault on every request whose path contains `substring` (case-insensitive).
    pub fn on(method: Option<&str>, substring: &str, action: FaultAction) -> Self {
        Self {
            method: method.map(str::to_owned),
            path: PathMatch::Contains(substring.to_owned()),
            skip: 0,
            count: None,
            action,
        }
    }

    /// Limits the fault to `n` requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.count = Some(n);
        self
    }

    /// Lets `n` matching requests through first.
    #[must_use]
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }
}

/// How a fault matches the request path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    /// Case-insensitive substring.
    Contains(String),
    /// Regular expression (matched case-insensitively).
    Regex(String),
}

/// When a client may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date>` this many seconds after the response is sent.
    HttpDate(u64),
}

/// What a matching request gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// An error status with the surface's error body (ARM/MAA `{"error":{"code","message"}}`,
    /// Entra `{"error","error_description",...}`), e.g. 409, 429, 500, 503.
    Status {
        /// HTTP status.
        status: u16,
        /// Error code (e.g. `TooManyRequests`, `Conflict`, `InternalServerError`).
        code: String,
        /// Error message.
        message: String,
        /// Optional `Retry-After` header.
        #[serde(default)]
        retry_after: Option<RetryAfter>,
    },
    /// Waits this long, then handles the request normally (use more than the client timeout).
    Delay {
        /// Delay in milliseconds.
        millis: u64,
    },
    /// Never answers (the connection stays open until the client gives up).
    Hang,
    /// Drops the TCP connection with a reset, without any response.
    Reset,
    /// Handles the request, then sends only the first half of the JSON body (with a matching
    /// Content-Length, so the client sees well-framed but truncated JSON).
    Truncate,
    /// Handles the request, then replaces the body with malformed JSON.
    Malformed,
}

impl FaultAction {
    /// 429 `TooManyRequests` with `Retry-After: secs`.
    pub fn throttle(secs: u64) -> Self {
        Self::Status {
            status: 429,
            code: "TooManyRequests".into(),
            message: "The request is being throttled.".into(),
            retry_after: Some(RetryAfter::Seconds(secs)),
        }
    }

    /// 429 with `Retry-After` as an HTTP-date `secs` ahead.
    pub fn throttle_until(secs: u64) -> Self {
        Self::Status {
            status: 429,
            code: "TooManyRequests".into(),
            message: "The request is being throttled.".into(),
            retry_after: Some(RetryAfter::HttpDate(secs)),
        }
    }

    /// An error status with a code and message.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        Self::Status {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A delay.
    pub fn delay(d: Duration) -> Self {
        Self::Delay {
            millis: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Short name for the request log.
    pub(crate) fn kind(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("status:{status}"),
            Self::Delay { millis } => format!("delay:{millis}ms"),
            Self::Hang => "hang".into(),
            Self::Reset => "reset".into(),
            Self::Truncate => "truncate".into(),
            Self::Malformed => "malformed".into(),
        }
    }
}

/// Identifier returned by `Emulator::add_fault`.
pub type FaultId = u64;

#[derive(Debug)]
struct Armed {
    id: FaultId,
    fault: Fault,
    regex: Option<Regex>,
    seen: u32,
    applied: u32,
}

/// The active fault list.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    armed: Vec<Armed>,
    next_id: FaultId,
}

impl FaultSet {
    pub(crate) fn add(&mut self, fault: Fault) -> Result<FaultId, crate::Error> {
        let regex = match &fault.path {
            PathMatch::Regex(r) => Some(
                Regex::new(&format!("(?i){r}"))
                    .map_err(|e| crate::Error::InvalidFault(e.to_string()))?,
            ),
            PathMatch::Contains(_) => None,
        };
        self.next_id += 1;
        let id = self.next_id;
        self.armed.push(Armed {
            id,
            fault,
            regex,
            seen: 0,
            applied: 0,
        });
        Ok(id)
    }

    pub(crate) fn remove(&mut self, id: FaultId) -> bool {
        let before = self.armed.len();
        self.armed.retain(|a| a.id != id);
        before != self.armed.len()
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    /// How many requests fault `id` has shaped so far.
    pub(crate) fn applied(&self, id: FaultId) -> Option<u32> {
        self.armed.iter().find(|a| a.id == id).map(|a| a.applied)
    }

    /// Finds the first live fault for this request and counts it.
    pub(crate) fn check(&mut self, method: &str, path: &str) -> Option<FaultAction> {
        let lower = path.to_ascii_lowercase();
        for a in &mut self.armed {
            if a.fault
                .method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            let hit = match (&a.fault.path, &a.regex) {
                (PathMatch::Contains(s), _) => lower.contains(&s.to_ascii_lowercase()),
                (PathMatch::Regex(_), Some(r)) => r.is_match(path),
                (PathMatch::Regex(_), None) => false,
            };
            if !hit {
                continue;
            }
            if a.fault.count.is_some_and(|c| a.applied >= c) {
                continue;
            }
            a.seen += 1;
            if a.seen <= a.fault.skip {
                continue;
            }
            a.applied += 1;
            return Some(a.fault.action.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_count_and_method() {
        let mut set = FaultSet::default();
        let id = set
            .add(
                Fault::on(Some("GET"), "/Extensions/", FaultAction::Reset)
                    .after(1)
                    .times(2),
            )
            .expect("add");
        let p = "/subscriptions/s/resourceGroups/r/providers/Microsoft.HybridCompute/machines/m/extensions/x";
        assert!(set.check("PUT", p).is_none(), "method must match");
        assert!(set.check("GET", p).is_none(), "first one skipped");
        assert!(set.check("get", p).is_some());
        assert!(set.check("GET", p).is_some());
        assert!(set.check("GET", p).is_none(), "count exhausted");
        assert_eq!(set.applied(id), Some(2));
    }

    #[test]
    fn regex_match_and_invalid_regex() {
        let mut set = FaultSet::default();
        set.add(Fault {
            method: None,
            path: PathMatch::Regex("/attest/[a-z]+/policies".into()),
            skip: 0,
            count: None,
            action: FaultAction::throttle(3),
        })
        .expect("add");
        assert!(
            set.check("PUT", "/attest/MyProv/policies/AzureGuest")
                .is_some()
        );
        assert!(set.check("PUT", "/attest/p1/certs").is_none());
        let bad = Fault {
            method: None,
            path: PathMatch::Regex("(".into()),
            skip: 0,
            count: None,
            action: FaultAction::Hang,
        };
        assert!(set.add(bad).is_err());
    }
}
