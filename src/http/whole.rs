//! Whole numbers in JSON bodies, read the way JSON Schema counts them: `2` and `2.0` are both the
//! integer 2 (a generated client, or a language with only floats, may send either), and `2.5`
//! is not a whole number. serde alone refuses `2.0` for an integer field.

use serde::{Deserialize, Deserializer};

/// `n` as the text a form would carry: a whole number without its `.0`, else as JSON writes it.
pub(crate) fn text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// A non-negative whole number, `2` or `2.0`.
fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number from 0"
        ))),
    }
}

/// For `#[serde(deserialize_with)]` on a `u32`.
pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(d)?;
    u32::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
}

/// For `#[serde(deserialize_with)]` on a `u64`.
pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(d)
}

/// For `#[serde(default, deserialize_with)]` on an `Option<u32>`; `null` is `None`.
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => u32(serde_json::Value::Number(n))
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_u32")]
        n: Option<u32>,
    }

    #[test]
    fn a_whole_number_is_read_with_or_without_its_fraction_and_nothing_else_is() {
        let read = |json: &str| serde_json::from_str::<T>(json).map(|t| t.n);
        assert_eq!(read(r#"{"n": 2}"#).unwrap(), Some(2));
        assert_eq!(read(r#"{"n": 2.0}"#).unwrap(), Some(2));
        assert_eq!(read(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(read(r#"{}"#).unwrap(), None);
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 5000000000}"#,
            r#"{"n": "2"}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let text = |json: &str| super::text(&serde_json::from_str(json).unwrap());
        assert_eq!(
            (text("2.0"), text("2"), text("2.5")),
            ("2".into(), "2".into(), "2.5".into())
        );
    }
}
