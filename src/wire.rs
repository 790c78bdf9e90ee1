//! Serde helpers shared by every domain that reads or stores outside data: lenient numbers (Halo and Azure send
//! ids as numbers or strings) and Unix seconds stored as text.

use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// A number or a numeric string.
pub fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds as a string: Table Storage infers Int32 for bare JSON numbers, which a timestamp outgrows.
pub(crate) mod unix_string {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = Value::deserialize(d)?;
        lenient_i64(&v).ok_or_else(|| serde::de::Error::custom("expected unix seconds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_numeric_strings_are_read() {
        assert_eq!(lenient_i64(&serde_json::json!(12)), Some(12));
        assert_eq!(lenient_i64(&serde_json::json!(" 12 ")), Some(12));
        assert_eq!(lenient_i64(&serde_json::json!("x")), None);
        assert_eq!(lenient_i64(&serde_json::json!(null)), None);
    }
}
