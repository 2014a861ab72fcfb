//! Whole numbers as JSON Schema counts them: `3` and `3.0` are the same integer, so a
//! request the OpenAPI document calls valid is not refused for writing one as the other.

use serde::de::{Deserialize, Deserializer, Error};

fn from_number<E: Error, T: TryFrom<i64>>(n: serde_json::Number, expected: &str) -> Result<T, E> {
    let whole = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= -9.2e18 && *f <= 9.2e18)
            .map(|f| f as i64)
    });
    whole
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| E::custom(format!("invalid value: number, expected {expected}")))
}

/// A required whole number (`deserialize_with`); `T` names its range in errors.
pub fn value<'de, D: Deserializer<'de>, T: TryFrom<i64> + Named>(de: D) -> Result<T, D::Error> {
    from_number(serde_json::Number::deserialize(de)?, T::NAME)
}

/// An optional whole number: absent or `null` is `None` (use with `#[serde(default)]`).
pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i64> + Named>(
    de: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(de)?
        .map(|n| from_number(n, T::NAME))
        .transpose()
}

/// The serde name of an integer type, for messages in the library's usual words.
pub trait Named {
    const NAME: &'static str;
}

impl Named for i64 {
    const NAME: &'static str = "i64";
}

impl Named for u32 {
    const NAME: &'static str = "u32";
}

impl Named for u64 {
    const NAME: &'static str = "u64";
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::value")]
        a: i64,
        #[serde(default, deserialize_with = "super::option")]
        b: Option<u32>,
    }

    #[test]
    fn integral_floats_are_integers() {
        let t: T = serde_json::from_str(r#"{"a": 3.0, "b": 7}"#).unwrap();
        assert_eq!((t.a, t.b), (3, Some(7)));
        let t: T = serde_json::from_str(r#"{"a": -4, "b": null}"#).unwrap();
        assert_eq!((t.a, t.b), (-4, None));
        let t: T = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        assert_eq!(t.b, None);
        assert!(serde_json::from_str::<T>(r#"{"a": 1.5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a": "1"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a": 1, "b": -1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a": 1e300}"#).is_err());
    }
}
