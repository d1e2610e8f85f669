//! The plugin process's server: listen, print the handshake line, serve
//! gRPC over mutual TLS (or plaintext when Terraform turned TLS off) until
//! Terraform sends `Shutdown`.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::handshake::{PluginEnv, handshake_line};
use crate::plugin::{Controller, Stdio};
use crate::proto::plugin::grpc_controller_server::GrpcControllerServer;
use crate::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use crate::proto::tfplugin6::provider_server::ProviderServer;
use crate::provider::HallpassProvider;
use crate::tls::{ServerIdentity, TlsError, server_config};

/// Longest a client may take over its TLS handshake before being dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After `Shutdown`, how long open calls may take to finish. Terraform kills
/// the process 2 s after asking; leave it well inside that.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// What stops the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on 127.0.0.1 (ports {range}): {source}")]
    Listen { range: String, source: std::io::Error },
    #[error("cannot write the handshake line to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("the gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("the gRPC server task failed: {0}")]
    Task(String),
}

/// Serves until Terraform sends `Shutdown`; `print` receives the handshake
/// line (the binary writes it to stdout).
pub async fn run(env: PluginEnv, print: impl FnOnce(&str) -> std::io::Result<()>) -> Result<(), ServeError> {
    let listener = listen(env.ports).await?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        range: "chosen".into(),
        source,
    })?;
    let (acceptor, cert) = match &env.client_cert_pem {
        Some(pem) => {
            let identity = ServerIdentity::generate()?;
            let config = server_config(&identity, pem)?;
            (Some(TlsAcceptor::from(Arc::new(config))), Some(identity.cert))
        }
        None => (None, None),
    };
    let incoming = incoming(listener, acceptor);

    let controller = Controller::default();
    let requested = controller.clone();
    let shutdown = controller.wait_for_shutdown();
    let server_shutdown = controller.wait_for_shutdown();
    let (health, health_service) = tonic_health::server::health_reporter();
    // go-plugin's servers report the service "plugin" as serving.
    health
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let server = tonic::transport::Server::builder()
        .add_service(ProviderServer::new(HallpassProvider::new()))
        .add_service(GrpcControllerServer::new(controller))
        .add_service(GrpcStdioServer::new(Stdio))
        .add_service(health_service);
    let mut serving = tokio::spawn(server.serve_with_incoming_shutdown(incoming, server_shutdown));

    print(&handshake_line(addr, cert.as_ref().map(|der| der.as_ref()))).map_err(ServeError::Stdout)?;
    crate::log::info("serving Terraform", &[("address", &addr.to_string())]);

    tokio::select! {
        // Both branches wake on Terraform's Shutdown, in either order; only
        // a server that stopped before anyone asked it to has failed.
        ended = &mut serving => {
            ended.map_err(|e| ServeError::Task(e.to_string()))??;
            if requested.shutdown_requested() {
                return Ok(());
            }
            return Err(ServeError::Task("the gRPC server stopped by itself".into()));
        }
        () = shutdown => {}
    }
    // Calls still open after the grace, or a panicked task: the process is
    // exiting anyway, as Terraform asked.
    if let Ok(Ok(result)) = tokio::time::timeout(SHUTDOWN_GRACE, serving).await {
        result?;
    }
    Ok(())
}

/// A listener on 127.0.0.1, within Terraform's port range when it gave one.
async fn listen(ports: Option<(u16, u16)>) -> Result<TcpListener, ServeError> {
    let (min, max) = ports.unwrap_or((0, 0));
    let mut last = None;
    for port in min..=max {
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(ServeError::Listen {
        range: format!("{min}-{max}"),
        source: last.unwrap_or_else(|| std::io::Error::other("empty port range")),
    })
}

/// The accepted connections, TLS handshakes done. Each handshake runs in a
/// task of its own so that a slow client holds up no other.
fn incoming(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
) -> impl futures::Stream<Item = Result<Connection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    crate::log::warn("accepting a connection failed", &[("error", &error.to_string())]);
                    // Out of file descriptors and the like: don't spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Some(connection) = secure(stream, peer, acceptor).await {
                    let _ = tx.send(Ok(connection)).await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Runs the TLS handshake when TLS is on; `None` (logged) when it fails.
async fn secure(stream: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>) -> Option<Connection> {
    let Some(acceptor) = acceptor else {
        return Some(Connection::Plain(stream));
    };
    let peer = peer.to_string();
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Connection::Tls(Box::new(tls))),
        Ok(Err(error)) => {
            crate::log::warn(
                "TLS handshake refused",
                &[("peer", &peer), ("error", &error.to_string())],
            );
            None
        }
        Err(_) => {
            crate::log::warn("TLS handshake timed out", &[("peer", &peer)]);
            None
        }
    }
}

/// One client connection, with or without TLS.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Connection {
    // Nothing about the peer is used: the client certificate was checked
    // during the handshake, and there is only ever one client.
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(stream) => stream.is_write_vectored(),
            Connection::Tls(stream) => stream.is_write_vectored(),
        }
    }
}
