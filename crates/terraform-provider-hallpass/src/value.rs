//! Terraform's values on the wire: `DynamicValue` holding MessagePack.
//!
//! An object is a MessagePack map from attribute name to value; null is nil;
//! a value not known until apply is an extension (type 0, or type 12 for
//! one with refinements — any extension reads as unknown here). Replies
//! carry every attribute of the schema, null where unset (see
//! [`crate::schema::Block::encode`]).

use rmpv::Value;
use serde_json::Value as Json;

use crate::proto::tfplugin6::DynamicValue;

/// A value Terraform sent that the provider cannot read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("Terraform sent no value")]
    Missing,
    #[error("Terraform sent the value as JSON only; this provider reads MessagePack")]
    JsonOnly,
    #[error("cannot read Terraform's MessagePack value: {0}")]
    Decode(String),
    #[error("expected an object, got {0}")]
    NotAnObject(String),
    #[error("attribute {name:?}: expected a string")]
    NotAString { name: String },
    #[error("attribute {name:?}: expected {expected}")]
    WrongType { name: String, expected: &'static str },
}

/// One attribute's value as Terraform knows it at this point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known<T> {
    Null,
    /// Decided later (at apply): nothing can be said about it yet.
    Unknown,
    Value(T),
}

impl<T> Known<T> {
    /// The value, if it is known and not null.
    pub fn value(self) -> Option<T> {
        match self {
            Known::Value(value) => Some(value),
            Known::Null | Known::Unknown => None,
        }
    }
}

/// An object value (a configuration block, a state), by attribute name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object {
    fields: Vec<(String, Value)>,
    /// The whole object is unknown (e.g. a provider block built from
    /// values of resources not yet created).
    unknown: bool,
}

impl Object {
    /// Reads a `DynamicValue`. A null object reads as an object whose
    /// attributes are all null.
    pub fn decode(value: Option<&DynamicValue>) -> Result<Self, ValueError> {
        let value = value.ok_or(ValueError::Missing)?;
        if value.msgpack.is_empty() {
            return Err(if value.json.is_empty() {
                ValueError::Missing
            } else {
                ValueError::JsonOnly
            });
        }
        let mut bytes = value.msgpack.as_slice();
        let decoded = rmpv::decode::read_value(&mut bytes).map_err(|e| ValueError::Decode(e.to_string()))?;
        match decoded {
            Value::Nil => Ok(Self::default()),
            Value::Ext(..) => Ok(Self {
                fields: Vec::new(),
                unknown: true,
            }),
            Value::Map(entries) => {
                let mut fields = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let Value::String(key) = key else {
                        return Err(ValueError::NotAnObject("a map with a key that is not a string".into()));
                    };
                    let key = key
                        .into_str()
                        .ok_or_else(|| ValueError::NotAnObject("a map with a key that is not UTF-8".into()))?;
                    fields.push((key, value));
                }
                Ok(Self { fields, unknown: false })
            }
            other => Err(ValueError::NotAnObject(kind(&other).into())),
        }
    }

    fn get(&self, name: &str) -> Known<&Value> {
        if self.unknown {
            return Known::Unknown;
        }
        match self.fields.iter().find(|(key, _)| key == name).map(|(_, value)| value) {
            None | Some(Value::Nil) => Known::Null,
            Some(Value::Ext(..)) => Known::Unknown,
            Some(value) => Known::Value(value),
        }
    }

    /// A string attribute.
    pub fn string(&self, name: &str) -> Result<Known<String>, ValueError> {
        match self.get(name) {
            Known::Null => Ok(Known::Null),
            Known::Unknown => Ok(Known::Unknown),
            Known::Value(Value::String(text)) => match text.as_str() {
                Some(text) => Ok(Known::Value(text.to_string())),
                None => Err(ValueError::NotAString { name: name.into() }),
            },
            Known::Value(_) => Err(ValueError::NotAString { name: name.into() }),
        }
    }
}

impl Object {
    /// Whether the whole object is null (a resource that does not exist,
    /// or is to be deleted): Terraform always sends every attribute of a
    /// non-null object, so one without fields is null.
    pub fn is_null(&self) -> bool {
        !self.unknown && self.fields.is_empty()
    }

    /// Whether any part of the value is still unknown.
    pub fn has_unknowns(&self) -> bool {
        self.unknown || self.fields.iter().any(|(_, value)| contains_unknown(value))
    }

