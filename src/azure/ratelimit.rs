//! Client-side ARM token buckets, one per (principal, subscription, operation kind), at no more than half of
//! ARM's documented refill (targets.md T6): reads ≤ 12/s with a burst of 100, writes and deletes ≤ 5/s with a
//! burst of 50.
//!
//! The bucket is kept as a GCRA ("virtual scheduling") instant per key: each reservation pushes the key's
//! theoretical arrival time one interval further, and a caller waits until it is within `burst − 1` intervals of
//! now. Callers that would wait longer than they may get the wait back without reserving, so a controller can
//! requeue instead of holding a reconcile slot. Time is tokio's, so the arithmetic is tested under paused time.
//!
//! A reconcile can also *book* the reads it is about to make ([`RateLimiter::admit`]): the tokens are reserved
//! at once, in arrival order, and when they are more than a moment away the reconcile requeues for the booked
//! instant instead of waiting in its slot. kube-runtime serves requeues in time order, so under a demand larger
//! than the budget every object gets its turn in the order it asked (waiting in the slots instead saturates the
//! runner, whose backlog is served in hash order: some objects then wait without bound).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

use super::metrics::AzureMetrics;

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

impl RateKey {
    /// The key of `principal`'s `kind` requests in `subscription` (compared in lower case, as ARM does).
    pub fn new(principal: Arc<str>, subscription: &str, kind: OpKind) -> Self {
        RateKey {
            principal,
            subscription: subscription.to_ascii_lowercase(),
            kind,
        }
    }
}

/// Entries are dropped once their bucket is full again, when the map grows past this.
const CLEANUP_THRESHOLD: usize = 4096;

/// A booking nobody came back for (its object was deleted, or changed its plans) is dropped this long after its
/// instant; its tokens stay spent.
const ABANDONED_AFTER: Duration = Duration::from_mins(10);

/// Tokens booked ahead by one reconcile ([`RateLimiter::admit`]): requests of the same key sent with it skip the
/// bucket until they are used up; later ones queue as usual.
#[derive(Debug)]
pub struct Prepaid {
    key: RateKey,
    booked: u32,
    left: AtomicU32,
    /// Told, when the booking ends, how many tokens went unused (spent budget nobody sent on).
    report: Option<Arc<dyn AzureMetrics>>,
}

impl Prepaid {
    fn new(key: &RateKey, tokens: u32) -> Self {
        Prepaid {
            key: key.clone(),
            booked: tokens,
            left: AtomicU32::new(tokens),
            report: None,
        }
    }

    /// The same booking, reporting its use to `metrics` when it ends.
    #[must_use]
    pub(crate) fn reported_to(mut self, metrics: Arc<dyn AzureMetrics>) -> Self {
        self.report = Some(metrics);
        self
    }

    /// Uses one token when `key` is the booked one and any are left.
    pub fn take(&self, key: &RateKey) -> bool {
        *key == self.key
            && self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// The tokens not used yet.
    pub fn left(&self) -> u32 {
        self.left.load(Ordering::Relaxed)
    }
}

impl Drop for Prepaid {
    fn drop(&mut self) {
        if let Some(m) = &self.report {
            m.record_booking(self.key.kind, self.booked, self.left());
        }
    }
}

/// The answer to [`RateLimiter::admit`].
#[derive(Debug)]
pub enum Admission {
    /// The tokens are the caller's after `wait` (at most the patience it gave).
    Granted {
        /// How long to wait before sending.
        wait: Duration,
        /// The tokens, for the requests that follow.
        prepaid: Prepaid,
    },
    /// The tokens are booked for later: come back after `retry_after`.
    Booked {
        /// When the booking can be used.
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct Booking {
    at: Instant,
    tokens: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Theoretical arrival time per key.
    tat: HashMap<RateKey, Instant>,
    /// Bookings per key and holder.
    bookings: HashMap<(RateKey, Box<str>), Booking>,
    /// The booking count after the last sweep of abandoned ones, and when it was: the next sweep waits until
    /// the count doubles or the abandon time has passed, so sweeping costs O(1) per booking.
    swept: (usize, Option<Instant>),
}

impl State {
    /// The theoretical arrival time of `key`'s next token (now when its bucket is full).
    fn tat(&self, key: &RateKey, now: Instant) -> Instant {
        self.tat.get(key).copied().map_or(now, |t| t.max(now))
    }

    /// How long until `tokens` more tokens of `key` conform: the last of them once it is within the burst
    /// tolerance of now.
    fn wait(&self, key: &RateKey, spec: BucketSpec, tokens: u32, now: Instant) -> Duration {
        let last = self.tat(key, now) + spec.interval() * (tokens - 1);
        last.saturating_duration_since(now + spec.tolerance())
    }

    /// Reserves `tokens` tokens of `key` (at least one); returns their [`State::wait`].
    fn take(&mut self, key: &RateKey, spec: BucketSpec, tokens: u32, now: Instant) -> Duration {
        let wait = self.wait(key, spec, tokens, now);
        let next = self.tat(key, now) + spec.interval() * tokens;
        self.tat.insert(key.clone(), next);
        wait
    }
}

/// The token buckets of all keys.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    state: Mutex<State>,
}

impl RateLimiter {
    /// Buckets with the given limits.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one token for `key`. Returns how long the caller must wait before sending; or, without
    /// reserving, `Err(wait)` when that wait would exceed `max_wait`.
    pub fn reserve(&self, key: &RateKey, max_wait: Duration) -> Result<Duration, Duration> {
        let spec = self.limits.spec(key.kind);
        let now = Instant::now();
        let mut state = self.lock();
        if state.tat.len() > CLEANUP_THRESHOLD {
            state.tat.retain(|_, tat| *tat > now);
        }
        let wait = state.wait(key, spec, 1, now);
        if wait > max_wait {
            return Err(wait);
        }
        state.take(key, spec, 1, now);
        Ok(wait)
    }

