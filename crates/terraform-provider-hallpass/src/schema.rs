//! Schemas: the attributes of the provider block, of each data source and
//! (later) each resource, as the provider declares them and as Terraform
//! receives them in `GetProviderSchema`.
//!
//! Attribute types travel as JSON in Terraform's type notation
//! (`"string"`, `["list","string"]`, ...). Terraform does not survive a
//! malformed one, so they are only ever made from [`Type`].

use rmpv::Value;

use crate::proto::tfplugin6::{self, DynamicValue, StringKind};
use crate::value::to_dynamic;

/// An attribute's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    /// An object with exactly these attributes.
    Object(Vec<(&'static str, Type)>),
    /// Any type, decided by the value (sent as `[type, value]`: see
    /// [`crate::value::Object::json`]).
    Dynamic,
}

impl Type {
    /// The type in Terraform's JSON notation.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Type::String => "string".into(),
            Type::Number => "number".into(),
            Type::Bool => "bool".into(),
            Type::Dynamic => "dynamic".into(),
            Type::List(element) => serde_json::json!(["list", element.to_json()]),
            Type::Set(element) => serde_json::json!(["set", element.to_json()]),
            Type::Map(element) => serde_json::json!(["map", element.to_json()]),
            Type::Object(attributes) => {
                let attributes: serde_json::Map<String, serde_json::Value> = attributes
                    .iter()
                    .map(|(name, ty)| ((*name).to_string(), ty.to_json()))
                    .collect();
                serde_json::json!(["object", attributes])
            }
        }
    }
}

/// Who sets an attribute: the configuration, the provider, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
    /// Set by the provider only.
    Computed,
    /// Set by the configuration, else by the provider.
    OptionalComputed,
}

/// One attribute of a block.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: Type,
    pub presence: Presence,
    /// Hidden in plan output and logs.
    pub sensitive: bool,
    /// Only in the configuration: never in a plan or a state (Terraform
    /// sends it to the provider in `config` alone).
    pub write_only: bool,
    /// Shown by editors and documentation generators; Markdown.
    pub description: &'static str,
}

impl Attribute {
    pub fn new(name: &'static str, ty: Type, presence: Presence, description: &'static str) -> Self {
        Self {
            name,
            ty,
            presence,
            sensitive: false,
            write_only: false,
            description,
        }
    }

    pub fn write_only(self) -> Self {
        Self {
            write_only: true,
            ..self
        }
    }

    pub fn sensitive(self) -> Self {
        Self {
            sensitive: true,
            ..self
        }
    }

    fn to_proto(&self) -> tfplugin6::SchemaAttribute {
        use Presence::*;
        tfplugin6::SchemaAttribute {
            name: self.name.to_string(),
            r#type: self.ty.to_json().to_string().into_bytes(),
            description: self.description.to_string(),
            required: self.presence == Required,
            optional: matches!(self.presence, Optional | OptionalComputed),
            computed: matches!(self.presence, Computed | OptionalComputed),
            sensitive: self.sensitive,
            description_kind: StringKind::Markdown.into(),
            deprecated: false,
            write_only: self.write_only,
        }
    }
}

/// A block: the schema of the provider, a data source or a resource.
#[derive(Debug, Clone)]
pub struct Block {
    /// Bumped when a resource's stored state changes shape.
    pub version: i64,
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
    /// Blocks nested in this one (`approval { ... }`, `stage { ... }`).
    pub blocks: Vec<NestedBlock>,
}

/// A nested block: at most once (an object, or null when the configuration
/// leaves it out), or repeated (a list of objects, in order).
#[derive(Debug, Clone)]
pub struct NestedBlock {
    pub name: &'static str,
    pub block: Block,
    /// Repeated, as a list; else a single block.
    pub list: bool,
    /// For a list: the fewest blocks the configuration must have.
    pub min_items: i64,
}