    /// An attribute's raw value (nil when absent).
    pub fn raw(&self, name: &str) -> Value {
        if self.unknown {
            return Value::Ext(0, vec![0]);
        }
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map_or(Value::Nil, |(_, value)| value.clone())
    }

    /// The object with `name` set to `value`.
    pub fn with(mut self, name: &str, value: Value) -> Self {
        match self.fields.iter_mut().find(|(key, _)| key == name) {
            Some(field) => field.1 = value,
            None => self.fields.push((name.to_string(), value)),
        }
        self
    }

    /// The object as one MessagePack value.
    pub fn to_value(&self) -> Value {
        if self.unknown {
            return Value::Ext(0, vec![0]);
        }
        if self.fields.is_empty() {
            return Value::Nil;
        }
        Value::Map(
            self.fields
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), value.clone()))
                .collect(),
        )
    }

    fn typed<T>(
        &self,
        name: &str,
        expected: &'static str,
        read: impl Fn(&Value) -> Option<T>,
    ) -> Result<Known<T>, ValueError> {
        match self.get(name) {
            Known::Null => Ok(Known::Null),
            Known::Unknown => Ok(Known::Unknown),
            Known::Value(value) if contains_unknown(value) => Ok(Known::Unknown),
            Known::Value(value) => read(value).map(Known::Value).ok_or_else(|| ValueError::WrongType {
                name: name.into(),
                expected,
            }),
        }
    }

    /// A bool attribute.
    pub fn bool(&self, name: &str) -> Result<Known<bool>, ValueError> {
        self.typed(name, "a bool", Value::as_bool)
    }

    /// A whole-number attribute (Terraform may send a float or a decimal
    /// string for a number).
    pub fn integer(&self, name: &str) -> Result<Known<i64>, ValueError> {
        self.typed(name, "a whole number", |value| match value {
            Value::Integer(n) => n.as_i64(),
            Value::F64(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::F32(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::String(text) => text.as_str().and_then(|t| t.parse().ok()),
            _ => None,
        })
    }

    /// A list (or set) of strings; unknown if any element is.
    pub fn strings(&self, name: &str) -> Result<Known<Vec<String>>, ValueError> {
        self.typed(name, "a list of strings", |value| {
            value
                .as_array()?
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect()
        })
    }

    /// A map of strings; unknown if any value is.
    pub fn string_map(&self, name: &str) -> Result<Known<Vec<(String, String)>>, ValueError> {
        self.typed(name, "a map of strings", |value| {
            value
                .as_map()?
                .iter()
                .map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
    }

    /// A nested object (a single nested block, an object attribute).
    pub fn object(&self, name: &str) -> Result<Known<Object>, ValueError> {
        match self.get(name) {
            Known::Null => Ok(Known::Null),
            Known::Unknown => Ok(Known::Unknown),
            Known::Value(value) => {
                let dynamic = to_dynamic(value);
                Object::decode(Some(&dynamic))
                    .map(Known::Value)
                    .map_err(|_| ValueError::WrongType {
                        name: name.into(),
                        expected: "an object",
                    })
            }
        }
    }
}

impl Object {
    /// A list of nested objects (a repeated block); unknown if the list is.
    pub fn objects(&self, name: &str) -> Result<Known<Vec<Object>>, ValueError> {
        let wrong = || ValueError::WrongType {
            name: name.into(),
            expected: "a list of objects",
        };
        match self.get(name) {
            Known::Null => Ok(Known::Null),
            Known::Unknown => Ok(Known::Unknown),
            Known::Value(Value::Array(items)) => items
                .iter()
                .map(|item| Object::decode(Some(&to_dynamic(item))).map_err(|_| wrong()))
                .collect::<Result<Vec<_>, _>>()
                .map(Known::Value),
            Known::Value(_) => Err(wrong()),
        }
    }
}

impl Object {
    /// A `dynamic` attribute as JSON: Terraform sends a known value of
    /// type `dynamic` as `[type as JSON bytes, value]`. Unknown if any part
    /// of it is.
    pub fn json(&self, name: &str) -> Result<Known<Json>, ValueError> {
        let wrong = || ValueError::WrongType {
            name: name.into(),
            expected: "a value with its type",
        };
        match self.get(name) {
            Known::Null => Ok(Known::Null),
            Known::Unknown => Ok(Known::Unknown),
            Known::Value(value) if contains_unknown(value) => Ok(Known::Unknown),
            Known::Value(Value::Array(pair)) if pair.len() == 2 => {
                let ty: Json = match &pair[0] {
                    Value::Binary(bytes) => serde_json::from_slice(bytes).map_err(|_| wrong())?,
                    Value::String(text) => serde_json::from_slice(text.as_bytes()).map_err(|_| wrong())?,
                    _ => return Err(wrong()),
                };
                match to_json(&ty, &pair[1]) {
                    Some(Json::Null) => Ok(Known::Null),
                    Some(json) => Ok(Known::Value(json)),
                    None => Err(wrong()),
                }
            }
            Known::Value(_) => Err(wrong()),
        }
    }
}

/// A value of cty type `ty` (in Terraform's JSON type notation) as JSON;
/// whole numbers as integers, so that `5432` and `5432.0` compare equal.
fn to_json(ty: &Json, value: &Value) -> Option<Json> {
    let element = |index: usize| -> Option<&Json> {
        match ty {
            Json::Array(parts) => parts.get(1),
            _ => None,
        }
        .and_then(|inner| match inner {
            Json::Array(types) => types.get(index),
            other => Some(other),
        })
    };
    Some(match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(n) => n.as_i64().map(Json::from).or_else(|| n.as_u64().map(Json::from))?,
        Value::F32(f) => number(f64::from(*f))?,
        Value::F64(f) => number(*f)?,
        Value::String(text) => {
            let text = text.as_str()?;
            if ty == "number" {
                match text.parse::<i64>() {
                    Ok(n) => Json::from(n),
                    Err(_) => number(text.parse().ok()?)?,
                }
            } else {
                Json::from(text)
            }
        }
        Value::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| to_json(element(index)?, item))
                .collect::<Option<_>>()?,
        ),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, item) in entries {
                let key = key.as_str()?;
                let item_type = match ty {
                    Json::Array(parts) if parts.first().is_some_and(|k| k == "object") => parts.get(1)?.get(key)?,
                    Json::Array(parts) => parts.get(1)?,
                    _ => return None,
                };
                map.insert(key.to_string(), to_json(item_type, item)?);
            }
            Json::Object(map)
        }
        Value::Binary(_) | Value::Ext(..) => return None,
    })
}

