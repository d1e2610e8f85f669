//! The input document, from `serde_json` to regorus.
//!
//! regorus's own `From<serde_json::Value>` takes the value by ownership and
//! goes through serde's deserializer; walking the borrowed value directly
//! saves the clone and a third to a half of the conversion time (measured:
//! 2.4 µs against 3.7–4.6 µs for the documented input), which counts when a
//! whole decision takes about 20 µs.

use std::collections::BTreeMap;

use regorus::Value;

pub(crate) fn to_regorus(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                // Without serde_json's arbitrary precision every other number
                // is a finite f64.
                n.as_f64().map_or(Value::Null, Value::from)
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(to_regorus).collect::<Vec<_>>()),
        serde_json::Value::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), to_regorus(value)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_regorus_does() {
        let json = serde_json::json!({
            "a": [1, -2, 2.5, "x", null, true],
            "b": {"c": {}, "d": []},
            "big": 18446744073709551615u64,
        });
        assert_eq!(to_regorus(&json), Value::from(json.clone()));
    }
}
