//! Diagnostics: the errors and warnings Terraform shows, optionally
//! pointing at the attribute of the block they are about (Terraform then
//! underlines it in the configuration).

use crate::proto::tfplugin6::attribute_path::Step;
use crate::proto::tfplugin6::attribute_path::step::Selector;
use crate::proto::tfplugin6::diagnostic::Severity;
use crate::proto::tfplugin6::{AttributePath, Diagnostic};

/// An error about the whole block or operation.
pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error.into(),
        summary: summary.into(),
        detail: detail.into(),
        attribute: None,
    }
}

/// An error about one top-level attribute of the block.
pub fn attribute_error(attribute: &str, summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
    Diagnostic {
        attribute: Some(path(&[attribute])),
        ..error(summary, detail)
    }
}

/// A warning about one top-level attribute of the block.
pub fn attribute_warning(attribute: &str, summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning.into(),
        ..attribute_error(attribute, summary, detail)
    }
}

/// A path through nested attributes, outermost first.
pub fn path(attributes: &[&str]) -> AttributePath {
    AttributePath {
        steps: attributes
            .iter()
            .map(|name| Step {
                selector: Some(Selector::AttributeName((*name).to_string())),
            })
            .collect(),
    }
}

/// The path of `attribute` in the `index`th block of the repeated block
/// `block` (`stage[1].timeout`).
pub fn element_path(block: &str, index: usize, attribute: &str) -> AttributePath {
    let step = |selector| Step {
        selector: Some(selector),
    };
    AttributePath {
        steps: vec![
            step(Selector::AttributeName(block.to_string())),
            step(Selector::ElementKeyInt(i64::try_from(index).unwrap_or(i64::MAX))),
            step(Selector::AttributeName(attribute.to_string())),
        ],
    }
}

/// An error about the value at `path`.
pub fn path_error(path: AttributePath, summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
    Diagnostic {
        attribute: Some(path),
        ..error(summary, detail)
    }
}

/// Whether any of `diagnostics` is an error (warnings let work go on).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics
        .iter()
        .any(|diagnostic| diagnostic.severity == i32::from(Severity::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_warnings() {
        let warning = attribute_warning("ca_file", "unused", "");
        assert!(!has_errors(std::slice::from_ref(&warning)));
        let error = attribute_error("address", "bad", "detail");
        assert!(has_errors(&[warning, error.clone()]));
        assert_eq!(
            error.attribute.unwrap().steps[0].selector,
            Some(Selector::AttributeName("address".into()))
        );
    }
}
