//! `/healthz` probes over fresh connections, the measure of whether a
//! server still answers while something else floods it.
//!
//! Each probe connects, sends one `GET /healthz` with `Connection: close` and
//! reads to the end, so it pays for what a new client pays (accept, a task,
//! the response) and no kept-alive connection hides a stalled accept loop.
//! A probe counts as failed when it is not answered 200 within
//! [`PROBE_TIMEOUT`]; its time is then left out of the latencies.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::{self, Latencies, Summary};

/// A `/healthz` probe slower than this counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `/healthz` over one phase of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    /// Of the probes answered 200 in time.
    pub latency: Summary,
    pub failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Phase {
    /// The columns of [`Phase::row`].
    pub const HEADER: [&str; 7] = [
        "/healthz, fresh connection",
        "ok",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "first failure",
    ];

    pub fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.latency.count.to_string(),
            self.failed.to_string(),
            stats::fmt_ms(self.latency.p50_ms),
            stats::fmt_ms(self.latency.p99_ms),
            stats::fmt_ms(self.latency.max_ms),
            self.first_error.clone().unwrap_or_default(),
        ]
    }
}

/// Probe outcomes as they come in.
struct Recorder {
    name: String,
    latencies: Option<Latencies>,
    failed: usize,
    first_error: Option<String>,
}

impl Recorder {
    fn new(name: &str) -> Recorder {
        let (latencies, first_error) = match Latencies::new() {
            Ok(latencies) => (Some(latencies), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        Recorder {
            name: name.to_string(),
            latencies,
            failed: 0,
            first_error,
        }
    }

    fn record(&mut self, outcome: Result<Duration>) {
        match (outcome, self.latencies.as_mut()) {
            (Ok(latency), Some(latencies)) => latencies.record(latency),
            (Ok(_), None) => self.failed += 1,
            (Err(error), _) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }

    fn finish(self) -> Phase {
        Phase {
            name: self.name,
            latency: self.latencies.map(|l| l.summary()).unwrap_or_default(),
            failed: self.failed,
            first_error: self.first_error,
        }
    }
}

/// `requests` probes one after another.
pub async fn phase(name: &str, addr: SocketAddr, requests: usize) -> Phase {
    let mut recorder = Recorder::new(name);
    for _ in 0..requests {
        recorder.record(probe(addr).await);
    }
    recorder.finish()
}

/// Probes one after another, `pause` apart, until `until` resolves (a probe
/// in progress then is finished and counted).
pub async fn phase_until(name: &str, addr: SocketAddr, pause: Duration, until: impl Future<Output = ()>) -> Phase {
    let mut recorder = Recorder::new(name);
    let mut until = std::pin::pin!(until);
    loop {
        recorder.record(probe(addr).await);
        tokio::select! {
            () = &mut until => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    recorder.finish()
}

/// One `/healthz` over a fresh connection: connect to last response byte.
pub async fn probe(addr: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.context("cannot connect")?;
        stream.set_nodelay(true)?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: hallpass-bench\r\nConnection: close\r\n\r\n")
            .await
            .context("cannot send the request")?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .context("cannot read the response")?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .with_context(|| format!("no answer within {}s", PROBE_TIMEOUT.as_secs()))??;
    if !response.starts_with(b"HTTP/1.1 200") {
        let status = String::from_utf8_lossy(&response);
        bail!("answered {:?}", status.lines().next().unwrap_or(""));
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nobody_listens_on_fails_every_probe() {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let phase = phase("closed port", addr, 3).await;
        assert_eq!((phase.latency.count, phase.failed), (0, 3));
        assert!(phase.first_error.unwrap().contains("cannot connect"));
    }

    #[tokio::test]
    async fn probes_until_told_to_stop_and_count_non_200_as_failed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in [&b"HTTP/1.1 200 OK\r\n\r\nok"[..], b"HTTP/1.1 503 Busy\r\n\r\n"]
                .iter()
                .cycle()
            {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await.unwrap();
                stream.write_all(answer).await.unwrap();
            }
        });
        let phase = phase_until(
            "alternating",
            addr,
            Duration::from_millis(1),
            tokio::time::sleep(Duration::from_millis(200)),
        )
        .await;
        assert!(phase.latency.count >= 2, "{phase:?}");
        assert!(phase.failed.abs_diff(phase.latency.count as usize) <= 1, "{phase:?}");
        assert_eq!(phase.first_error.as_deref(), Some("answered \"HTTP/1.1 503 Busy\""));
    }
}
