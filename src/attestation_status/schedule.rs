//! When to read Azure again and when to requeue (pure).

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A deterministic factor in [0.9, 1.1] from the object's uid, so polls of many VMs spread out
/// (±10 % jitter) while each object's schedule stays stable across reconciles.
pub fn jitter(uid: &str) -> f64 {
    // FNV-1a: stable across processes, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    #[allow(clippy::cast_precision_loss)] // only a fraction is needed
    let unit = (h % 10_000) as f64 / 10_000.0;
    0.9 + 0.2 * unit
}

/// The next read after a successful one at `last`.
pub fn next_poll(last: Timestamp, refresh: Duration, uid: &str) -> Timestamp {
    add(last, refresh.mul_f64(jitter(uid)))
}

/// The next read after `failures` failed reads in a row, the last at `last`: 5 s × 2ⁿ⁻¹ capped at
/// the refresh interval, and never before Azure's Retry-After.
pub fn next_retry(
    last: Timestamp,
    failures: u32,
    refresh: Duration,
    retry_after: Option<Duration>,
) -> Timestamp {
    let backoff = crate::controller::context::delay(failures).min(refresh);
    add(last, backoff.max(retry_after.unwrap_or_default()))
}

/// How long to wait from `now` until the earliest of `instants` (at least 1 s, so a past
/// instant does not spin; at most `max`).
pub fn requeue_after(now: Timestamp, instants: &[Option<Timestamp>], max: Duration) -> Duration {
    instants
        .iter()
        .flatten()
        .map(|t| t.duration_since(now))
        .map(|d| Duration::try_from(d).unwrap_or(Duration::ZERO))
        .min()
        .unwrap_or(max)
        .clamp(Duration::from_secs(1), max.max(Duration::from_secs(1)))
}

/// Whether a poll must read the VM instance as well as the attestationStatus (T5: one GET per
/// VM per refresh interval in steady state). The VM instance carries the power state, which
/// decides staleness, and the security profile; the guest's own report carries the rest. So it
/// is read when nothing is known of the VM (first sight, spec change, VM missing), when the
/// attestation has no usable timestamp, when the 8-hour mark is within two refresh intervals
/// (or past), and otherwise once per `stale_after` so a changed security profile still shows.
pub fn vm_read_needed(
    vm_read_at: Option<Timestamp>,
    attested: Option<Timestamp>,
    now: Timestamp,
    refresh: Duration,
    stale_after: Duration,
) -> bool {
    let (Some(read_at), Some(attested)) = (vm_read_at, attested) else {
        return true;
    };
    add(read_at, stale_after) <= now || add(attested, stale_after) <= add(now, refresh * 2)
}

