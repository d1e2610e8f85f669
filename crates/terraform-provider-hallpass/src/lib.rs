//! The Hallpass Terraform provider: a server of Terraform's plugin protocol
//! 6 (tfplugin6.8, Terraform 1.11) that manages Hallpass through its HTTP
//! API.
//!
//! Terraform starts the provider binary once per phase (validate, plan,
//! apply), reads one handshake line from its stdout, connects over mutual
//! TLS and calls the gRPC methods of `tfplugin6.Provider`; at the end of the
//! phase it asks the process to exit. The layers, bottom up:
//!
//! - [`proto`]: the generated gRPC code of the project's own `.proto` files.
//! - [`value`], [`schema`], [`diag`]: Terraform's values (MessagePack),
//!   schemas (attributes with JSON type names) and diagnostics.
//! - [`api`]: the HTTP client for the Hallpass server.
//! - [`config`]: the provider block (`address`, `token`, `ca_file`).
//! - [`data_sources`]: one module per data source behind the
//!   [`data_sources::DataSource`] trait.
//! - [`resources`]: one module per managed resource behind the
//!   [`resources::Resource`] trait.
//! - [`ephemeral`]: the ephemeral resource `hallpass_credentials` (open,
//!   renew, close).
//! - [`provider`]: the `tfplugin6.Provider` service, dispatching by type name.
//! - [`plugin`], [`tls`], [`handshake`], [`serve`], [`log`]: what go-plugin
//!   expects of a plugin process: the environment check, the handshake line,
//!   mTLS pinned to Terraform's certificate, the controller and stdio
//!   services, the gRPC health service, and JSON log lines on stderr.

pub mod api;
pub mod config;
pub mod data_sources;
pub mod diag;
pub mod ephemeral;
pub mod handshake;
pub mod log;
pub mod plugin;
pub mod proto;
pub mod provider;
pub mod resources;
pub mod schema;
pub mod serve;
pub mod tls;
pub mod value;