/// `json` with whole numbers as integers, comparable with what
/// [`Object::json`] reads (`5432.0` means `5432`).
pub fn json_meaning(json: &Json) -> Json {
    match json {
        Json::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => {
            n.as_f64().and_then(number).unwrap_or_else(|| json.clone())
        }
        Json::Array(items) => Json::Array(items.iter().map(json_meaning).collect()),
        Json::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), json_meaning(v))).collect()),
        other => other.clone(),
    }
}

fn number(f: f64) -> Option<Json> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Json::from(f as i64))
    } else {
        serde_json::Number::from_f64(f).map(Json::Number)
    }
}

/// A JSON value as a `dynamic` attribute's value: `[type, value]`, with
/// objects as cty objects and arrays as tuples (what HCL's `{ }` and
/// `[ ]` make).
pub fn dynamic_from_json(json: &Json) -> Value {
    let (ty, value) = typed(json);
    Value::Array(vec![Value::Binary(ty.to_string().into_bytes()), value])
}

fn typed(json: &Json) -> (Json, Value) {
    match json {
        Json::Null => (Json::from("dynamic"), Value::Nil),
        Json::Bool(b) => (Json::from("bool"), Value::from(*b)),
        Json::Number(n) => {
            let value = if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            };
            (Json::from("number"), value)
        }
        Json::String(text) => (Json::from("string"), Value::from(text.as_str())),
        Json::Array(items) => {
            let (types, values): (Vec<_>, Vec<_>) = items.iter().map(typed).unzip();
            (serde_json::json!(["tuple", types]), Value::Array(values))
        }
        Json::Object(map) => {
            let mut types = serde_json::Map::new();
            let mut entries = Vec::with_capacity(map.len());
            for (key, item) in map {
                let (ty, value) = typed(item);
                types.insert(key.clone(), ty);
                entries.push((Value::from(key.as_str()), value));
            }
            (serde_json::json!(["object", types]), Value::Map(entries))
        }
    }
}

