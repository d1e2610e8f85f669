//! HCL configuration files for Hallpass: the access configuration sent by
//! `hallpass apply -f FILE.hcl` and the server's own `--config FILE.hcl`.
//!
//! Files are parsed with `hcl-edit`, which keeps source spans, so every
//! problem is reported as `FILE:LINE:COLUMN: MESSAGE` and all problems in a
//! file are reported together. Only literal values are accepted: these files
//! are data, and interpolation or functions would make them harder to review.

mod apply;
mod audit_sink;
mod body;
mod error;
mod flow;
mod policy;
mod secrets;
mod server;
mod sso;
#[cfg(test)]
mod testing;
mod value;
mod workload;

pub use apply::{parse_apply_file, parse_apply_str};
pub use audit_sink::{
    AuditSink, DEFAULT_BATCH_MAX_EVENTS, DEFAULT_BATCH_MAX_WAIT, DEFAULT_SYSLOG_FACILITY,
    DEFAULT_TIMEOUT as DEFAULT_SINK_TIMEOUT, FileSink, SYSLOG_FACILITIES, SinkDestination, SyslogSink, WebhookSink,
};
pub use error::{ConfigError, ConfigErrors};
pub use server::{LogFormat, SealKey, ServerConfig, Storage, parse_server_config_file, parse_server_config_str};
pub use sso::{DEFAULT_CLI_TOKEN_TTL_SECONDS, DEFAULT_SESSION_TTL_SECONDS, SingleSignOn, is_loopback_http};
pub use workload::{ClaimRule, DEFAULT_TOKEN_TTL_SECONDS, JwksSource, WorkloadIdentity};
