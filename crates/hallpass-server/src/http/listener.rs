//! The HTTP listener `hallpass server` serves its router on: HTTP/1.1 on
//! hyper, optionally behind TLS, with the limits a server facing untrusted
//! networks needs.
//!
//! - A connection is not handed to TLS or hyper until its first byte arrives,
//!   so one that connects and stays silent costs a socket and a small task,
//!   no buffers; it is closed after [`ListenerOptions::first_byte_timeout`].
//! - Request headers (and the TLS handshake) must arrive within
//!   [`ListenerOptions::header_read_timeout`]; hyper starts that timer again
//!   whenever a keep-alive connection goes idle, so it is also the idle limit.
//! - At most [`ListenerOptions::max_connections`] are open. At the limit a new
//!   connection evicts the oldest one that has not sent anything yet; only
//!   when every open connection is talking is the new one refused. Silent
//!   connections (port scanners, half-open floods, speculative pre-connects)
//!   therefore never keep a real client out.
//! - Accept errors (out of file descriptors, aborted handshakes) evict a
//!   silent connection, back off briefly and are logged at most once a second.
//! - Shutdown stops accepting at once, closes silent connections, lets
//!   requests in flight finish for [`ListenerOptions::shutdown_grace`], then
//!   closes the rest.
//!
//! Handlers can extract `axum::extract::ConnectInfo<SocketAddr>`, the peer
//! address, over plain TCP and TLS alike, and [`Shutdown`], which resolves
//! when the drain starts.
//!
//! HTTP/2 is left out on purpose: the Hallpass clients speak HTTP/1.1, and h2
//! would bring its own crate and its own class of resource attacks (stream
//! resets, CONTINUATION floods) to defend against.
//!
//! Metrics: `hallpass_connections_open` (gauge),
//! `hallpass_connections_evicted_total`, `hallpass_connections_refused_total`
//! and `hallpass_accept_errors_total`.

mod tls;
mod tracker;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service;

pub use tls::{TlsConfig, TlsConfigError};

use tracker::{Admission, Backoff, CloseSignal, ConnectionGuard, Tracker};