    /// Books `tokens` tokens of `key` for `holder` (one object). When they are available within `patience`
    /// they are granted (wait that long, then send with them). Otherwise they are reserved all the same, in
    /// arrival order, and the answer says when to come back: the same holder then gets them without queueing
    /// again. A holder that comes back early is told to wait for its booking; nothing more is reserved.
    pub fn admit(&self, key: &RateKey, holder: &str, tokens: u32, patience: Duration) -> Admission {
        let tokens = tokens.max(1);
        let spec = self.limits.spec(key.kind);
        let now = Instant::now();
        let mut state = self.lock();
        let (len, at) = state.swept;
        let len_now = state.bookings.len();
        if len_now >= CLEANUP_THRESHOLD
            && (len_now >= 2 * len || at.is_none_or(|t| t + ABANDONED_AFTER <= now))
        {
            state.bookings.retain(|_, b| b.at + ABANDONED_AFTER > now);
            state.swept = (state.bookings.len(), Some(now));
        }
        let held = (key.clone(), Box::<str>::from(holder));
        if let Some(b) = state.bookings.get(&held) {
            let wait = b.at.saturating_duration_since(now);
            if wait > patience {
                return Admission::Booked { retry_after: wait };
            }
            let prepaid = Prepaid::new(key, b.tokens);
            state.bookings.remove(&held);
            return Admission::Granted { wait, prepaid };
        }
        let wait = state.take(key, spec, tokens, now);
        if wait <= patience {
            return Admission::Granted {
                wait,
                prepaid: Prepaid::new(key, tokens),
            };
        }
        state.bookings.insert(
            held,
            Booking {
                at: now + wait,
                tokens,
            },
        );
        Admission::Booked { retry_after: wait }
    }

