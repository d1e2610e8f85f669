//! The subcommands, grouped by area. Each takes the shared [`Ctx`] and
//! returns the process exit code, or an error that `main` prints.

pub mod audit;
pub mod config;
pub mod grants;
pub mod identity;
pub mod requests;
pub mod server;

use std::process::ExitCode;

use hallpass_client::Client;

use crate::output::OutputFormat;

/// Exit code for "the command worked but access was not obtained" (a waited-on
/// request ended without access) and for a failed audit verification.
pub const EXIT_NO_ACCESS: u8 = 3;
/// Exit code when the user interrupts a wait with Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

pub type CmdResult = anyhow::Result<ExitCode>;

/// Global flags, shared by every client subcommand.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub addr: String,
    pub token: Option<String>,
    pub output: OutputFormat,
}

impl Ctx {
    /// A client for `--addr` with `--token`. Built lazily so that commands
    /// that need no server (offline audit verification) never touch it.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.addr, self.token.clone())?)
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

pub fn ok() -> CmdResult {
    Ok(ExitCode::SUCCESS)
}
