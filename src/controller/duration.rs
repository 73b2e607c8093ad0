//! Parsing the CRDs' durations (`30s`, `5m`, `1h30m`), the same grammar the schema's CEL accepts.

use std::time::Duration;

/// A duration string the schema should have rejected (kept as an error: nothing panics on input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be a duration such as 30s, 5m or 1h30m, got {value:?}")]
pub struct InvalidDuration {
    /// The spec field.
    pub field: &'static str,
    /// The value found.
    pub value: String,
}

/// Parses `([0-9]+(s|m|h))+`.
pub fn parse(field: &'static str, value: &str) -> Result<Duration, InvalidDuration> {
    let err = || InvalidDuration {
        field,
        value: value.to_owned(),
    };
    if value.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    if !digits.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_schema_grammar() {
        for (s, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5400),
            ("8h", 28_800),
            ("90m", 5400),
        ] {
            assert_eq!(parse("f", s).unwrap(), Duration::from_secs(secs), "{s}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "30",
            "m",
            "1d",
            "1h 30m",
            "-5m",
            "99999999999999999999h",
        ] {
            let e = parse("spec.x", s).unwrap_err();
            assert!(e.to_string().contains("spec.x must be a duration"), "{s}");
        }
    }
}
