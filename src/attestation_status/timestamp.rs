//! Parsing the attestation timestamp Azure reports (pure).
//!
//! Azure's `timestamp` has no declared format. Seen: `6/12/2024 8:49:33 PM` (the product
//! documentation: US month/day, 12-hour clock, no zone) and `2023/11/10 9:48` (the specs'
//! examples). Both are taken as UTC. RFC 3339 is accepted too. Anything else is an error that
//! carries the raw value, never a panic; so is a time before year 0, which no Kubernetes status
//! can hold (`metav1.Time` is RFC 3339 with a four-digit year).

use k8s_openapi::jiff::{Timestamp, civil::DateTime, tz::TimeZone};

/// A timestamp in none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "attestation timestamp {raw:?} is in no known form (M/d/yyyy h:mm:ss AM|PM, yyyy/MM/dd H:mm[:ss] or RFC 3339)"
)]
pub struct InvalidTimestamp {
    /// The value as Azure sent it.
    pub raw: String,
}

/// The zone-less forms, tried in order.
const FORMATS: &[&str] = &[
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
];

/// 0000-01-01T00:00:00Z, the earliest time a status can hold.
const EARLIEST_SECOND: i64 = -62_167_219_200;

/// Parses Azure's attestation timestamp (see the module docs).
pub fn parse(raw: &str) -> Result<Timestamp, InvalidTimestamp> {
    let s = raw.trim();
    let err = || InvalidTimestamp {
        raw: raw.to_owned(),
    };
    if s.is_empty() || s.len() > 64 {
        return Err(err());
    }
    let parsed = s.parse::<Timestamp>().ok().or_else(|| {
        FORMATS.iter().find_map(|format| {
            let dt = DateTime::strptime(format, s).ok()?;
            Some(dt.to_zoned(TimeZone::UTC).ok()?.timestamp())
        })
    });
    parsed
        .filter(|ts| ts.as_second() >= EARLIEST_SECOND)
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn known_forms() {
        let cases = [
            ("6/12/2024 8:49:33 PM", "2024-06-12T20:49:33Z"),
            ("06/12/2024 08:49:33 AM", "2024-06-12T08:49:33Z"),
            ("12/31/2024 12:00:00 AM", "2024-12-31T00:00:00Z"),
            ("12/31/2024 12:00:00 PM", "2024-12-31T12:00:00Z"),
            ("2023/11/10 9:48", "2023-11-10T09:48:00Z"),
            ("2023/11/10 21:48:07", "2023-11-10T21:48:07Z"),
            ("2024-06-12T20:49:33Z", "2024-06-12T20:49:33Z"),
            ("2024-06-12T22:49:33+02:00", "2024-06-12T20:49:33Z"),
            (" 6/12/2024 8:49:33 PM ", "2024-06-12T20:49:33Z"),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).unwrap(), utc(want), "{raw}");
        }
    }

    #[test]
    fn anything_else_is_an_error_with_the_raw_value() {
        for raw in [
            "",
            "yesterday",
            "13/45/2024 8:49:33 PM",
            "2024-06-12",
            "0",
            "6/12/2024 25:00:00 PM",
            // Regression (property tests, issue 11): accepted, then refused by the API server in
            // status.attestedTime, so every status write failed.
            "-000001-01-01T00:00:00Z",
            "1/1/-5 1:00:00 PM",
        ] {
            let e = parse(raw).unwrap_err();
            assert_eq!(e.raw, raw);
        }
    }

    #[test]
    #[allow(clippy::many_single_char_names, clippy::cast_possible_truncation)] // a generator
    fn never_panics_on_arbitrary_input() {
        // A small deterministic property test: random printable strings and mutations of valid
        // forms either parse or give an error, and a parsed value round-trips through RFC 3339.
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "0123456789/: APMZT+-.x".chars().collect();
        for _ in 0..5000 {
            let len = (next() % 30) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(ts) = parse(&s) {
                assert_eq!(parse(&ts.to_string()).unwrap(), ts);
            }
        }
        for _ in 0..2000 {
            let (m, d, y) = (next() % 14, next() % 33, 1990 + next() % 80);
            let (h, min, sec) = (next() % 14, next() % 61, next() % 61);
            let s = format!("{m}/{d}/{y} {h}:{min:02}:{sec:02} PM");
            let valid = (1..=12).contains(&m)
                && (1..=28).contains(&d)
                && (1..=12).contains(&h)
                && min < 60
                && sec < 60;
            if valid {
                assert!(parse(&s).is_ok(), "{s}");
            }
        }
    }
}
