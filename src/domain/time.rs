//! Times are stored as unix milliseconds (UTC) and shown as RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};

/// Unix time in milliseconds, UTC.
pub type Millis = i64;

pub fn format_rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .map_err(|_| format!("must be an RFC 3339 time, such as 2026-11-25T09:30:00Z (not {s:?})"))
}

/// Parses a span such as `90d`, `12h`, `30m`, `45s` or `2w` into milliseconds: a positive
/// whole number of at most six digits and one unit.
pub fn parse_span(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    let example = "use a whole number and a unit: 90d, 12h, 30m, 45s or 2w";
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit; {example}"))?;
    let (number, unit) = s.split_at(split);
    if number.starts_with('0') {
        return Err(format!("{s:?} starts with 0; {example}"));
    }
    if number.len() > 6 {
        return Err(format!("{s:?} has more than six digits; {example}"));
    }
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number; {example}"))?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(format!("{s:?} has an unknown unit {unit:?}; {example}")),
    };
    match number * unit_ms {
        0 => Err(format!("{s:?} is zero; {example}")),
        ms => Ok(ms),
    }
}

/// Serde helpers so JSON shows RFC 3339 strings for millisecond fields.
pub mod serde_rfc3339 {
    use super::{Millis, format_rfc3339};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }

    pub mod option {
        use super::super::{Millis, format_rfc3339};
        use serde::Serializer;

        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&format_rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = parse_rfc3339("2026-11-25T09:30:00.250Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-11-25T09:30:00.250Z");
        assert_eq!(
            parse_rfc3339("2026-11-25T10:30:00+01:00").unwrap(),
            ms - 250
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_span("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_span("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_span("45s"), Ok(45_000));
        assert_eq!(parse_span("999999w"), Ok(999_999 * 7 * 86_400_000));
        for bad in ["", "d", "90", "0d", "-1d", "1y", "1000000w", "1.5d", "01d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
