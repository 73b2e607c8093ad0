//! Client-side ARM token buckets, one per (principal, subscription, operation kind), at no more than half of
//! ARM's documented refill (targets.md T6): reads ≤ 12/s with a burst of 100, writes and deletes ≤ 5/s with a
//! burst of 50.
//!
//! The bucket is kept as a GCRA ("virtual scheduling") instant per key: each reservation pushes the key's
//! theoretical arrival time one interval further, and a caller waits until it is within `burst − 1` intervals of
//! now. Callers that would wait longer than they may get the wait back without reserving, so a controller can
//! requeue instead of holding a reconcile slot. Time is tokio's, so the arithmetic is tested under paused time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

/// The ARM operation kinds that have separate buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// GET and HEAD.
    Read,
    /// PUT, PATCH and POST.
    Write,
    /// DELETE.
    Delete,
}

impl OpKind {
    /// The kind of an HTTP method.
    pub fn of(method: &Method) -> Self {
        if *method == Method::GET || *method == Method::HEAD {
            OpKind::Read
        } else if *method == Method::DELETE {
            OpKind::Delete
        } else {
            OpKind::Write
        }
    }
}

/// One bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// Tokens added per second (at least 1).
    pub per_second: u32,
    /// Bucket size: how many requests may go at once after a quiet period (at least 1).
    pub burst: u32,
}

impl BucketSpec {
    /// The time between two tokens, rounded up so the rate is never exceeded.
    fn interval(self) -> Duration {
        Duration::from_nanos(1_000_000_000_u64.div_ceil(u64::from(self.per_second.max(1))))
    }

    fn tolerance(self) -> Duration {
        self.interval() * (self.burst.max(1) - 1)
    }
}

/// The client-side limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// GET (default 12/s, burst 100).
    pub reads: BucketSpec,
    /// PUT/PATCH/POST (default 5/s, burst 50).
    pub writes: BucketSpec,
    /// DELETE (default 5/s, burst 50).
    pub deletes: BucketSpec,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            reads: BucketSpec {
                per_second: 12,
                burst: 100,
            },
            writes: BucketSpec {
                per_second: 5,
                burst: 50,
            },
            deletes: BucketSpec {
                per_second: 5,
                burst: 50,
            },
        }
    }
}

impl RateLimits {
    fn spec(&self, kind: OpKind) -> BucketSpec {
        match kind {
            OpKind::Read => self.reads,
            OpKind::Write => self.writes,
            OpKind::Delete => self.deletes,
        }
    }
}

/// The key of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    /// The identity the requests are made as (tenant and client id, never a secret).
    pub principal: Arc<str>,
    /// The subscription (lower case).
    pub subscription: String,
    /// The operation kind.
    pub kind: OpKind,
}

/// Entries are dropped once their bucket is full again, when the map grows past this.
const CLEANUP_THRESHOLD: usize = 4096;

/// The token buckets of all keys.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    /// Theoretical arrival time per key.
    tat: Mutex<HashMap<RateKey, Instant>>,
}

