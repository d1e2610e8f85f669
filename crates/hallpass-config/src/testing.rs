//! Helpers shared by the access-configuration tests.

use crate::parse_apply_str;

/// The errors for `source` parsed as `access.hcl`, as `LINE:COLUMN: MESSAGE`
/// strings.
pub(crate) fn errors(source: &str) -> Vec<String> {
    match parse_apply_str(source, "access.hcl") {
        Ok(request) => panic!("expected errors, parsed {request:?}"),
        Err(errors) => errors
            .errors()
            .iter()
            .map(|error| {
                assert_eq!(error.file, "access.hcl");
                format!("{}:{}: {}", error.line, error.column, error.message)
            })
            .collect(),
    }
}

/// Asserts exactly one error, at `position`, whose message contains `text`.
pub(crate) fn assert_error(source: &str, position: &str, text: &str) {
    let errors = errors(source);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with(&format!("{position}: ")), "{errors:#?}");
    assert!(errors[0].contains(text), "{errors:#?}");
}