/// Default for [`ListenerOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default for [`ListenerOptions::first_byte_timeout`].
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ListenerOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ListenerOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Default for [`ListenerOptions::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// File descriptors [`ListenerOptions::capped_by_fd_limit`] leaves for
/// everything that is not a client connection: the store, outbound webhook
/// and provider calls, logs.
pub const FD_RESERVE: u64 = 256;

/// The first byte of every TLS handshake record (a ClientHello included).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What a plain-HTTP client gets from a TLS port.
const PLAIN_HTTP_ON_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
Content-Length: 55\r\n\
\r\n\
This port speaks HTTPS: use https:// in the server URL\n";
/// How much of a rejected plain-HTTP request is read (and dropped) before
/// closing, so the kernel does not answer the unread rest with a reset that
/// could destroy the 400 response in flight.
const PLAIN_HTTP_DRAIN: Duration = Duration::from_secs(1);
const PLAIN_HTTP_DRAIN_BYTES: usize = 64 * 1024;
/// After the grace period: how long closed connections get to be dropped.
const HARD_CLOSE_WAIT: Duration = Duration::from_secs(1);
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Limits of the listener. `Default` suits a broker: modest traffic from
/// people and automation, clients on the same continent.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Connections open at once, silent or talking. 4096 by default: far
    /// above a broker's real concurrency, and within a typical 1024-soft /
    /// 4096-plus-hard descriptor limit once [`raise_fd_limit`] has run (use
    /// [`Self::capped_by_fd_limit`] to stay under whatever it got).
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed.
    /// 10 s by default: longer than any real client waits between connecting
    /// and sending (browsers keep pre-connected sockets about this long).
    pub first_byte_timeout: Duration,
    /// From the first byte (or from going idle between keep-alive requests)
    /// until the request headers are complete; also bounds the TLS handshake.
    /// 10 s by default (hyper's own default is 30 s): a request's headers are
    /// a few KiB and a slowloris client is cut off sooner.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers). 64 KiB by default:
    /// bearer tokens are a few KiB; this bounds hyper's read buffer for a
    /// client that sends headers without end. Values under 8 KiB (hyper's
    /// minimum buffer) count as 8 KiB.
    pub max_header_bytes: usize,
    /// `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// How long requests in flight at shutdown may take to finish. 20 s by
    /// default: leaves time for flushing the store within the 30 s most
    /// supervisors (Kubernetes, the benchmark) wait before SIGKILL.
    pub shutdown_grace: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ListenerOptions {
    /// Lowers `max_connections` so that connections plus [`FD_RESERVE`] fit
    /// in `fd_limit` descriptors (what [`raise_fd_limit`] returned); keeps at
    /// least half the limit for connections when the limit is tiny.
    pub fn capped_by_fd_limit(mut self, fd_limit: u64) -> Self {
        let available = fd_limit.saturating_sub(FD_RESERVE).max(fd_limit / 2).max(1);
        let available = usize::try_from(available).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(available);
        self
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns
/// the soft limit now in force. Call once at start-up, before
/// [`ListenerOptions::capped_by_fd_limit`].
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Pending connections the kernel may queue before `accept`: tokio's
/// default of 128 overflows under a burst of connections (the kernel then
/// drops SYNs and the client retries a second later), so the listener asks
/// for as many as it may keep open. Linux caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = DEFAULT_MAX_CONNECTIONS as u32;

/// Binds `addr` with address reuse and a backlog of [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The listener's shutdown, as a request extension: a response that never
/// ends by itself (an event stream) ends when [`Shutdown::started`]
/// resolves, so the drain does not wait the whole grace period for it.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the listener drains (or is gone).
    pub async fn started(mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// Live connection counts of one [`Listener`], for tests and diagnostics.
#[derive(Clone)]
pub struct ConnectionStats(Arc<Tracker>);

impl ConnectionStats {
    /// Connections open now, silent or talking.
    pub fn open(&self) -> usize {
        self.0.open()
    }

    /// Open connections that have not sent a byte yet.
    pub fn silent(&self) -> usize {
        self.0.silent()
    }

    /// Silent connections closed to make room (and on accept errors).
    pub fn evicted(&self) -> u64 {
        self.0.evicted()
    }

    /// New connections closed at once because every slot was talking.
    pub fn refused(&self) -> u64 {
        self.0.refused()
    }
}

/// A bound TCP listener with its limits, not yet serving.
pub struct Listener {
    tcp: TcpListener,
    options: ListenerOptions,
    tracker: Arc<Tracker>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see
/// the module docs). Shorthand for [`Listener::new`] + [`Listener::serve`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    Listener::new(listener, options).serve(router, shutdown).await
}

/// What every connection task shares.
struct Shared {
    router: Router,
    http: http1::Builder,
    tls: Option<tokio_rustls::TlsAcceptor>,
    first_byte_timeout: Duration,
    header_read_timeout: Duration,
    /// Turns true at shutdown: finish the request in flight, then close.
    draining: watch::Receiver<bool>,
}

impl Listener {
    pub fn new(tcp: TcpListener, options: ListenerOptions) -> Self {
        Listener {
            tcp,
            options,
            tracker: Arc::new(Tracker::default()),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats(self.tracker.clone())
    }

    /// Accepts and serves until `shutdown` resolves, then stops accepting
    /// (new connections are refused by the kernel), lets requests in flight
    /// finish within the grace period and returns once every connection is
    /// closed.
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        let Listener { tcp, options, tracker } = self;
        let (drain_tx, draining) = watch::channel(false);
        let shared = Arc::new(Shared {
            router,
            http: http_builder(&options),
            tls: options.tls.as_ref().map(TlsConfig::acceptor),
            first_byte_timeout: options.first_byte_timeout,
            header_read_timeout: options.header_read_timeout,
            draining,
        });
        let mut errors = AcceptErrors::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = tcp.accept() => accepted,
            };
            let pause = match accepted {
                Ok((stream, peer)) => {
                    errors.backoff.reset();
                    admit(&tracker, options.max_connections, stream, peer, &shared);
                    continue;
                }
                Err(error) => errors.handle(&error, &tracker),
            };
            if let Some(pause) = pause {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        drop(tcp);
        drain(&tracker, &drain_tx, options.shutdown_grace).await;
        Ok(())
    }
}

fn http_builder(options: &ListenerOptions) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192))
        .keep_alive(true);
    http
}

async fn drain(tracker: &Tracker, drain_tx: &watch::Sender<bool>, grace: Duration) {
    tracker.close_silent();
    drain_tx.send_replace(true);
    if tracker.wait_until_empty(Instant::now() + grace).await {
        return;
    }
    tracing::warn!(
        open = tracker.open(),
        grace_seconds = grace.as_secs_f64(),
        "shutdown grace period over: closing connections with requests still in flight"
    );
    tracker.close_all();
    tracker.wait_until_empty(Instant::now() + HARD_CLOSE_WAIT).await;
}

fn admit(tracker: &Arc<Tracker>, max_connections: usize, stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let (guard, close) = match tracker.admit(max_connections) {
        Admission::Admitted(guard, close) => (guard, close),
        Admission::Refused => {
            tracing::debug!(%peer, "connection refused: every connection slot is serving a request");
            reset(&stream);
            return;
        }
    };
    // Small requests and responses: do not let Nagle hold them back.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    tokio::spawn(connection(stream, peer, guard, close, shared.clone()));
}

/// Closes with RST instead of FIN: a connection we close unasked leaves no
/// TIME_WAIT state behind, which matters when a flood is being shed.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

enum FirstByte {
    Arrived(u8),
    PeerClosed,
    TimedOut,
    Failed(io::Error),
}

async fn first_byte(stream: &TcpStream, timeout: Duration) -> FirstByte {
    let mut byte = [0u8; 1];
    // A peek leaves the byte for TLS / hyper and needs no buffer.
    match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
        Err(_) => FirstByte::TimedOut,
        Ok(Ok(0)) => FirstByte::PeerClosed,
        Ok(Ok(_)) => FirstByte::Arrived(byte[0]),
        Ok(Err(error)) => FirstByte::Failed(error),
    }
}