impl Block {
    pub fn to_proto(&self) -> tfplugin6::Schema {
        tfplugin6::Schema {
            version: self.version,
            block: Some(self.block_proto()),
        }
    }

    fn block_proto(&self) -> tfplugin6::SchemaBlock {
        tfplugin6::SchemaBlock {
            version: self.version,
            attributes: self.attributes.iter().map(Attribute::to_proto).collect(),
            block_types: self
                .blocks
                .iter()
                .map(|nested| tfplugin6::NestedBlock {
                    type_name: nested.name.to_string(),
                    block: Some(nested.block.block_proto()),
                    nesting: if nested.list {
                        tfplugin6::nested_block::NestingMode::List.into()
                    } else {
                        tfplugin6::nested_block::NestingMode::Single.into()
                    },
                    min_items: nested.min_items,
                    max_items: 0,
                })
                .collect(),
            description: self.description.to_string(),
            description_kind: StringKind::Markdown.into(),
            deprecated: false,
        }
    }

    /// The names of the attributes and nested blocks, in schema order.
    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attributes
            .iter()
            .map(|a| a.name)
            .chain(self.blocks.iter().map(|b| b.name))
    }

    /// An object of this block with the given values and null for every
    /// other attribute: Terraform wants every attribute present.
    pub fn encode(&self, values: Vec<(&str, Value)>) -> DynamicValue {
        to_dynamic(&self.object(values))
    }

    /// [`Block::encode`] before the wire: the MessagePack object.
    pub fn object(&self, mut values: Vec<(&str, Value)>) -> Value {
        debug_assert!(
            values.iter().all(|(name, _)| self.names().any(|n| n == *name)),
            "a value for an attribute outside the schema"
        );
        let entries = self
            .names()
            .map(|attribute| {
                let value = values
                    .iter()
                    .position(|(name, _)| *name == attribute)
                    .map(|index| values.swap_remove(index).1)
                    .unwrap_or(Value::Nil);
                (Value::from(attribute), value)
            })
            .collect();
        Value::Map(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Known, Object};

    #[test]
    fn types_in_terraforms_json_notation() {
        assert_eq!(Type::String.to_json().to_string(), r#""string""#);
        assert_eq!(
            Type::Map(Box::new(Type::List(Box::new(Type::Number))))
                .to_json()
                .to_string(),
            r#"["map",["list","number"]]"#
        );
        assert_eq!(
            Type::Set(Box::new(Type::Bool)).to_json().to_string(),
            r#"["set","bool"]"#
        );
    }

    fn block() -> Block {
        Block {
            version: 0,
            description: "test",
            attributes: vec![
                Attribute::new("a", Type::String, Presence::Required, "A."),
                Attribute::new("b", Type::String, Presence::OptionalComputed, "B.").sensitive(),
                Attribute::new("c", Type::String, Presence::Computed, "C."),
            ],
            blocks: Vec::new(),
        }
    }

    #[test]
    fn presence_maps_to_the_three_flags() {
        let schema = block().to_proto();
        let attributes = schema.block.unwrap().attributes;
        let flags: Vec<_> = attributes
            .iter()
            .map(|a| (a.required, a.optional, a.computed, a.sensitive))
            .collect();
        assert_eq!(
            flags,
            [
                (true, false, false, false),
                (false, true, true, true),
                (false, false, true, false)
            ]
        );
        assert!(attributes.iter().all(|a| !a.description.is_empty()));
    }

    #[test]
    fn encode_sends_every_attribute() {
        let encoded = block().encode(vec![("c", Value::from("x"))]);
        let mut bytes = encoded.msgpack.as_slice();
        let Value::Map(entries) = rmpv::decode::read_value(&mut bytes).unwrap() else {
            panic!("not a map");
        };
        assert_eq!(entries.len(), 3);
        let object = Object::decode(Some(&encoded)).unwrap();
        assert_eq!(object.string("a").unwrap(), Known::Null);
        assert_eq!(object.string("c").unwrap(), Known::Value("x".into()));
    }
}
