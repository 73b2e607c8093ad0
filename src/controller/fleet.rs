//! The fleet's size, and the shortest refresh interval it can afford (T6): every cached
//! AttestationStatus and GuestAttestationExtension costs about one ARM read per interval in
//! steady state (T5, plus 25 % for the occasional VM-instance and full-look reads), and steady
//! reads may use half of the client's read budget (`--arm-read-qps`, 12/s by default), so a fleet
//! of N objects needs an interval of at least N × 1.25 / 6 s at the default. The other half is
//! kept for change: deployments, repairs and new objects. Without the floor a large fleet's
//! refreshes queue behind the rate limiter and new objects starve (the first fleet benchmark: 59
//! of 100 extensions deployed after 3 minutes).

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// Reads per cached object per refresh interval, with the occasional extra reads.
const READS_PER_OBJECT: f64 = 1.25;

/// The share of the read budget that steady-state refreshes may use.
const STEADY_SHARE: f64 = 0.5;

/// How many objects each watching controller holds in its cache.
#[derive(Debug)]
pub struct Fleet {
    reads_per_second: f64,
    counts: Mutex<HashMap<String, (usize, usize)>>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new(crate::azure::RateLimits::default().reads.per_second)
    }
}

impl Fleet {
    /// A fleet whose steady reads share `reads_per_second`.
    pub fn new(reads_per_second: u32) -> Self {
        Self {
            reads_per_second: f64::from(reads_per_second.max(1)),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Records that the cache called `key` (controller and namespace) holds `n` objects in
    /// `bytes` (0 where the cache does not count them).
    pub fn set(&self, key: &str, n: usize, bytes: usize) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.get(key) != Some(&(n, bytes)) {
            counts.insert(key.to_owned(), (n, bytes));
        }
    }

    /// Objects cached by every controller.
    pub fn size(&self) -> usize {
        self.total(|&(n, _)| n)
    }

    /// Bytes held by the packed caches of every controller.
    pub fn cache_bytes(&self) -> usize {
        self.total(|&(_, bytes)| bytes)
    }

    fn total(&self, pick: fn(&(usize, usize)) -> usize) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(pick)
            .sum()
    }

    /// The shortest refresh interval the fleet can afford (real time: the read budget is not
    /// scaled by `Settings::interval_scale`).
    pub fn min_interval(&self) -> Duration {
        min_interval(self.size(), self.reads_per_second)
    }

    /// `interval`, raised to what the fleet can afford.
    pub fn raise(&self, interval: Duration) -> Duration {
        interval.max(self.min_interval())
    }
}

/// N objects × reads per object ÷ (the steady share of the reads per second).
pub fn min_interval(objects: usize, reads_per_second: f64) -> Duration {
    #[allow(clippy::cast_precision_loss)] // fleet sizes are far below 2^52
    let secs = objects as f64 * READS_PER_OBJECT / (reads_per_second.max(1.0) * STEADY_SHARE);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Keeps `fleet`'s count for `key` equal to the size of `store`, once a second, until aborted.
pub async fn track<V: super::cache::View>(fleet: std::sync::Arc<Fleet>, key: String, store: V) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fleet.set(&key, store.count(), store.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_grows_linearly_with_the_fleet() {
        assert_eq!(min_interval(0, 12.0), Duration::ZERO);
        // 10,000 VMs, each with an AttestationStatus and an extension: 20,000 objects.
        let ten_k = min_interval(20_000, 12.0);
        assert_eq!(ten_k.as_secs(), 4166, "{ten_k:?}");
        assert_eq!(min_interval(2_000, 12.0).as_secs(), 416);
    }

    #[test]
    fn counts_add_up_per_cache_and_raise_intervals() {
        let fleet = Fleet::new(12);
        fleet.set("attestationstatus/a", 600, 6_000);
        fleet.set("guestattestationextension/a", 600, 9_000);
        fleet.set("attestationstatus/a", 500, 5_000);
        assert_eq!(fleet.size(), 1100);
        assert_eq!(fleet.cache_bytes(), 14_000);
        let floor = fleet.min_interval();
        assert_eq!(floor.as_secs(), 229);
        assert_eq!(fleet.raise(Duration::from_secs(1800)).as_secs(), 1800);
        assert_eq!(fleet.raise(Duration::from_secs(30)), floor);
    }
}
