//! Conditions: set one, keeping `lastTransitionTime` unless the status flips (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Condition, ConditionStatus};

/// The largest condition message we write; longer ones are cut at a UTF-8 boundary.
pub const MAX_MESSAGE: usize = 1024;

/// The desired state of one condition, without its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    /// A condition of `type_` with the given status, reason and message.
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Builds the new condition list from the old one: each desired condition keeps the old
/// `lastTransitionTime` when its status did not change, and takes `now` when it did. The order
/// of `desired` is the order written, so the output is deterministic.
pub fn merge(
    old: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let previous = old.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status => p.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: d.type_.to_owned(),
                status: d.status,
                observed_generation: generation,
                last_transition_time,
                reason: d.reason,
                message: truncate(&d.message, MAX_MESSAGE),
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T01:00:00Z");
        let first = merge(
            &[],
            vec![Desired::new("Ready", ConditionStatus::True, "A", "m")],
            Some(1),
            t0,
        );
        let second = merge(
            &first,
            vec![Desired::new("Ready", ConditionStatus::True, "B", "other")],
            Some(2),
            t1,
        );
        assert_eq!(second[0].last_transition_time, Time(t0));
        assert_eq!(second[0].reason, "B");
        assert_eq!(second[0].observed_generation, Some(2));
        let third = merge(
            &second,
            vec![Desired::new("Ready", ConditionStatus::False, "C", "")],
            Some(2),
            t1,
        );
        assert_eq!(third[0].last_transition_time, Time(t1));
    }

    #[test]
    fn output_order_follows_desired() {
        let now = ts("2026-01-01T00:00:00Z");
        let out = merge(
            &[],
            vec![
                Desired::new("Fresh", ConditionStatus::True, "Current", ""),
                Desired::new("Ready", ConditionStatus::False, "X", ""),
            ],
            None,
            now,
        );
        assert_eq!(
            out.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Fresh", "Ready"]
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1024);
        assert!(t.len() <= 1024);
        assert!(t.ends_with("..."));
        assert_eq!(truncate("short", 1024), "short");
    }
}