    /// How many bookings wait to be used (for tests and metrics).
    pub fn bookings(&self) -> usize {
        self.lock().bookings.len()
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

    const PATIENCE: Duration = Duration::from_secs(2);

    fn granted(a: Admission) -> (Duration, Prepaid) {
        match a {
            Admission::Granted { wait, prepaid } => (wait, prepaid),
            Admission::Booked { retry_after } => panic!("booked for {retry_after:?}"),
        }
    }

    fn booked(a: &Admission) -> Duration {
        match a {
            Admission::Booked { retry_after } => *retry_after,
            Admission::Granted { wait, .. } => panic!("granted after {wait:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bookings_are_served_in_arrival_order_and_kept_for_their_holder() {
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        let interval = l.limits.reads.interval();
        // 25 holders of 4 reads use the burst of 100; the next ones queue 4 intervals apart.
        for i in 0..25 {
            let (wait, p) = granted(l.admit(&k, &format!("h{i}"), 4, PATIENCE));
            assert_eq!(wait, Duration::ZERO);
            assert_eq!(p.left(), 4);
        }
        let mut waits = Vec::new();
        for i in 25..60 {
            let a = l.admit(&k, &format!("h{i}"), 4, PATIENCE);
            match a {
                Admission::Granted { wait, .. } => assert!(wait <= PATIENCE),
                Admission::Booked { retry_after } => waits.push((i, retry_after)),
            }
        }
        assert!(!waits.is_empty());
        for w in waits.windows(2) {
            assert_eq!(w[1].1.saturating_sub(w[0].1), interval * 4, "{w:?}");
        }
        // Coming back early: told to wait for the rest, and nothing more is reserved.
        let (first, at) = waits[0];
        let holder = format!("h{first}");
        let half = at / 2;
        let rest = at.saturating_sub(half);
        tokio::time::advance(half).await;
        assert_eq!(booked(&l.admit(&k, &holder, 4, Duration::ZERO)), rest);
        let (last, last_at) = *waits.last().unwrap();
        let newcomer = booked(&l.admit(&k, "new", 4, PATIENCE));
        assert_eq!(
            newcomer,
            last_at.saturating_sub(half) + interval * 4,
            "h{last} is ahead"
        );
        // On time: the booked tokens, at once.
        tokio::time::advance(rest).await;
        let (wait, p) = granted(l.admit(&k, &holder, 1, PATIENCE));
        assert_eq!(wait, Duration::ZERO);
        assert_eq!(p.left(), 4, "the booked count, not the new ask");
        assert_eq!(l.bookings(), waits.len() - 1 + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn prepaid_tokens_cover_their_key_only_and_run_out() {
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        let (_, p) = granted(l.admit(&k, "h", 2, PATIENCE));
        assert!(!p.take(&key("s2", OpKind::Read)));
        assert!(!p.take(&key("s1", OpKind::Write)));
        assert!(p.take(&k));
        assert!(p.take(&k));
        assert!(!p.take(&k));
        assert_eq!(p.left(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn booked_reads_keep_the_rate() {
        // 300 holders of 4 reads each, all asking at once and each coming back at its instant: every read
        // is sent once, and after the burst no one-second window holds more than the refill rate plus the
        // tokens of one booking (sent together when the last of them conforms).
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        let start = Instant::now();
        let mut due: Vec<(Duration, String)> = Vec::new();
        let mut sent = Vec::new();
        for i in 0..300 {
            let h = format!("h{i}");
            match l.admit(&k, &h, 4, PATIENCE) {
                Admission::Granted { wait, prepaid } => {
                    for _ in 0..prepaid.left() {
                        sent.push(wait);
                    }
                }
                Admission::Booked { retry_after } => due.push((retry_after, h)),
            }
        }
        for (at, h) in &due {
            let now = Instant::now() - start;
            tokio::time::advance(at.saturating_sub(now)).await;
            let (wait, p) = granted(l.admit(&k, h, 4, PATIENCE));
            assert_eq!(wait, Duration::ZERO);
            for _ in 0..p.left() {
                sent.push(Instant::now() - start);
            }
        }
        assert_eq!(sent.len(), 1200);
        let span = *sent.last().unwrap();
        let min = Duration::from_secs_f64(1100.0 / 12.0);
        assert!(span + Duration::from_secs(1) >= min, "{span:?}");
        assert!(span < min + Duration::from_secs(1), "{span:?}");
        sent.sort();
        let after_burst: Vec<_> = sent.iter().filter(|t| !t.is_zero()).collect();
        for (i, t) in after_burst.iter().enumerate() {
            let in_window = after_burst[i..]
                .iter()
                .take_while(|u| ***u < **t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 12 + 3,
                "{in_window} reads in the second after {t:?}"
            );
        }
        assert_eq!(l.bookings(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_bookings_are_swept() {
        let l = RateLimiter::new(RateLimits::default());
        let k = key("s1", OpKind::Read);
        for i in 0..CLEANUP_THRESHOLD + 200 {
            let _ = l.admit(&k, &format!("h{i}"), 1, Duration::ZERO);
        }
        let before = l.bookings();
        assert!(before > CLEANUP_THRESHOLD);
        tokio::time::advance(Duration::from_secs(3600) + ABANDONED_AFTER).await;
        let _ = l.admit(&k, "late", 1, Duration::ZERO);
        assert!(l.bookings() < 10, "{} left", l.bookings());
    }

    /// Keeps what `record_booking` was told.
    #[derive(Debug, Default)]
    struct Bookings(Mutex<Vec<(u32, u32)>>);

    impl AzureMetrics for Bookings {
        fn record_request(&self, _: &super::super::metrics::RequestRecord) {}
        fn record_booking(&self, kind: OpKind, booked: u32, unused: u32) {
            assert_eq!(kind, OpKind::Read);
            self.0.lock().unwrap().push((booked, unused));
        }
    }

    #[test]
    fn a_booking_reports_its_unused_tokens_when_it_ends() {
        let k = key("s1", OpKind::Read);
        let metrics = Arc::new(Bookings::default());
        let p = Prepaid::new(&k, 3).reported_to(metrics.clone());
        assert!(p.take(&k));
        assert!(
            !p.take(&key("s2", OpKind::Read)),
            "another key's request is not paid"
        );
        assert!(
            metrics.0.lock().unwrap().is_empty(),
            "nothing until it ends"
        );
        drop(p);
        assert_eq!(*metrics.0.lock().unwrap(), [(3, 2)]);
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
