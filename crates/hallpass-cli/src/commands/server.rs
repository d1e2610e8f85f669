//! `hallpass server`: runs the broker in this process.

use std::path::PathBuf;

use clap::Args;

use super::{CmdResult, ok};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Zero set-up playground: SQLite in a temp dir, demo target and roles,
    /// printed tokens for an admin, a requester and an approver.
    #[arg(long)]
    pub dev: bool,
    /// Server configuration file (HCL).
    #[arg(long, value_name = "FILE.hcl")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the database and keys.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fixed admin token for --dev instead of a random one.
    #[arg(long, env = "HALLPASS_DEV_ROOT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub dev_root_token: Option<String>,
    /// Use PostgreSQL (`postgres://user@host:5432/db`) instead of the
    /// embedded SQLite; several servers may share one database.
    #[arg(long, env = "HALLPASS_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

pub async fn run(args: ServerArgs) -> CmdResult {
    let options = hallpass_server::ServerOptions {
        dev: args.dev,
        config_file: args.config,
        listen: args.listen,
        data_dir: args.data_dir,
        dev_root_token: args.dev_root_token,
        database_url: args.database_url,
    };
    hallpass_server::run(options).await?;
    ok()
}
