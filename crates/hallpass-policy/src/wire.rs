//! The messages the sandbox and its worker processes exchange, one per
//! frame (see [`crate::frame`]), as JSON.
//!
//! A conversation: the parent sends `setup` (the limits), the worker answers
//! `ready` with its protocol version. Then any number of `evaluate`, each
//! answered with `decision`, `error`, or `unknown_set` when the worker has
//! not compiled that set; the parent then sends `load` with the modules
//! (answered `loaded` or `error`) and the `evaluate` again. Sets are named by
//! [`crate::PolicySet::hash`], so modules cross the pipe once per worker.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::{PolicyDecision, PolicyError};

/// Raised on any change to the messages, so a worker from another build is
/// refused at start-up instead of misread.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Parent to worker. Borrowed when sent, owned when received.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request<'a> {
    Setup(Limits),
    Load {
        set: Cow<'a, str>,
        modules: Vec<Module<'a>>,
    },
    Evaluate {
        set: Cow<'a, str>,
        input: Cow<'a, serde_json::Value>,
    },
}

/// What the worker applies to itself at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limits {
    /// The cooperative time limit of each evaluation (regorus's timer).
    pub time_limit_ms: u64,
    /// Address space the worker may add to what it had at start-up.
    pub memory_limit_bytes: u64,
    /// CPU seconds a request may use before the kernel stops the worker,
    /// should the parent fail to.
    pub cpu_backstop_seconds: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Module<'a> {
    pub name: Cow<'a, str>,
    pub source: Cow<'a, str>,
}

/// Worker to parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Response {
    Ready { protocol: u32 },
    Loaded,
    UnknownSet,
    Decision(#[serde(with = "DecisionDef")] PolicyDecision),
    Error(#[serde(with = "ErrorDef")] PolicyError),
}

/// [`PolicyDecision`]'s fields, for serde, without making the public type
/// serializable.
#[derive(Serialize, Deserialize)]
#[serde(remote = "PolicyDecision")]
struct DecisionDef {
    deny: Vec<String>,
    auto_approve: bool,
    approval_flow: Option<String>,
    max_duration_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "PolicyError", rename_all = "snake_case")]
enum ErrorDef {
    Compile {
        module: String,
        line: u32,
        column: u32,
        message: String,
    },
    Evaluation(String),
    Decision(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(response: Response) -> Response {
        serde_json::from_slice(&serde_json::to_vec(&response).unwrap()).unwrap()
    }

    #[test]
    fn decisions_and_errors_cross_unchanged() {
        let decision = PolicyDecision {
            deny: vec!["no".into()],
            auto_approve: true,
            approval_flow: Some("two-step".into()),
            max_duration_seconds: Some(3600),
        };
        assert!(matches!(round_trip(Response::Decision(decision.clone())), Response::Decision(d) if d == decision));
        let error = PolicyError::Compile {
            module: "a.rego".into(),
            line: 3,
            column: 7,
            message: "expecting expression".into(),
        };
        assert!(matches!(round_trip(Response::Error(error.clone())), Response::Error(e) if e == error));
    }

    #[test]
    fn an_evaluate_request_is_small_and_names_the_set() {
        let input = serde_json::json!({"principal": {"name": "alice"}});
        let request = Request::Evaluate {
            set: Cow::Borrowed("abc"),
            input: Cow::Borrowed(&input),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"evaluate":{"set":"abc","input":{"principal":{"name":"alice"}}}}"#
        );
        let Request::Evaluate { set, input: received } = serde_json::from_str(&text).unwrap() else {
            panic!("not an evaluate request")
        };
        assert_eq!((&*set, &*received), ("abc", &input));
    }
}
