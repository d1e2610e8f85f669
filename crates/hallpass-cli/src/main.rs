//! `hallpass`: one binary for the broker (`hallpass server`) and every client
//! of its HTTP API. This file holds the clap command tree and the dispatch;
//! the commands live in [`commands`], the rendering in [`output`].
//!
//! Errors are printed once, as `error: MESSAGE`, and map to exit code 1;
//! clap's usage errors exit 2; code 3 means "no access" (see [`EXIT_CODES`]).

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::audit::AuditCommand;
use commands::config::{ApplyArgs, RoleCommand, TargetCommand};
use commands::extend::ExtendArgs;
use commands::flows::FlowCommand;
use commands::identity::TokenCommand;
use commands::policy::PolicyCommand;
use commands::requests::{CredentialFormat, Decision, ListArgs, RequestArgs};
use commands::reviews::ReviewCommand;
use commands::server::ServerArgs;
use commands::{CmdResult, Ctx};
use output::OutputFormat;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    error: API, network or bad input (the message says what to fix)
  2    usage error (unknown flag, missing argument)
  3    no access: a policy refused a request or extension; a `request --wait`
       ended without access (denied, cancelled, timed out, expired, revoked,
       released); an `extend --wait` extension was denied or lapsed; or
       `audit verify` found a broken chain
  130  interrupted while waiting (Ctrl-C); the request stays open

Environment:
  HALLPASS_ADDR   server address (same as --addr)
  HALLPASS_TOKEN  API token (same as --token)";

