//! End-to-end tests of the real `hallpass` binary. One test binary with a
//! module per area, so the suite links once. Cargo builds the binary from
//! the current source before it builds this test (`CARGO_BIN_EXE_hallpass`).

mod harness;

mod access_config;
mod audit;
mod audit_sinks;
mod authz_matrix;
mod bad_input;
mod crash;
mod email;
mod events;
mod exec;
mod flows;
mod identity;
mod lifecycle;
mod notifications;
mod policies;
mod real_targets;
mod replicas;
mod security;
mod server_start;
mod slack;
mod targets;
mod terraform_plans;
mod upgrade;
mod web;
mod workload_identity;
