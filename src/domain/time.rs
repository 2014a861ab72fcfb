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
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}); example: 2026-11-25T09:30:00Z"))
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
}
