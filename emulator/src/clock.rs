//! The virtual clock: real time plus an offset that tests advance.
//!
//! Virtual time drives the simulated world (guest attestation reports, LRO durations). Token
//! expiry and `Retry-After` use real time, because clients measure those with their own clocks.
//! Attestation timestamps are rendered as `real now - (virtual now - report time)`, so a client
//! using its real clock sees exactly the virtual age of a report.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Real time plus an advanceable offset.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    /// Current virtual time.
    pub(crate) fn now(&self) -> SystemTime {
        crate::timefmt::add(SystemTime::now(), self.offset())
    }

    /// How far virtual time is ahead of real time.
    pub(crate) fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves virtual time forward.
    pub(crate) fn advance(&self, by: Duration) {
        let mut o = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        *o = o.saturating_add(by);
    }

    /// Back to real time.
    pub(crate) fn reset(&self) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) = Duration::ZERO;
    }

    /// Maps a virtual instant to the real instant a client should see for it.
    pub(crate) fn to_real(&self, virtual_time: SystemTime) -> SystemTime {
        virtual_time
            .checked_sub(self.offset())
            .unwrap_or(virtual_time)
    }
}
