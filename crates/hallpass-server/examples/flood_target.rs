//! A tiny server on the hardened listener, to flood with `hallpass-bench
//! flood --attach ADDR --attach-pid PID` before `hallpass server` uses it:
//! `/healthz` only, default [`ListenerOptions`] capped by the descriptor
//! limit, as the server is meant to start.
//!
//! `cargo run --release -p hallpass-server --example flood_target [ADDR]`
//! prints `listening ADDR pid PID max_connections N` and serves until SIGTERM
//! or Ctrl-C.

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hallpass_server::http::listener::{self, ListenerOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let fd_limit = listener::raise_fd_limit().context("cannot raise the descriptor limit")?;
    let options = ListenerOptions::default().capped_by_fd_limit(fd_limit);
    let tcp = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "listening {} pid {} max_connections {}",
        tcp.local_addr()?,
        std::process::id(),
        options.max_connections
    );
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    listener::serve(tcp, router, options, shutdown).await?;
    Ok(())
}
