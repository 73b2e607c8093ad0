//! ARM-style token buckets per (principal, subscription, operation kind).

use std::collections::HashMap;
use std::time::Instant;

use crate::config::ThrottleConfig;

/// ARM operation kinds with separate budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    Read,
    Write,
    Delete,
}

impl OpKind {
    pub(crate) fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD => Self::Read,
            http::Method::DELETE => Self::Delete,
            _ => Self::Write,
        }
    }

    /// Suffix of the `x-ms-ratelimit-remaining-subscription-*` header.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Self::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Take {
    /// Allowed; tokens left (floored).
    Ok(u64),
    /// Throttled; retry after this many whole seconds.
    Throttled(u64),
}

/// All buckets.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<(String, String, OpKind), Bucket>,
}

impl Buckets {
    fn params(cfg: &ThrottleConfig, kind: OpKind) -> (f64, f64) {
        match kind {
            OpKind::Read => (cfg.reads_per_sec, cfg.read_burst),
            OpKind::Write => (cfg.writes_per_sec, cfg.write_burst),
            OpKind::Delete => (cfg.deletes_per_sec, cfg.delete_burst),
        }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // bounded, non-negative
    pub(crate) fn take(
        &mut self,
        cfg: &ThrottleConfig,
        principal: &str,
        subscription: &str,
        kind: OpKind,
        now: Instant,
    ) -> Take {
        let (rate, burst) = Self::params(cfg, kind);
        let b = self
            .buckets
            .entry((principal.to_owned(), subscription.to_owned(), kind))
            .or_insert(Bucket {
                tokens: burst,
                last: now,
            });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Take::Ok(b.tokens.floor().max(0.0) as u64);
        }
        if !cfg.enabled {
            return Take::Ok(0);
        }
        let wait = if rate > 0.0 {
            ((1.0 - b.tokens) / rate).ceil()
        } else {
            3600.0
        };
        Take::Throttled(wait.clamp(1.0, 3600.0) as u64)
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_throttles_then_refills() {
        let cfg = ThrottleConfig {
            enabled: true,
            reads_per_sec: 1.0,
            read_burst: 2.0,
            ..ThrottleConfig::default()
        };
        let mut b = Buckets::default();
        let t0 = Instant::now();
        assert_eq!(b.take(&cfg, "p", "s", OpKind::Read, t0), Take::Ok(1));
        assert_eq!(b.take(&cfg, "p", "s", OpKind::Read, t0), Take::Ok(0));
        assert_eq!(b.take(&cfg, "p", "s", OpKind::Read, t0), Take::Throttled(1));
        assert_eq!(
            b.take(&cfg, "other", "s", OpKind::Read, t0),
            Take::Ok(1),
            "per principal"
        );
        assert!(matches!(
            b.take(
                &cfg,
                "p",
                "s",
                OpKind::Read,
                t0 + Duration::from_millis(1100)
            ),
            Take::Ok(_)
        ));
    }
}
