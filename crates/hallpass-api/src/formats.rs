//! Schemas of the strings the server checks beyond "a string": names,
//! subjects, durations and free text. They exist only for the OpenAPI
//! document (fields name them with `#[schema(value_type = ...)]`; on the
//! wire the fields stay plain strings), so that a schema-valid request is one
//! the server's validators accept and a client can check input before
//! sending it.
//!
//! Each pattern restates one validator and is built from its constants;
//! `scripts/lib/openapi-check` (schemathesis) sends values on both sides of
//! every pattern to the real server, so a pattern that drifts from its
//! validator fails there.

use hallpass_core::text::{MAX_COMMENT_CHARS, MAX_REASON_CHARS, MAX_TICKET_CHARS};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};

/// Longest name (`hallpass_core::subject::is_valid_name`).
const MAX_NAME_CHARS: usize = 64;
/// Largest policy source, in bytes: the server refuses larger ones.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// Characters Rust's `str::trim` removes (Unicode `White_Space`), as a
/// character-class body in the syntax ECMA-262, Python and Rust share.
const WHITE_SPACE: &str = r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Characters free text may not hold once trimmed
/// (`hallpass_core::text::is_disguising_char`): C0 and C1 controls, DEL,
/// and the bidirectional formatting characters.
const DISGUISING: &str = hallpass_core::text::DISGUISING_PATTERN;

fn string_schema(description: String, pattern: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

fn name_pattern() -> String {
    format!("[A-Za-z0-9][A-Za-z0-9._@-]{{0,{}}}", MAX_NAME_CHARS - 1)
}

/// Text with at least one character that is not white space.
fn non_blank_pattern() -> String {
    format!("^[{WHITE_SPACE}]*[^{WHITE_SPACE}][\\s\\S]*$")
}

/// Text that trims to 1..=`max` characters, none of them disguising.
fn required_text_pattern(max: usize) -> String {
    let inner = format!("[^{DISGUISING}]");
    let edge = format!("[^{DISGUISING}{WHITE_SPACE}]");
    format!(
        "^[{WHITE_SPACE}]*{edge}(?:{inner}{{0,{}}}{edge})?[{WHITE_SPACE}]*$",
        max - 2
    )
}

/// Like [`required_text_pattern`], or only white space (which means "none").
fn optional_text_pattern(max: usize) -> String {
    let inner = format!("[^{DISGUISING}]");
    let edge = format!("[^{DISGUISING}{WHITE_SPACE}]");
    format!(
        "^[{WHITE_SPACE}]*(?:{edge}(?:{inner}{{0,{}}}{edge})?[{WHITE_SPACE}]*)?$",
        max - 2
    )
}

/// Declares a schema-only type: its component name is the type's name.
macro_rules! string_format {
    ($(#[$doc:meta])* $name:ident => $description:expr, $pattern:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_schema($description, $pattern)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

string_format! {
    /// The name of a principal, group, target, role, approval flow or policy.
    Name => format!(
        "1-{MAX_NAME_CHARS} letters, digits, '.', '_', '-' or '@', starting with a letter or digit."
    ),
    format!("^{}$", name_pattern())
}

string_format! {
    /// Who a rule is about: `user:NAME` or `group:NAME`.
    Subject => "`user:NAME` or `group:NAME`, NAME as in `Name`.".to_string(),
    format!("^(?:user|group):{}$", name_pattern())
}

string_format! {
    /// A duration such as `30m` or `1h30m`.
    ///
    /// The server reads more than this pattern allows (leading zeros, zero
    /// parts, larger numbers up to ten years in all); the pattern is the
    /// subset every value of which it accepts, which is what a client
    /// needs to know.
    DurationText => "Whole numbers with the units d, h, m, s, each at most once and largest first: \
                 `30s`, `15m`, `1h30m`, `7d`."
        .to_string(),
    {
        // Each part starts with 1-9, so no value is zero; with at most 999d,
        // 9999h, 99999m and 999999s the sum stays under the ten-year limit.
        let [d, h, m, s] = ["[1-9][0-9]{0,2}d", "[1-9][0-9]{0,3}h", "[1-9][0-9]{0,4}m", "[1-9][0-9]{0,5}s"];
        format!("^(?:{d}(?:{h})?(?:{m})?(?:{s})?|{h}(?:{m})?(?:{s})?|{m}(?:{s})?|{s})$")
    }
}

string_format! {
    /// Why access is asked for (or a principal locked).
    Reason => format!(
        "Free text: 1-{MAX_REASON_CHARS} characters once leading and trailing white space is trimmed, \
         with no control or bidirectional-formatting characters."
    ),
    required_text_pattern(MAX_REASON_CHARS)
}

string_format! {
    /// A ticket or incident reference; blank means none.
    Ticket => format!(
        "Free text: at most {MAX_TICKET_CHARS} characters once trimmed (blank means none), \
         with no control or bidirectional-formatting characters."
    ),
    optional_text_pattern(MAX_TICKET_CHARS)
}

string_format! {
    /// An approver's remark; blank means none.
    Comment => format!(
        "Free text: at most {MAX_COMMENT_CHARS} characters once trimmed (blank means none), \
         with no control or bidirectional-formatting characters."
    ),
    optional_text_pattern(MAX_COMMENT_CHARS)
}

string_format! {
    /// A remark that must be given (acknowledging a review).
    RequiredComment => format!(
        "Free text: 1-{MAX_COMMENT_CHARS} characters once trimmed, \
         with no control or bidirectional-formatting characters."
    ),
    required_text_pattern(MAX_COMMENT_CHARS)
}

/// The Rego source of a policy: not blank, at most 256 KiB.
pub struct PolicySource;

impl utoipa::PartialSchema for PolicySource {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Rego source text: not blank, at most 256 KiB as UTF-8 (`maxLength` counts characters, \
                 so it is the bound for ASCII text).",
            ))
            .pattern(Some(non_blank_pattern()))
            .max_length(Some(MAX_POLICY_BYTES))
            .into()
    }
}

impl utoipa::ToSchema for PolicySource {}

/// The kinds of target this release issues credentials on.
pub struct TargetType;

impl utoipa::PartialSchema for TargetType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("`jwt` (signed JWTs) or `webhook` (calls an endpoint of yours)."))
            .enum_values(Some(["jwt", "webhook"]))
            .into()
    }
}

impl utoipa::ToSchema for TargetType {}

/// The id of a request (which, once active, is also the grant's id).
pub struct RequestId;

impl utoipa::PartialSchema for RequestId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uuid".to_string())))
            .description(Some(
                "A request's id, a UUID; once active the request is also the grant.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for RequestId {}
