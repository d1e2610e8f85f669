//! `hallpass login` through the browser and `hallpass logout`.
//!
//! The CLI listens on a loopback port, opens the server's `/auth/cli` page
//! (single sign-on, then "Allow"), receives a one-time code on
//! `http://127.0.0.1:PORT/callback`, and trades it together with its PKCE
//! verifier for a short-lived token (RFC 8252's loopback redirect, with
//! Hallpass as the authorization server). The token is kept in
//! `$XDG_CONFIG_HOME/hallpass/credentials.json` (owner-only), and used for
//! that server whenever no `--token`/`HALLPASS_TOKEN` is given.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hallpass_client::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{CmdResult, Ctx, ok};
use crate::output::eprint_message;

/// How long the browser sign-in may take.
const SIGN_IN_TIME: Duration = Duration::from_secs(300);
/// Largest request line the loopback listener reads.
const MAX_REQUEST: usize = 8192;

/// What `hallpass login` keeps between runs.
#[derive(Serialize, Deserialize)]
pub struct StoredLogin {
    pub server: String,
    pub token: String,
    pub principal: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `$XDG_CONFIG_HOME/hallpass/credentials.json`, else under `~/.config`.
pub fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("hallpass").join("credentials.json"))
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The stored token for `server`, if `hallpass login` made one that has
/// not expired.
pub fn stored_token(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(credentials_path()?).ok()?;
    let stored: StoredLogin = serde_json::from_str(&text).ok()?;
    let live = stored.expires_at.is_none_or(|at| at > Utc::now());
    (live && same_server(&stored.server, server)).then_some(stored.token)
}

fn save(stored: &StoredLogin) -> anyhow::Result<PathBuf> {
    let path = credentials_path().context("cannot tell where to keep the login: set HOME or XDG_CONFIG_HOME")?;
    let dir = path.parent().context("the credentials path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} owner-only", dir.display()))?;
    // Written to a fresh owner-only file, then renamed over the old one.
    let temporary = dir.join(".credentials.json.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(serde_json::to_string_pretty(stored)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn random_text(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| anyhow::anyhow!("no randomness from the system"))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// Opens `url` in the desktop's browser; false when there is none.
fn open_browser(url: &str) -> bool {
    ["xdg-open", "open"].iter().any(|program| {
        std::process::Command::new(program)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
    })
}

/// The code and state of `GET /callback?code=..&state=..`.
fn callback_query(request_line: &str) -> Option<(String, String)> {
    let target = request_line.strip_prefix("GET ")?.split(' ').next()?;
    let query = target.strip_prefix("/callback?")?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    Some((find("code")?, find("state")?))
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Hallpass</title>\
     <p>The Hallpass CLI is signed in. You can close this tab.</p>";
const REFUSED_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Hallpass</title>\
     <p>This is not the sign-in the Hallpass CLI is waiting for.</p>";

async fn answer(stream: &mut tokio::net::TcpStream, status: &str, page: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Waits for the browser to bring the code with the right `state`; other
/// visitors of the port are answered 400 and ignored.
async fn wait_for_code(listener: TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; MAX_REQUEST];
        let mut read = 0;
        while read < MAX_REQUEST && !buffer[..read].windows(2).any(|w| w == b"\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer[read..])).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(n)) => read += n,
            }
        }
        let text = String::from_utf8_lossy(&buffer[..read]);
        let line = text.lines().next().unwrap_or_default();
        match callback_query(line) {
            Some((code, got)) if got == state => {
                answer(&mut stream, "200 OK", DONE_PAGE).await;
                return Ok(code);
            }
            _ => answer(&mut stream, "400 Bad Request", REFUSED_PAGE).await,
        }
    }
}

/// `hallpass login`: single sign-on in the browser, a token for the CLI.
pub async fn browser_login(ctx: &Ctx, no_browser: bool) -> CmdResult {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port for the browser's answer")?;
    let port = listener.local_addr()?.port();
    let verifier = random_text(32)?;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_text(16)?;
    let url = format!(
        "{}/auth/cli?port={port}&state={state}&code_challenge={challenge}",
        ctx.addr.trim_end_matches('/')
    );
    eprint_message(&format!("Sign in to Hallpass in your browser:\n  {url}"));
    if !no_browser && !open_browser(&url) {
        eprint_message("(no browser could be opened here; open the address above yourself)");
    }
    let code = match tokio::time::timeout(SIGN_IN_TIME, wait_for_code(listener, &state)).await {
        Ok(code) => code?,
        Err(_) => bail!("no sign-in arrived within 5 minutes; run `hallpass login` again"),
    };
    let created = Client::new(&ctx.addr, None)?
        .exchange_cli_code(&code, &verifier)
        .await?;
    let stored = StoredLogin {
        server: ctx.addr.clone(),
        token: created.token.clone(),
        principal: created.principal.clone(),
        expires_at: created.expires_at,
    };
    let path = save(&stored)?;
    let until = created
        .expires_at
        .map_or_else(|| "it is revoked".to_string(), |at| at.to_rfc3339());
    eprint_message(&format!(
        "Signed in as {} until {until}; the token is kept in {}.",
        created.principal,
        path.display()
    ));
    ok()
}

/// `hallpass logout`: revokes the stored token and forgets it.
pub async fn logout() -> CmdResult {
    let Some(path) = credentials_path() else {
        bail!("cannot tell where the login is kept: set HOME or XDG_CONFIG_HOME");
    };
    let stored: Option<StoredLogin> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let Some(stored) = stored else {
        eprint_message("Not signed in (no stored login).");
        return ok();
    };
    // An expired or already revoked token has nothing left to end.
    let client = Client::new(&stored.server, Some(stored.token.clone()))?;
    if let Err(error) = client.sign_out().await
        && !error.to_string().contains("unknown, revoked or expired")
    {
        return Err(error.into());
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    eprint_message(&format!("Signed out {} from {}.", stored.principal, stored.server));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_line_gives_code_and_state() {
        assert_eq!(
            callback_query("GET /callback?code=abc&state=xyz HTTP/1.1"),
            Some(("abc".into(), "xyz".into()))
        );
        assert_eq!(callback_query("GET /other?code=a&state=b HTTP/1.1"), None);
        assert_eq!(callback_query("POST /callback?code=a&state=b HTTP/1.1"), None);
        assert_eq!(callback_query("GET /callback?code=a HTTP/1.1"), None);
    }

    #[test]
    fn servers_compare_without_a_trailing_slash() {
        assert!(same_server("http://127.0.0.1:7070/", "http://127.0.0.1:7070"));
        assert!(!same_server("http://127.0.0.1:7070", "http://127.0.0.1:7071"));
    }
}
