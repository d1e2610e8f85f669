//! The Hallpass domain, free of I/O, HTTP and async.
//!
//! Everything that decides *what may happen* lives here: parsing durations,
//! matching principals against `user:`/`group:` subjects, the access-request
//! state machine with its approval rules, and the audit hash chain. The server
//! feeds it data loaded from the store and a [`Clock`]; it answers with new
//! state or a [`RuleError`] that the server turns into an API error.

pub mod audit;
pub mod clock;
pub mod documents;
pub mod duration;
pub mod error;
pub mod events;
pub mod flow;
pub mod request;
pub mod role;
mod state;
pub mod subject;
pub mod text;

pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::RuleError;
pub use events::AuditKind;
pub use flow::Approval;
pub use request::{Decision, RequestState};
pub use subject::{Principal, Subject, SubjectError};
