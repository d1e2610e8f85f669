//! Reads an event's `data` refusing objects that name a member twice.
//!
//! serde_json keeps the last of two equal names, other readers may keep the
//! first; a line carrying both could show one value to a person and hash
//! the other. RFC 8785 input must have unique names, so such a line is not
//! a valid audit event at all.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// `deserialize_with` for [`super::AuditEvent::data`].
pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    UniqueKeys.deserialize(deserializer)
}

struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value whose objects name each member once")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format!(
                    "the member name {name:?} appears twice in one object of `data`"
                )));
            }
            let item = map.next_value_seed(UniqueKeys)?;
            members.insert(name, item);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::super::AuditEvent;

    fn line(data: &str) -> String {
        format!(
            r#"{{"seq":1,"time":"t","actor":"a","kind":"k","request_id":null,"data":{data},"prev_hash":"{0}","hash":"{0}"}}"#,
            "0".repeat(64)
        )
    }

    #[test]
    fn a_repeated_member_name_makes_the_line_unreadable() {
        let error =
            serde_json::from_str::<AuditEvent>(&line(r#"{"role":"read","x":[{"role":"admin","role":"read"}]}"#))
                .unwrap_err();
        assert!(error.to_string().contains("\"role\" appears twice"), "{error}");
    }

    #[test]
    fn ordinary_data_reads_as_serde_json_would() {
        let text = r#"{"a":[1,-2,2.5,true,null,"é"],"b":{"c":{}},"big":18446744073709551615}"#;
        let event: AuditEvent = serde_json::from_str(&line(text)).unwrap();
        assert_eq!(event.data, serde_json::from_str::<serde_json::Value>(text).unwrap());
    }

    #[test]
    fn nesting_is_limited_to_127_levels_counting_the_line() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<AuditEvent>(&line(&nested(126))).is_ok());
        assert!(serde_json::from_str::<AuditEvent>(&line(&nested(127))).is_err());
    }
}