/// One connection's whole life; `guard` drops (and the count goes down) when
/// it returns.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnectionGuard,
    mut close: CloseSignal,
    shared: Arc<Shared>,
) {
    let first = tokio::select! {
        biased;
        _ = &mut close => None,
        first = first_byte(&stream, shared.first_byte_timeout) => Some(first),
    };
    let first = match first {
        Some(FirstByte::Arrived(byte)) if guard.mark_talking() => byte,
        Some(FirstByte::PeerClosed) => return,
        Some(FirstByte::Failed(error)) => {
            tracing::debug!(%peer, %error, "connection failed before sending anything");
            return;
        }
        // Evicted, timed out, or evicted right as its first byte came.
        Some(FirstByte::Arrived(_) | FirstByte::TimedOut) | None => {
            reset(&stream);
            return;
        }
    };
    // Boxed: the TLS and hyper state is allocated only now, so the future a
    // silent connection's task holds stays a few hundred bytes.
    let talking = Box::pin(talk(stream, peer, first, &shared));
    tokio::select! {
        biased;
        // The shutdown grace period is over.
        _ = &mut close => {}
        () = talking => {}
    }
}

async fn talk(stream: TcpStream, peer: SocketAddr, first: u8, shared: &Shared) {
    let Some(acceptor) = &shared.tls else {
        return serve_http(stream, peer, shared).await;
    };
    if first != TLS_HANDSHAKE_RECORD {
        return reject_plain_http(stream, peer).await;
    }
    match tokio::time::timeout(shared.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(tls, peer, shared).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A plain-HTTP client on the TLS port gets a readable 400 instead of a
/// handshake failure it would report as a mysterious reset.
async fn reject_plain_http(mut stream: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "plain HTTP on the TLS port");
    let answered = async {
        stream.write_all(PLAIN_HTTP_ON_TLS_PORT).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < PLAIN_HTTP_DRAIN_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(PLAIN_HTTP_DRAIN, answered).await;
}

async fn serve_http<I>(io: I, peer: SocketAddr, shared: &Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let shutdown = Shutdown(shared.draining.clone());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(shutdown.clone());
        router.clone().call(request)
    });
    let connection = shared.http.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    let mut draining = shared.draining.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Timeouts, resets and malformed requests: the client's problem.
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = draining.wait_for(|draining| *draining), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Accept failures: what to do about each, and a log line at most once per
/// [`ACCEPT_ERROR_LOG_INTERVAL`] with a count of those left out.
struct AcceptErrors {
    backoff: Backoff,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn new() -> Self {
        AcceptErrors {
            backoff: Backoff::new(),
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Returns how long to pause before accepting again, if at all.
    fn handle(&mut self, error: &io::Error, tracker: &Tracker) -> Option<Duration> {
        metrics::counter!("hallpass_accept_errors_total").increment(1);
        self.log(error);
        match error.raw_os_error() {
            // Out of descriptors or kernel memory: free one by evicting a
            // silent connection, and give its task a moment to close it.
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                tracker.evict_oldest_silent();
                Some(self.backoff.next_pause())
            }
            // That one connection is gone; the next may be fine.
            _ if is_per_connection(error.kind()) => None,
            // Unknown: do not spin on it.
            _ => Some(self.backoff.next_pause()),
        }
    }

    fn log(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < ACCEPT_ERROR_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(%error, similar_errors_not_logged = self.unlogged, "cannot accept a connection");
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

fn is_per_connection(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_rest_of_the_server() {
        let options = ListenerOptions::default();
        assert_eq!(options.clone().capped_by_fd_limit(1_048_576).max_connections, 4096);
        assert_eq!(options.clone().capped_by_fd_limit(1024).max_connections, 768);
        assert_eq!(options.clone().capped_by_fd_limit(300).max_connections, 150);
        assert_eq!(options.capped_by_fd_limit(0).max_connections, 1);
    }

    #[tokio::test]
    async fn running_out_of_descriptors_evicts_and_backs_off_while_aborted_handshakes_do_not() {
        let tracker = Arc::new(Tracker::default());
        let _silent = tracker.admit(10);
        let mut errors = AcceptErrors::new();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(errors.handle(&emfile, &tracker), Some(Duration::from_millis(5)));
        assert_eq!((tracker.evicted(), tracker.open()), (1, 0));
        assert_eq!(errors.handle(&emfile, &tracker), Some(Duration::from_millis(10)));
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(errors.handle(&aborted, &tracker), None);
        // Logged once, the rest counted.
        assert_eq!(errors.unlogged, 2);
    }

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
        // Nothing accepts: every connection must fit in the kernel's queue.
        // With tokio's default backlog of 128 most of these would have
        // their SYN dropped and time out.
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..500).map(|_| tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr)));
        let results = futures::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, 500, "connections beyond the backlog were dropped");
    }

    #[test]
    fn the_plain_http_answer_has_a_correct_content_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ON_TLS_PORT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    }
}
