//! The RPC server: accepts connections, authenticates them, and runs every
//! request on its own task (many in flight per connection), replying with
//! the request's id.
//!
//! Tasks: one accept loop; per connection, one reader (the connection task)
//! and one writer ([`super::frame::write_loop`]); one task per request.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::server_handshake;
use super::frame::{self, Reply};
use super::{Handler, RpcError};
use crate::cluster::secret::{ClusterSecret, DerivedKey, RPC_LABEL};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A peer must complete the handshake within this (else dropped).
    pub handshake_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    /// Requests running at once per connection; past it the server stops
    /// reading that connection (back-pressure) until some finish.
    pub max_in_flight_per_connection: usize,
    /// How long [`RpcServer::shutdown`] waits for running requests.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            handshake_timeout: Duration::from_secs(2),
            max_connections: 1024,
            max_in_flight_per_connection: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Counters of a server (also exported as metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections dropped during the handshake (bad proof, timeout, junk).
    pub handshake_failures: AtomicU64,
    /// Connections dropped after the handshake for a protocol violation.
    pub protocol_errors: AtomicU64,
    /// Reply flushes over all connections (≈ `write` syscalls).
    pub flushes: Arc<AtomicU64>,
}

/// A running server. Dropping it kills it like [`RpcServer::abort`].
pub struct RpcServer {
    local_addr: SocketAddr,
    /// Stops accepting and reading new requests (graceful).
    stop: CancellationToken,
    /// Stops everything at once.
    kill: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    stats: Arc<ServerStats>,
}

struct Shared<Req, Resp> {
    key: DerivedKey,
    handler: Arc<dyn Handler<Req, Resp>>,
    cfg: ServerConfig,
    stop: CancellationToken,
    kill: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<ServerStats>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl RpcServer {
    /// Binds `addr` (port 0 picks one) and serves with default limits.
    pub async fn bind<Req, Resp>(
        addr: SocketAddr,
        secret: &ClusterSecret,
        handler: Arc<dyn Handler<Req, Resp>>,
    ) -> Result<RpcServer, RpcError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        RpcServer::bind_with(addr, secret, handler, ServerConfig::default()).await
    }

    /// Binds `addr` and serves with the given limits.
    pub async fn bind_with<Req, Resp>(
        addr: SocketAddr,
        secret: &ClusterSecret,
        handler: Arc<dyn Handler<Req, Resp>>,
        cfg: ServerConfig,
    ) -> Result<RpcServer, RpcError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, kill, tracker) = (CancellationToken::new(), CancellationToken::new(), TaskTracker::new());
        let stats = Arc::new(ServerStats::default());
        let grace = cfg.shutdown_grace;
        let shared = Arc::new(Shared {
            key: secret.derive(RPC_LABEL),
            handler,
            cfg,
            stop: stop.clone(),
            kill: kill.clone(),
            tracker: tracker.clone(),
            stats: stats.clone(),
            _types: PhantomData,
        });
        tracker.spawn(accept_loop(listener, shared));
        Ok(RpcServer {
            local_addr,
            stop,
            kill,
            tracker,
            grace,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting connections and reading requests, lets running
    /// requests finish and their replies go out (up to the shutdown grace),
    /// then closes every connection.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(addr = %self.local_addr, "rpc server: requests still running after the grace period");
        }
        self.kill.cancel();
        self.tracker.wait().await;
    }

    /// Kills the server at once, as a crash would: connections are reset,
    /// running requests are dropped without reply.
    pub async fn abort(self) {
        self.kill.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

async fn accept_loop<Req, Resp>(listener: TcpListener, shared: Arc<Shared<Req, Resp>>)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(shared.cfg.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = shared.kill.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %err, "rpc accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("tollgate_rpc_connections_refused_total").increment(1);
            continue; // dropping the stream closes it
        };
        let shared2 = shared.clone();
        shared.tracker.spawn(async move {
            let kill = shared2.kill.clone();
            kill.run_until_cancelled(serve_connection(stream, peer, shared2)).await;
            drop(permit);
        });
    }
}

async fn serve_connection<Req, Resp>(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared<Req, Resp>>)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(shared.cfg.handshake_timeout, server_handshake(&mut stream, &shared.key));
    let failure = match handshake.await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err.label()),
        Err(_elapsed) => Some("timeout"),
    };
    if let Some(reason) = failure {
        shared.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tollgate_rpc_handshake_failures_total", "reason" => reason).increment(1);
        tracing::info!(%peer, reason, "rpc peer failed the handshake; dropped");
        return;
    }
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, frame::codec());
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let writer = shared
        .tracker
        .spawn(
            shared
                .kill
                .clone()
                .run_until_cancelled_owned(frame::write_loop(wr, rx, shared.stats.flushes.clone())),
        );
    let in_flight = Arc::new(Semaphore::new(shared.cfg.max_in_flight_per_connection));
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => break,
            next = reader.next() => next,
        };
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame.freeze(),
            Some(Err(err)) => {
                protocol_error(&shared, peer, &err.to_string());
                break;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let id = match frame::split_id(&frame) {
            Ok((id, _)) => id,
            Err(err) => {
                protocol_error(&shared, peer, &err.to_string());
                break;
            }
        };
        let shared2 = shared.clone();
        let tx = tx.clone();
        shared.tracker.spawn(async move {
            let kill = shared2.kill.clone();
            kill.run_until_cancelled(async move {
                let reply = run_request(&shared2, &frame).await;
                let bytes = frame::encode(id, &reply)
                    .or_else(|err| frame::encode(id, &Reply::<Resp>::Err(format!("reply not encodable: {err}"))));
                if let Ok(bytes) = bytes {
                    let _ = tx.send(bytes).await;
                }
            })
            .await;
            drop(permit);
        });
    }
    // The writer ends once every request task has replied and dropped its
    // sender; after a kill the tasks are dropped, which drops the senders.
    drop(tx);
    let _ = writer.await;
}

/// Decodes and runs one request. A body that does not decode, a handler
/// error or a panic all become `Reply::Err`, so the caller hears at once.
async fn run_request<Req, Resp>(shared: &Shared<Req, Resp>, frame: &[u8]) -> Reply<Resp>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let body = match frame::split_id(frame).and_then(|(_, body)| frame::decode_body::<Req>(body)) {
        Ok(body) => body,
        Err(err) => return Reply::Err(format!("bad request: {err}")),
    };
    match AssertUnwindSafe(shared.handler.handle(body)).catch_unwind().await {
        Ok(Ok(resp)) => Reply::Ok(resp),
        Ok(Err(msg)) => Reply::Err(msg),
        Err(_panic) => {
            metrics::counter!("tollgate_rpc_handler_panics_total").increment(1);
            Reply::Err("handler panicked".to_string())
        }
    }
}

fn protocol_error<Req, Resp>(shared: &Shared<Req, Resp>, peer: SocketAddr, what: &str) {
    shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("tollgate_rpc_protocol_errors_total").increment(1);
    tracing::warn!(%peer, error = what, "rpc protocol violation; connection closed");
}
