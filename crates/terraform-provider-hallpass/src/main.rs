//! The `terraform-provider-hallpass` binary: checks that Terraform started
//! it, then serves the plugin protocol until Terraform says to exit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use terraform_provider_hallpass::handshake::{HandshakeError, PluginEnv};
use terraform_provider_hallpass::{log, serve};

fn main() -> ExitCode {
    let env = match PluginEnv::from_vars(|var| std::env::var(var).ok()) {
        Ok(env) => env,
        Err(error @ HandshakeError::NotStartedByTerraform) => {
            // Someone ran the binary by hand: plain words, not a JSON log line.
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            log::error(&error.to_string(), &[]);
            return ExitCode::FAILURE;
        }
    };
    match run(env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error(&format!("{error:#}"), &[]);
            ExitCode::FAILURE
        }
    }
}

fn run(env: PluginEnv) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        ignore_interrupts()?;
        serve::run(env, |line| {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{line}")?;
            stdout.flush()
        })
        .await
        .context("serving Terraform")
    })
}

/// Ctrl-C in a terminal reaches Terraform and its providers alike.
/// Terraform handles it (it sends `StopProvider` and lets the provider
/// finish), so the provider must not die of it.
fn ignore_interrupts() -> anyhow::Result<()> {
    let mut interrupts =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("cannot catch SIGINT")?;
    tokio::spawn(async move {
        while interrupts.recv().await.is_some() {
            log::debug("ignored SIGINT: Terraform stops the provider itself", &[]);
        }
    });
    Ok(())
}
