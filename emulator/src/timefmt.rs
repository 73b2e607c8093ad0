//! Time formatting: RFC 3339, the Azure Local attestation timestamp (`6/12/2024 8:49:33 PM`) and
//! HTTP-date. All in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Civil date/time parts in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) nanos: u32,
}

/// Seconds since the Unix epoch (negative before 1970).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[allow(clippy::many_single_char_names)] // civil_from_days notation
pub(crate) fn civil(t: SystemTime) -> Civil {
    let secs = unix_seconds(t);
    let nanos = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
    Civil {
        year: if m <= 2 { y + 1 } else { y },
        month: to_u32(m),
        day: to_u32(d),
        hour: to_u32(rem / 3600),
        minute: to_u32((rem % 3600) / 60),
        second: to_u32(rem % 60),
        nanos,
    }
}

/// `2024-06-12T20:49:33.1234567Z` (seven fractional digits, as ARM writes them).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 100
    )
}

/// Formats a time the way Azure Local reports `attestationStatus.properties.timestamp`:
/// `M/d/yyyy h:mm:ss tt` (en-US, 12-hour clock, no time zone; the emulator uses UTC).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_718_225_373); // 2024-06-12 20:49:33 UTC
/// assert_eq!(azure_emulator::format_status_timestamp(t), "6/12/2024 8:49:33 PM");
/// ```
pub fn format_status_timestamp(t: SystemTime) -> String {
    let c = civil(t);
    let (h12, ampm) = match c.hour {
        0 => (12, "AM"),
        1..=11 => (c.hour, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{}/{}/{} {}:{:02}:{:02} {}",
        c.month, c.day, c.year, h12, c.minute, c.second, ampm
    )
}

/// HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// `t + d`, saturating.
pub(crate) fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_718_225_373);
        assert_eq!(format_status_timestamp(t), "6/12/2024 8:49:33 PM");
        assert_eq!(rfc3339(t), "2024-06-12T20:49:33.0000000Z");
        let midnight = UNIX_EPOCH + Duration::from_secs(1_704_067_205); // 2024-01-01 00:00:05
        assert_eq!(format_status_timestamp(midnight), "1/1/2024 12:00:05 AM");
        let noon = UNIX_EPOCH + Duration::from_hours(473_364); // 2024-01-01 12:00:00
        assert_eq!(format_status_timestamp(noon), "1/1/2024 12:00:00 PM");
        assert_eq!(http_date(t), "Wed, 12 Jun 2024 20:49:33 GMT");
    }
}