fn contains_unknown(value: &Value) -> bool {
    match value {
        Value::Ext(..) => true,
        Value::Array(items) => items.iter().any(contains_unknown),
        Value::Map(entries) => entries.iter().any(|(_, v)| contains_unknown(v)),
        _ => false,
    }
}

/// MessagePack bytes of `value`, wrapped for the wire.
pub fn to_dynamic(value: &Value) -> DynamicValue {
    let mut msgpack = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut msgpack, value);
    DynamicValue {
        msgpack,
        json: Vec::new(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "null",
        Value::Boolean(_) => "a bool",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "a number",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary data",
        Value::Array(_) => "a list",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an unknown value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(entries: Vec<(&str, Value)>) -> DynamicValue {
        to_dynamic(&Value::Map(
            entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        ))
    }

    #[test]
    fn strings_nulls_and_unknowns() {
        let value = object(vec![
            ("address", Value::from("http://127.0.0.1:7070")),
            ("token", Value::Nil),
            ("ca_file", Value::Ext(0, vec![0])),
            // A refined unknown (extension 12) is unknown too.
            ("other", Value::Ext(12, vec![0x81, 0x01, 0xc2])),
            ("count", Value::from(3)),
        ]);
        let object = Object::decode(Some(&value)).unwrap();
        assert_eq!(
            object.string("address").unwrap(),
            Known::Value("http://127.0.0.1:7070".into())
        );
        assert_eq!(object.string("token").unwrap(), Known::Null);
        assert_eq!(object.string("absent").unwrap(), Known::Null);
        assert_eq!(object.string("ca_file").unwrap(), Known::Unknown);
        assert_eq!(object.string("other").unwrap(), Known::Unknown);
        assert_eq!(
            object.string("count").unwrap_err(),
            ValueError::NotAString { name: "count".into() }
        );
    }

    #[test]
    fn whole_object_null_or_unknown() {
        let null = Object::decode(Some(&to_dynamic(&Value::Nil))).unwrap();
        assert_eq!(null.string("address").unwrap(), Known::Null);
        let unknown = Object::decode(Some(&to_dynamic(&Value::Ext(0, vec![])))).unwrap();
        assert_eq!(unknown.string("address").unwrap(), Known::Unknown);
    }

    #[test]
    fn unreadable_values_are_errors() {
        assert_eq!(Object::decode(None).unwrap_err(), ValueError::Missing);
        let json = DynamicValue {
            msgpack: vec![],
            json: b"{}".to_vec(),
        };
        assert_eq!(Object::decode(Some(&json)).unwrap_err(), ValueError::JsonOnly);
        let list = to_dynamic(&Value::Array(vec![]));
        assert!(matches!(Object::decode(Some(&list)), Err(ValueError::NotAnObject(_))));
        let truncated = DynamicValue {
            msgpack: vec![0x81],
            json: vec![],
        };
        assert!(matches!(Object::decode(Some(&truncated)), Err(ValueError::Decode(_))));
    }

    #[test]
    fn dynamic_values_round_trip_as_json_with_numbers_as_numbers() {
        let json = serde_json::json!({"host": "db", "port": 5432, "tls": true, "users": ["a", "b"],
            "nested": {"ratio": 0.5, "none": null}});
        let read = Object::decode(Some(&object(vec![("config", dynamic_from_json(&json))]))).unwrap();
        assert_eq!(read.json("config").unwrap(), Known::Value(json.clone()));
        // Terraform's own spelling: the type as a string, a number as a
        // float or a decimal string.
        let terraform = Value::Array(vec![
            Value::from(r#"["object",{"a":"number","b":"number"}]"#),
            Value::Map(vec![
                (Value::from("a"), Value::F64(5432.0)),
                (Value::from("b"), Value::from("12345678901234567890")),
            ]),
        ]);
        let read = Object::decode(Some(&object(vec![("config", terraform)]))).unwrap();
        let read = read.json("config").unwrap().value().unwrap();
        assert_eq!(read["a"], serde_json::json!(5432));
        assert_eq!(
            read,
            json_meaning(&serde_json::json!({"a": 5432.0, "b": 1.2345678901234567e19}))
        );
        let unknown = Object::decode(Some(&object(vec![("config", Value::Ext(0, vec![0]))]))).unwrap();
        assert_eq!(unknown.json("config").unwrap(), Known::Unknown);
        let bare = Object::decode(Some(&object(vec![("config", Value::from("x"))]))).unwrap();
        assert!(bare.json("config").is_err());
    }
}
