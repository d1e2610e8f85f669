//! `hallpass ssh ROLE -- [ssh args]`: SSH with a just-in-time certificate.
//! Requests the role (or reuses the grant already held), waits for
//! approval, fetches the certificate and runs the system's `ssh` with it.
//! The key is the user's own (`-i`), or the pair Hallpass made for the
//! grant: its private half comes with the credential's first fetch only,
//! so it is kept in the [`KeyStore`] until the grant expires, for the next
//! run on the same grant.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::Args;
use hallpass_api::{Credential, RequestState};

use super::grant_keys::{CERTIFICATE_ENV, GrantKey, KeyStore};
use super::requests::{RoleRequest, ended_without_access, read_public_key, wait_settled};
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS};
use crate::output::{eprint_message, time};

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The SSH role, and the request made when you do not hold it yet.
    #[command(flatten)]
    pub ask: RoleRequest,
    /// Your own key pair to certify instead of one Hallpass makes: the
    /// private key file (its `.pub` must be next to it).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The ssh program to run.
    #[arg(long, default_value = "ssh", value_name = "PATH")]
    pub ssh: PathBuf,
    /// Arguments for ssh, after `--`: `user@host [command]`.
    #[arg(last = true, required = true, value_name = "SSH ARGS")]
    pub ssh_args: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: SshArgs) -> CmdResult {
    let client = ctx.client()?;
    let public_key = match &args.identity {
        Some(private) => Some(read_public_key(&public_half(private))?),
        None => None,
    };
    let created = client.create_request(&args.ask.body(public_key)).await?.request;
    let Some(grant) = wait_settled(&client, created).await? else {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    if grant.state != RequestState::Active {
        eprint_message(&ended_without_access(&grant));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    let credential = client.credentials(&grant.id).await?;
    // Only for a certificate of the user's own key; gone when ssh exits.
    let dir = tempfile::Builder::new().prefix("hallpass-ssh-").tempdir()?;
    let files = match &args.identity {
        Some(own) => GrantKey {
            key: own.clone(),
            certificate: write_certificate(dir.path(), &credential)?,
        },
        None => grant_key(&credential)?,
    };
    eprint_message(&format!("grant {} of {}: connecting with ssh", grant.id, grant.role));
    let status = run_ssh(&args.ssh, &files.key, &files.certificate, &args.ssh_args).await?;
    drop(dir);
    Ok(ExitCode::from(status))
}

/// `KEY.pub` beside a private key `KEY`.
fn public_half(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The certificate of a grant on the user's own key, written into `dir`.
fn write_certificate(dir: &Path, credential: &Credential) -> anyhow::Result<PathBuf> {
    let Some(certificate) = credential.env.get(CERTIFICATE_ENV) else {
        bail!("the grant's credential holds no SSH certificate: is the role on an ssh target?");
    };
    let path = dir.join("id-cert.pub");
    std::fs::write(&path, format!("{}\n", certificate.trim()))?;
    Ok(path)
}

/// The key pair Hallpass made for the grant: kept now if this fetch was
/// the first, or found where an earlier run kept it.
fn grant_key(credential: &Credential) -> anyhow::Result<GrantKey> {
    let store = KeyStore::open()?;
    store.sweep(Utc::now());
    if let Some(kept) = store.keep(credential)? {
        return Ok(kept);
    }
    if store.has(&credential.request_id) {
        return store.refresh(credential);
    }
    let id = &credential.request_id;
    match &credential.one_time {
        Some(one_time) => bail!(
            "the private key Hallpass made for grant {id} was handed out at {} and is never shown again, and it \
             is not in {} on this machine; run this where it was received, or end the grant \
             (`hallpass release {id}`) and run again for a new key pair",
            time(&one_time.delivered_at),
            store.root().display()
        ),
        None => bail!(
            "grant {id} certifies a key of your own: give its private key file with -i (the grant was requested \
             with a public key)"
        ),
    }
}

/// Runs ssh in the foreground; Ctrl-C goes to ssh (same terminal process
/// group), so this process only waits for it. Returns its exit status.
async fn run_ssh(program: &Path, key: &Path, certificate: &Path, ssh_args: &[String]) -> anyhow::Result<u8> {
    let mut child = tokio::process::Command::new(program)
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", certificate.display()))
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .args(ssh_args)
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            // The terminal's interrupt reaches ssh too; keep waiting for it
            // so the key files are removed after it exits.
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    Ok(status.code().map_or(255, |code| u8::try_from(code).unwrap_or(255)))
}