impl RateLimiter {
    /// Buckets with the given limits.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves one token for `key`. Returns how long the caller must wait before sending; or, without
    /// reserving, `Err(wait)` when that wait would exceed `max_wait`.
    pub fn reserve(&self, key: &RateKey, max_wait: Duration) -> Result<Duration, Duration> {
        let spec = self.limits.spec(key.kind);
        let now = Instant::now();
        let mut map = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > CLEANUP_THRESHOLD {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().map_or(now, |t| t.max(now));
        let earliest = now + spec.tolerance();
        let wait = tat.saturating_duration_since(earliest);
        if wait > max_wait {
            return Err(wait);
        }
        map.insert(key.clone(), tat + spec.interval());
        Ok(wait)
    }

    /// Reserves one token and waits for it; `Err(wait)` (nothing reserved, nothing waited) when the wait would
    /// exceed `max_wait`.
    pub async fn acquire(&self, key: &RateKey, max_wait: Duration) -> Result<Duration, Duration> {
        let wait = self.reserve(key, max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sub: &str, kind: OpKind) -> RateKey {
        RateKey {
            principal: Arc::from("tenant/client"),
            subscription: sub.into(),
            kind,
        }
    }

    const FOREVER: Duration = Duration::from_hours(1);

    #[tokio::test(start_paused = true)]
    async fn thousand_reads_take_at_least_the_refill_time() {
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        let start = Instant::now();
        let mut done_at = Vec::with_capacity(1000);
        for _ in 0..1000 {
            l.acquire(&k, FOREVER).await.unwrap();
            done_at.push(Instant::now() - start);
        }
        let elapsed = Instant::now() - start;
        let min = Duration::from_secs_f64(900.0 / 12.0);
        assert!(elapsed >= min, "{elapsed:?} < {min:?}");
        assert!(elapsed < min + Duration::from_secs(1), "{elapsed:?}");
        // the burst never exceeds 100, and no one-second window after it holds more than 12 (+1 boundary)
        assert_eq!(done_at.iter().filter(|d| d.is_zero()).count(), 100);
        for (i, t) in done_at.iter().enumerate() {
            let in_window = done_at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            if !t.is_zero() {
                assert!(
                    in_window <= 12,
                    "{in_window} requests in the second after {t:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_refills_over_time() {
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        for _ in 0..100 {
            assert_eq!(l.reserve(&k, Duration::ZERO), Ok(Duration::ZERO));
        }
        let w = l.reserve(&k, Duration::ZERO).unwrap_err();
        assert_eq!(
            w,
            BucketSpec {
                per_second: 12,
                burst: 100
            }
            .interval()
        );
        // after 10 s, 120 tokens came back but the bucket holds 100
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..100 {
            assert_eq!(l.reserve(&k, Duration::ZERO), Ok(Duration::ZERO));
        }
        assert!(l.reserve(&k, Duration::ZERO).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent_and_writes_separate() {
        let l = RateLimiter::new(RateLimits::default());
        for _ in 0..100 {
            l.reserve(&key("s1", OpKind::Read), Duration::ZERO).unwrap();
        }
        assert!(l.reserve(&key("s1", OpKind::Read), Duration::ZERO).is_err());
        assert!(l.reserve(&key("s2", OpKind::Read), Duration::ZERO).is_ok());
        let other_principal = RateKey {
            principal: Arc::from("tenant/other"),
            ..key("s1", OpKind::Read)
        };
        assert!(l.reserve(&other_principal, Duration::ZERO).is_ok());
        // writes: 50 at once, then one per 200 ms
        let w = key("s1", OpKind::Write);
        for _ in 0..50 {
            assert_eq!(l.reserve(&w, Duration::ZERO), Ok(Duration::ZERO));
        }
        assert_eq!(
            l.reserve(&w, Duration::ZERO),
            Err(Duration::from_millis(200))
        );
        let d = key("s1", OpKind::Delete);
        assert_eq!(l.reserve(&d, Duration::ZERO), Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn refused_reservations_do_not_consume() {
        let l = RateLimiter::new(RateLimits {
            writes: BucketSpec {
                per_second: 5,
                burst: 1,
            },
            ..RateLimits::default()
        });
        let w = key("s", OpKind::Write);
        assert_eq!(l.reserve(&w, Duration::ZERO), Ok(Duration::ZERO));
        for _ in 0..10 {
            assert_eq!(
                l.reserve(&w, Duration::ZERO),
                Err(Duration::from_millis(200))
            );
        }
        // a caller that may wait gets the next slot, not the 11th
        assert_eq!(l.reserve(&w, FOREVER), Ok(Duration::from_millis(200)));
        let t0 = Instant::now();
        l.acquire(&w, FOREVER).await.unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_millis(400));
    }

    #[test]
    fn intervals_round_up() {
        let s = BucketSpec {
            per_second: 12,
            burst: 100,
        };
        assert!(s.interval() * 12 >= Duration::from_secs(1));
        assert_eq!(OpKind::of(&Method::GET), OpKind::Read);
        assert_eq!(OpKind::of(&Method::PATCH), OpKind::Write);
        assert_eq!(OpKind::of(&Method::DELETE), OpKind::Delete);
    }
}
