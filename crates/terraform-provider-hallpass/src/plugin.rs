//! go-plugin's own services: `plugin.GRPCController` (Terraform's request
//! to exit) and `plugin.GRPCStdio` (forwarded output, unused here).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::proto::plugin::grpc_controller_server::GrpcController;
use crate::proto::plugin::grpc_stdio_server::GrpcStdio;
use crate::proto::plugin::{Empty, StdioData};

/// Answers `Shutdown` and wakes everyone waiting in
/// [`Controller::wait_for_shutdown`].
#[derive(Debug, Clone)]
pub struct Controller {
    // A watch, not a Notify: every waiter must wake (the gRPC server and
    // the main task), also one that starts waiting after the request came.
    shutdown: Arc<watch::Sender<bool>>,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            shutdown: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Controller {
    /// Whether Terraform has asked for shutdown.
    pub fn shutdown_requested(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once Terraform has asked for shutdown.
    pub fn wait_for_shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone, which only happens at exit.
            let _ = receiver.wait_for(|requested| *requested).await;
        }
    }
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        crate::log::debug("Terraform asked the provider to exit", &[]);
        self.shutdown.send_replace(true);
        Ok(Response::new(Empty {}))
    }
}

/// `StreamStdio` answers with a stream that stays open and carries nothing:
/// the provider writes its log straight to stderr, which Terraform reads
/// anyway, and never prints to stdout after the handshake. (An UNIMPLEMENTED
/// answer would also do, but costs a warning in Terraform's log each run.)
#[derive(Debug, Clone, Default)]
pub struct Stdio;

type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(&self, _request: Request<Empty>) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
}