/// The ARM reads a poll books ahead (see `AzureApi::admit`): the attestationStatus, and the VM instance when
/// [`vm_read_needed`] says so for what the last poll saw. A newer attestation only makes the VM read less
/// likely, so the guess errs on the side of one read too many.
pub fn reads_to_book(
    vm_read_at: Option<Timestamp>,
    last_attested: Option<Timestamp>,
    now: Timestamp,
    refresh: Duration,
    stale_after: Duration,
) -> u32 {
    1 + u32::from(vm_read_needed(
        vm_read_at,
        last_attested,
        now,
        refresh,
        stale_after,
    ))
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn bookings_cover_the_vm_read_when_it_may_be_needed() {
        let now = ts("2026-01-01T12:00:00Z");
        let hour = Duration::from_secs(3600);
        let refresh = Duration::from_secs(1800);
        let stale = 8 * hour;
        let read_at = Some(ts("2026-01-01T11:00:00Z"));
        let attested = Some(ts("2026-01-01T11:30:00Z"));
        assert_eq!(reads_to_book(read_at, attested, now, refresh, stale), 1);
        assert_eq!(reads_to_book(None, attested, now, refresh, stale), 2);
        assert_eq!(reads_to_book(read_at, None, now, refresh, stale), 2);
        let near_mark = Some(ts("2026-01-01T04:30:00Z"));
        assert_eq!(reads_to_book(read_at, near_mark, now, refresh, stale), 2);
    }

    #[test]
    fn vm_is_read_only_when_its_power_state_or_profile_may_matter() {
        let now = ts("2026-01-01T12:00:00Z");
        let refresh = Duration::from_secs(1800);
        let stale = Duration::from_secs(8 * 3600);
        let hour_ago = Some(ts("2026-01-01T11:00:00Z"));
        // Nothing known of the VM, or no usable attestation time: read it.
        assert!(vm_read_needed(None, hour_ago, now, refresh, stale));
        assert!(vm_read_needed(hour_ago, None, now, refresh, stale));
        // Fresh attestation, VM read an hour ago: skip.
        assert!(!vm_read_needed(hour_ago, hour_ago, now, refresh, stale));
        // The mark (attested + 8 h) is 59 min away, within two intervals: read the power state.
        let near = Some(ts("2026-01-01T04:59:00Z"));
        assert!(vm_read_needed(hour_ago, near, now, refresh, stale));
        // 61 min away: not yet.
        let before = Some(ts("2026-01-01T05:01:00Z"));
        assert!(!vm_read_needed(hour_ago, before, now, refresh, stale));
        // Past the mark: every poll reads it (a stopped VM is not stale).
        assert!(vm_read_needed(
            hour_ago,
            Some(ts("2025-12-31T00:00:00Z")),
            now,
            refresh,
            stale
        ));
        // The VM was last read 8 h ago: refresh the security profile.
        let long_ago = Some(ts("2026-01-01T04:00:00Z"));
        assert!(vm_read_needed(long_ago, hour_ago, now, refresh, stale));
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        for uid in ["a", "b", "0b1c-…", "", "x".repeat(100).as_str()] {
            let j = jitter(uid);
            assert!((0.9..=1.1).contains(&j), "{uid}: {j}");
            assert!((jitter(uid) - j).abs() < f64::EPSILON);
        }
        assert!((jitter("uid-1") - jitter("uid-2")).abs() > f64::EPSILON);
    }

    #[test]
    fn next_poll_within_ten_percent() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let next = next_poll(t0, Duration::from_secs(1800), "uid");
        let d = next.duration_since(t0).as_secs();
        assert!((1620..=1980).contains(&d), "{d}");
    }

    #[test]
    fn retries_back_off_and_honour_retry_after() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let refresh = Duration::from_secs(1800);
        assert_eq!(next_retry(t0, 1, refresh, None), ts("2026-01-01T00:00:05Z"));
        assert_eq!(next_retry(t0, 3, refresh, None), ts("2026-01-01T00:00:20Z"));
        assert_eq!(
            next_retry(t0, 1, refresh, Some(Duration::from_secs(60))),
            ts("2026-01-01T00:01:00Z")
        );
        // Capped by the refresh interval when that is shorter.
        assert_eq!(
            next_retry(t0, 10, Duration::from_secs(60), None),
            ts("2026-01-01T00:01:00Z")
        );
    }

    #[test]
    fn requeue_picks_the_earliest_future_instant() {
        let now = ts("2026-01-01T00:00:00Z");
        let max = Duration::from_secs(3600);
        let poll = Some(ts("2026-01-01T00:30:00Z"));
        let flip = Some(ts("2026-01-01T00:10:00Z"));
        assert_eq!(
            requeue_after(now, &[poll, flip], max),
            Duration::from_secs(600)
        );
        assert_eq!(
            requeue_after(now, &[poll, None], max),
            Duration::from_secs(1800)
        );
        assert_eq!(requeue_after(now, &[None], max), max);
        assert_eq!(
            requeue_after(now, &[Some(ts("2025-12-31T00:00:00Z"))], max),
            Duration::from_secs(1)
        );
    }
}
