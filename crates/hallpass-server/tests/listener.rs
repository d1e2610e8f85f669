//! The hardened listener against real sockets on loopback: floods of silent
//! connections, slowloris clients, shutdown with requests in flight, TLS, and
//! a server process that runs out of file descriptors.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hallpass_server::http::listener::{self, ConnectionStats, Listener, ListenerOptions, TlsConfig, TlsConfigError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const SLOW_REQUEST: Duration = Duration::from_millis(1500);

/// `/healthz`, `/peer` (the `ConnectInfo` address), `/slow` (reports on
/// `entered` when it starts, answers after `SLOW_REQUEST`) and `/hang`.
fn router(entered: mpsc::UnboundedSender<()>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(move || {
                let _ = entered.send(());
                async {
                    tokio::time::sleep(SLOW_REQUEST).await;
                    "done"
                }
            }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
}

struct TestServer {
    addr: SocketAddr,
    stats: ConnectionStats,
    entered: mpsc::UnboundedReceiver<()>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(options: ListenerOptions) -> TestServer {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = Listener::new(tcp, options);
        let addr = listener.local_addr().unwrap();
        let stats = listener.stats();
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.serve(router(entered_tx), async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stats,
            entered,
            stop: Some(stop),
            task,
        }
    }

    /// Resolves when `serve` returned.
    async fn shut_down(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.stop.take().unwrap().send(());
        std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }))
    }

    async fn wait_for_open(&self, expected: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.stats.open() != expected {
            assert!(
                Instant::now() < deadline,
                "open connections: {} after {within:?}, expected {expected}",
                self.stats.open()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn options() -> ListenerOptions {
    ListenerOptions {
        max_connections: 100,
        first_byte_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
        ..ListenerOptions::default()
    }
}

/// One `Connection: close` request over `stream`; the whole response text.
async fn request(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// `/healthz` over a fresh connection; panics unless it answers 200 within 1 s.
async fn healthz_within_a_second(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(1), async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        request(&mut stream, "/healthz").await
    })
    .await
    .expect("/healthz did not answer within 1 s");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    started.elapsed()
}

/// Reads until the server closes; how long that took. A reset counts as closed.
async fn time_until_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_silent_connections_do_not_keep_healthz_out_and_leave_nothing_behind() {
    let fd_limit = listener::raise_fd_limit().unwrap();
    assert!(
        fd_limit >= 3000,
        "this test holds 2,500 sockets; the soft descriptor limit is only {fd_limit}"
    );
    let server = TestServer::start(ListenerOptions {
        max_connections: 500,
        ..options()
    })
    .await;
    let mut silent = Vec::with_capacity(2000);
    for _ in 0..2000 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The server holds at most its limit; the rest were evicted oldest first.
    server.wait_for_open(500, Duration::from_secs(5)).await;
    for _ in 0..20 {
        healthz_within_a_second(server.addr).await;
    }
    assert!(server.stats.evicted() >= 1500, "evicted {}", server.stats.evicted());
    assert_eq!(server.stats.refused(), 0);
    assert!(server.stats.open() <= 500);
    drop(silent);
    server.wait_for_open(0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_read_timeout() {
    let server = TestServer::start(ListenerOptions {
        header_read_timeout: Duration::from_secs(2),
        ..options()
    })
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One byte a second of a request that would take a minute to send.
    let dribble = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the whole request went through");
    });
    let started = Instant::now();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), reader.read_to_end(&mut response)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "still open after 6 s");
    assert!(
        (Duration::from_millis(1800)..Duration::from_millis(4000)).contains(&elapsed),
        "cut off after {elapsed:?}"
    );
    assert!(!String::from_utf8_lossy(&response).contains("200 OK"));
    dribble.abort();
    server.wait_for_open(0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_first_byte_timeout() {
    let server = TestServer::start(ListenerOptions {
        first_byte_timeout: Duration::from_secs(1),
        ..options()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    server.wait_for_open(1, Duration::from_secs(1)).await;
    assert_eq!(server.stats.silent(), 1);
    let closed_after = time_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        (Duration::from_millis(800)..Duration::from_millis(2500)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    server.wait_for_open(0, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_read_timeout() {
    let server = TestServer::start(ListenerOptions {
        header_read_timeout: Duration::from_secs(1),
        ..options()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let closed_after = time_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}"
    );
}

#[tokio::test]
async fn at_the_limit_with_every_connection_talking_a_new_one_is_refused() {
    let server = TestServer::start(ListenerOptions {
        max_connections: 2,
        ..options()
    })
    .await;
    let mut talking = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        talking.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.stats.silent() != 0 || server.stats.open() != 2 {
        assert!(Instant::now() < deadline, "the two connections never started talking");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    time_until_closed(&mut refused, Duration::from_secs(1)).await;
    assert_eq!((server.stats.refused(), server.stats.evicted()), (1, 0));
    // Finishing one of the talking requests frees a slot for the next client.
    let first = talking.remove(0);
    let (mut reader, mut writer) = first.into_split();
    writer
        .write_all(b"Host: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    reader.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.wait_for_open(1, Duration::from_secs(1)).await;
    healthz_within_a_second(server.addr).await;
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_connections() {
    let mut server = TestServer::start(options()).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        request(&mut stream, "/slow").await
    });
    let mut silent = TcpStream::connect(addr).await.unwrap();
    server.entered.recv().await.unwrap();
    let started = Instant::now();
    let served = server.shut_down().await;
    // Not accepting any more: the port is closed.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Caught in the backlog as the socket closed: try again.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("unexpected connect error {error}"),
            Ok(_) => {}
        }
        assert!(Instant::now() < deadline, "still accepting 1 s after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The silent connection had nothing to finish.
    assert!(time_until_closed(&mut silent, Duration::from_secs(1)).await < Duration::from_millis(500));
    let response = in_flight.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    tokio::time::timeout(Duration::from_secs(2), served)
        .await
        .expect("serve did not return after the last request")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < SLOW_REQUEST + Duration::from_secs(1));
}

#[tokio::test]
async fn shutdown_closes_requests_still_running_after_the_grace_period() {
    let mut server = TestServer::start(ListenerOptions {
        shutdown_grace: Duration::from_millis(500),
        ..options()
    })
    .await;
    let mut hanging = TcpStream::connect(server.addr).await.unwrap();
    hanging
        .write_all(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    server.wait_for_open(1, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let served = server.shut_down().await;
    let closed_after = time_until_closed(&mut hanging, Duration::from_secs(3)).await;
    assert!(
        (Duration::from_millis(400)..Duration::from_millis(1500)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    served.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.stats.open(), 0);
}

#[tokio::test]
async fn handlers_see_the_peer_address_over_plain_http() {
    let server = TestServer::start(options()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let response = request(&mut stream, "/peer").await;
    assert!(response.ends_with(&local.to_string()), "{response}");
}

struct TestCert {
    dir: tempfile::TempDir,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    fn new() -> TestCert {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        TestCert {
            dir,
            der: cert.der().clone(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> TlsConfig {
        TlsConfig::from_pem_files(self.path("cert.pem"), self.path("key.pem")).unwrap()
    }

    /// A client trusting only this certificate, aws-lc-rs like the server.
    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

#[tokio::test]
async fn tls_serves_healthz_and_the_peer_address_and_tells_plain_http_clients_to_use_https() {
    let cert = TestCert::new();
    let server = TestServer::start(ListenerOptions {
        tls: Some(cert.config()),
        ..options()
    })
    .await;
    let port = server.addr.port();

    let client = reqwest::Client::builder()
        .use_preconfigured_tls(cert.client_config())
        .resolve("localhost", server.addr)
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // ConnectInfo over TLS, with the client's exact address; ALPN picked HTTP/1.1.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cert.client_config()));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = request(&mut tls, "/peer").await;
    assert!(response.ends_with(&local.to_string()), "{response}");

    // Plain HTTP to the TLS port: a clear 400, not a hang or a bare reset.
    // reqwest has no crypto provider of its own: it takes the process's.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = plain
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("use https://"));
    // The HTTPS client's pooled keep-alive connection is the last one open.
    drop(client);
    server.wait_for_open(0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_silent_tls_client_and_a_stalled_handshake_are_closed_on_time() {
    let cert = TestCert::new();
    let server = TestServer::start(ListenerOptions {
        tls: Some(cert.config()),
        first_byte_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        ..options()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // A TLS record header promising a ClientHello that never comes.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    let (silent_after, stalled_after) = tokio::join!(
        time_until_closed(&mut silent, Duration::from_secs(4)),
        time_until_closed(&mut stalled, Duration::from_secs(4)),
    );
    assert!(silent_after < Duration::from_millis(2500), "{silent_after:?}");
    assert!(stalled_after < Duration::from_millis(2500), "{stalled_after:?}");
    server.wait_for_open(0, Duration::from_secs(1)).await;
}

#[test]
fn tls_configuration_errors_say_which_file_is_wrong_and_how() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let error = |cert_path, key_path| TlsConfig::from_pem_files(cert_path, key_path).unwrap_err();

    let missing = error(cert.path("nope.pem"), cert.path("key.pem"));
    assert!(matches!(missing, TlsConfigError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("nope.pem"), "{missing}");

    std::fs::write(cert.path("garbage.pem"), "not a certificate\n").unwrap();
    let garbage = error(cert.path("garbage.pem"), cert.path("key.pem"));
    assert!(garbage.to_string().contains("holds no certificate"), "{garbage}");

    let swapped = error(cert.path("key.pem"), cert.path("cert.pem"));
    assert!(swapped.to_string().contains("swapped"), "{swapped}");

    let key_pem = std::fs::read_to_string(cert.path("key.pem")).unwrap();
    let truncated = key_pem.replace("-----END PRIVATE KEY-----", "");
    std::fs::write(cert.path("truncated.pem"), truncated).unwrap();
    let broken_key = error(cert.path("cert.pem"), cert.path("truncated.pem"));
    assert!(matches!(broken_key, TlsConfigError::Key { .. }), "{broken_key}");

    let mismatch = error(cert.path("cert.pem"), other.path("key.pem"));
    assert!(matches!(mismatch, TlsConfigError::KeyMismatch { .. }), "{mismatch}");
    assert!(mismatch.to_string().contains("does not belong"), "{mismatch}");

    // No key material in any message or Debug output.
    let key_body: String = key_pem.lines().nth(1).unwrap().chars().take(16).collect();
    for error in [missing, garbage, swapped, broken_key, mismatch] {
        assert!(!format!("{error} {error:?}").contains(&key_body));
    }
    assert_eq!(format!("{:?}", cert.config()), "TlsConfig { .. }");
}

/// Kills the child when the test fails before waiting for it.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Set in the child process of the test below.
const FD_CHILD: &str = "HALLPASS_LISTENER_TEST_FD_CHILD";

/// The child's half of the test below: a server with very few descriptors.
/// Prints its address, serves until stdin closes, exits.
#[tokio::test]
async fn fd_starved_server_child() {
    if std::env::var_os(FD_CHILD).is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, open + 40, hard).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = Listener::new(tcp, options());
    println!("listening {}", listener.local_addr().unwrap());
    let (entered, _) = mpsc::unbounded_channel();
    let stdin_closed = tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().count());
    listener
        .serve(router(entered), async {
            let _ = stdin_closed.await;
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_out_of_file_descriptors_keeps_answering_and_logs_sparingly() {
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args(["--exact", "fd_starved_server_child", "--nocapture", "--test-threads=1"])
        .env(FD_CHILD, "1")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let mut stdout = std::io::BufReader::new(child.get().stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the child exited early");
        // libtest prints the test name on the same line first.
        if let Some((_, addr)) = line.trim().split_once("listening ") {
            break addr.parse().unwrap();
        }
    };
    let started = Instant::now();
    // Five times more connections than the child has descriptors.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        slowest = slowest.max(healthz_within_a_second(addr).await);
    }
    drop(silent);
    drop(child.get().stdin.take());
    let child = child.0.take().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed: {log}");
    let warnings = log.matches("cannot accept a connection").count();
    assert!(
        warnings >= 1,
        "no accept error was logged; was the child starved? {log}"
    );
    let seconds = started.elapsed().as_secs() as usize;
    assert!(warnings <= seconds + 2, "{warnings} warnings in {seconds} s: {log}");
    eprintln!("slowest /healthz while out of descriptors: {slowest:?}; {warnings} warnings in {seconds} s");
}
