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
    /// Fixed admin token for --dev instead of a random one (at least 128
    /// bits of randomness, e.g. `echo "hp_$(openssl rand -hex 32)"`).
    #[arg(long, env = "HALLPASS_DEV_ROOT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub dev_root_token: Option<String>,
    /// Read the --dev root token from this file, so it does not show in `ps`.
    #[arg(long, value_name = "FILE", conflicts_with = "dev_root_token")]
    pub dev_root_token_file: Option<PathBuf>,
    /// Use PostgreSQL (`postgres://user@host:5432/db`) instead of the
    /// embedded SQLite; several servers may share one database.
    #[arg(long, env = "HALLPASS_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub async fn run(args: ServerArgs) -> CmdResult {
    let options = hallpass_server::ServerOptions {
        dev: args.dev,
        config_file: args.config,
        listen: args.listen,
        data_dir: args.data_dir,
        dev_root_token: args.dev_root_token,
        dev_root_token_file: args.dev_root_token_file,
        database_url: args.database_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    };
    hallpass_server::run(options).await?;
    ok()
}