/// Just-in-time access broker: request a role for a bounded time, get it
/// approved, receive short-lived credentials, and let them lapse.
#[derive(Debug, Parser)]
#[command(name = "hallpass", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    /// Hallpass server address.
    #[arg(
        long,
        global = true,
        env = "HALLPASS_ADDR",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    addr: String,
    /// API token (`hp_...`).
    #[arg(
        long,
        global = true,
        env = "HALLPASS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Human tables, or the API's JSON objects for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Hallpass broker.
    Server(ServerArgs),
    /// Show who the token belongs to.
    Whoami,
    /// Sign in through your company's single sign-on in the browser; the
    /// short-lived token is kept for this server in
    /// ~/.config/hallpass/credentials.json. With --oidc-token-file: exchange
    /// a CI job's OIDC token for a token printed on stdout instead
    /// (`export HALLPASS_TOKEN=$(hallpass login --oidc-token-file F)`).
    Login {
        /// The OIDC token (a JWT) the CI system gave the job; `-` reads stdin.
        #[arg(long = "oidc-token-file", value_name = "FILE")]
        oidc_token_file: Option<std::path::PathBuf>,
        /// Print the sign-in address instead of opening a browser.
        #[arg(long, conflicts_with = "oidc_token_file")]
        no_browser: bool,
    },
    /// Revoke the token `hallpass login` keeps, and forget it.
    Logout,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create or update targets, roles, approval flows and policies from an HCL file.
    Apply(ApplyArgs),
    /// Inspect and delete targets.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Inspect and delete roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Inspect and delete approval flows.
    #[command(subcommand)]
    Flow(FlowCommand),
    /// Store, inspect, test and evaluate Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect and delete notifiers (where people are told; `apply` sets them).
    #[command(subcommand)]
    Notifier(commands::notifications::NotifierCommand),
    /// Notification deliveries that gave up, and sending one again.
    #[command(subcommand)]
    Notifications(commands::notifications::NotificationsCommand),
    /// Request access to a role.
    Request(RequestArgs),
    /// SSH with a just-in-time certificate: request the role (or use the
    /// grant you hold), wait for approval, then run ssh with it.
    Ssh(commands::ssh::SshArgs),
    /// Run a command with just-in-time access: request the role, wait for
    /// approval, run it with the credential in its environment, then
    /// release the grant.
    Exec(commands::exec::ExecArgs),
    /// Approval bound to one Terraform plan: `plan` requests the role for a
    /// saved plan, `apply` applies it with the grant.
    #[command(subcommand)]
    Terraform(commands::terraform::TerraformCommand),
    /// List access requests.
    Requests(ListArgs),
    /// Show one request in detail.
    Show {
        /// Request id.
        id: String,
    },
    /// Approve a pending request, or the pending extension of an active grant.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a pending request, or the pending extension of an active grant.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Withdraw your own pending request.
    Cancel { id: String },
    /// Print the credential of your active grant.
    Credentials {
        id: String,
        /// token: the raw token; env: `export KEY='value'` lines; json: the whole credential.
        #[arg(long, value_enum)]
        format: Option<CredentialFormat>,
    },
    /// List grants (requests that were given access).
    Grants {
        /// Only grants that are active now.
        #[arg(long)]
        active: bool,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 200, value_name = "N")]
        limit: usize,
    },
    /// Stop a principal at once (admins): revoke its tokens, end its grants,
    /// withdraw its requests, and refuse new ones until `unlock`.
    Lock {
        /// The principal (user or service) to lock.
        principal: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Lift a lock (admins); the principal needs new tokens.
    Unlock { principal: String },
    /// List locked principals (admins).
    Locks,
    /// End someone's access early.
    Revoke {
        id: String,
        /// Why; kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Give up your own access before it expires.
    Release { id: String },
    /// Ask for more time on your active grant.
    Extend(ExtendArgs),
    /// List break-glass grants awaiting review.
    Reviews {
        /// Include reviews already acknowledged.
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge the review of a break-glass grant.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// List, export and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print audit events live as they happen (the ones you may see);
    /// reconnects on its own, Ctrl-C ends it.
    Watch(commands::watch::WatchArgs),
    /// Internal: evaluates policies for the server's sandbox over stdin/stdout.
    #[command(name = hallpass_policy::WORKER_SUBCOMMAND, hide = true)]
    PolicyWorker,
}

/// jemalloc rather than glibc's malloc: the server allocates and frees
/// many small buffers per request on several threads, where glibc's
/// arenas spent 12-14 % of its CPU (figures in docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // A policy worker (started by the server) needs no async runtime and
    // none of its threads: each would count against the worker's memory
    // limit. Answer before building one.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == hallpass_policy::WORKER_SUBCOMMAND)
    {
        return match hallpass_policy::run_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            report_error(&error);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CmdResult {
    // Without --token or HALLPASS_TOKEN, the token `hallpass login` kept
    // for this server.
    let token = cli.token.or_else(|| commands::login::stored_token(&cli.addr));
    let ctx = Ctx {
        addr: cli.addr,
        token,
        output: cli.output,
    };
    match cli.command {
        Command::Server(args) => commands::server::run(args).await,
        Command::Whoami => commands::identity::whoami(&ctx).await,
        Command::Login {
            oidc_token_file: Some(file),
            ..
        } => commands::identity::login(&ctx, &file).await,
        Command::Login { no_browser, .. } => commands::login::browser_login(&ctx, no_browser).await,
        Command::Logout => commands::login::logout().await,
        Command::Token(command) => commands::identity::token(&ctx, command).await,
        Command::Apply(args) => commands::config::apply(&ctx, args).await,
        Command::Target(command) => commands::config::target(&ctx, command).await,
        Command::Role(command) => commands::config::role(&ctx, command).await,
        Command::Notifier(command) => commands::notifications::notifier(&ctx, command).await,
        Command::Notifications(command) => commands::notifications::notifications(&ctx, command).await,
        Command::Request(args) => commands::requests::request(&ctx, args).await,
        Command::Ssh(args) => commands::ssh::run(&ctx, args).await,
        Command::Exec(args) => commands::exec::run(&ctx, args).await,
        Command::Terraform(command) => commands::terraform::run(&ctx, command).await,
        Command::Requests(args) => commands::requests::list(&ctx, args).await,
        Command::Show { id } => commands::requests::show(&ctx, &id).await,
        Command::Approve { id, comment } => commands::requests::decide(&ctx, &id, Decision::Approve(comment)).await,
        Command::Deny { id, comment } => commands::requests::decide(&ctx, &id, Decision::Deny(comment)).await,
        Command::Cancel { id } => commands::requests::decide(&ctx, &id, Decision::Cancel).await,
        Command::Credentials { id, format } => commands::requests::credentials(&ctx, &id, format).await,
        Command::Grants { active, limit } => commands::grants::list(&ctx, active, limit).await,
        Command::Lock { principal, reason } => commands::identity::lock(&ctx, &principal, reason).await,
        Command::Unlock { principal } => commands::identity::unlock(&ctx, &principal).await,
        Command::Locks => commands::identity::locks(&ctx).await,
        Command::Revoke { id, reason } => commands::grants::revoke(&ctx, &id, reason).await,
        Command::Release { id } => commands::grants::release(&ctx, &id).await,
        Command::Extend(args) => commands::extend::extend(&ctx, args).await,
        Command::Reviews { all } => commands::reviews::list(&ctx, all).await,
        Command::Review(command) => commands::reviews::run(&ctx, command).await,
        Command::Flow(command) => commands::flows::run(&ctx, command).await,
        Command::Policy(command) => commands::policy::run(&ctx, command).await,
        Command::Audit(command) => commands::audit::run(&ctx, command).await,
        Command::Watch(args) => commands::watch::run(&ctx, args).await,
        Command::PolicyWorker => hallpass_policy::run_worker()
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    }
}

/// `error: MESSAGE` on stderr; one line per problem for configuration files.
fn report_error(error: &anyhow::Error) {
    eprint!("{}", render_error(error));
}

/// The messages quote the server and the files read, so they are escaped
/// like any other server text; a message that spans lines continues indented.
fn render_error(error: &anyhow::Error) -> String {
    let messages: Vec<String> = match error.downcast_ref::<hallpass_config::ConfigErrors>() {
        Some(errors) => errors.errors().iter().map(ToString::to_string).collect(),
        None => vec![format!("{error:#}")],
    };
    messages
        .iter()
        .map(|message| format!("error: {}\n", output::escape_message(message)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_where_people_put_them() {
        let cli = Cli::try_parse_from([
            "hallpass",
            "request",
            "demo-admin",
            "--for",
            "30m",
            "--reason",
            "INC-1",
            "--wait",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        let Command::Request(args) = cli.command else {
            panic!("not a request")
        };
        assert_eq!(args.ask.terms.duration.as_deref(), Some("30m"));
        assert!(args.wait);

        let cli = Cli::try_parse_from(["hallpass", "token", "create", "--principal", "ci", "--groups", "a,b"]).unwrap();
        let Command::Token(TokenCommand::Create { groups, ttl, .. }) = cli.command else {
            panic!("not token create")
        };
        assert_eq!(groups, ["a", "b"]);
        assert_eq!(ttl, None);
    }

    #[test]
    fn new_commands_parse() {
        let cli = Cli::try_parse_from([
            "hallpass",
            "request",
            "prod-db",
            "--reason",
            "INC-9",
            "--emergency",
            "--at",
            "2026-12-01T09:00Z",
        ])
        .unwrap();
        let Command::Request(args) = cli.command else {
            panic!("not a request")
        };
        assert!(args.emergency);
        assert_eq!(
            args.at.map(|at| at.to_rfc3339()).as_deref(),
            Some("2026-12-01T09:00:00+00:00")
        );

        let err = Cli::try_parse_from(["hallpass", "request", "x", "--reason", "r", "--at", "9am"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("2026-12-01T09:00Z"), "{err}");

        let cli =
            Cli::try_parse_from(["hallpass", "extend", "r1", "--by", "30m", "--reason", "more", "--wait"]).unwrap();
        let Command::Extend(args) = cli.command else {
            panic!("not extend")
        };
        assert_eq!((args.by.as_str(), args.wait), ("30m", true));

        let err = Cli::try_parse_from(["hallpass", "review", "ack", "r1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "the comment is required");
        assert!(Cli::try_parse_from(["hallpass", "review", "ack", "r1", "--comment", "checked"]).is_ok());
        assert!(Cli::try_parse_from(["hallpass", "reviews", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["hallpass", "policy", "put", "limits", "-f", "limits.rego"]).is_ok());
        assert!(Cli::try_parse_from(["hallpass", "policy", "test", "policies/"]).is_ok());
        assert!(Cli::try_parse_from(["hallpass", "policy", "eval", "--input", "in.json", "--dir", "p/"]).is_ok());
        assert!(Cli::try_parse_from(["hallpass", "flow", "show", "two-step"]).is_ok());
    }

    #[test]
    fn errors_quoting_the_server_cannot_forge_lines() {
        let error = anyhow::anyhow!("no such role \"x\r\x1b[2Kapproved\"\nerror: forged\0");
        assert_eq!(
            render_error(&error),
            "error: no such role \"x\\r\\x1b[2Kapproved\"\n  error: forged\\0\n"
        );
        let error = anyhow::anyhow!("refused").context("cannot reach\u{202e}");
        assert_eq!(render_error(&error), "error: cannot reach\\u{202e}: refused\n");
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"));
        assert!(help.contains("3    no access"));
    }
}
