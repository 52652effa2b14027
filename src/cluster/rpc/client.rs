//! The RPC client: one multiplexed, lazily (re)connected connection.
//!
//! Per connection, two tasks: a **writer** ([`super::frame::write_loop`])
//! that drains a queue of encoded frames with write coalescing, and a
//! **reader** that routes each reply to its caller by id (a map id →
//! oneshot). Callers encode their own request and decode their own reply,
//! so that work is spread over the callers' tasks. When the connection
//! breaks, every pending call fails with [`RpcError::ConnectionLost`]
//! (retryable) and the next call reconnects.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::RpcError;
use super::auth::client_handshake;
use super::frame::{self, Reply};
use crate::cluster::PeerFilter;
use crate::cluster::secret::{ClusterSecret, DerivedKey, RPC_LABEL};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TCP connect plus handshake must finish within this (and within the
    /// call's own timeout).
    pub connect_timeout: Duration,
    /// Frames queued for the writer before callers wait (back-pressure).
    pub queue_depth: usize,
    /// Test hook: simulated partitions (see [`PeerFilter`]).
    pub filter: Option<Arc<dyn PeerFilter>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(1),
            queue_depth: 4096,
            filter: None,
        }
    }
}

/// Counters of a client.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Connections established (1 + reconnects).
    pub connects: AtomicU64,
    /// Writer flushes, i.e. roughly `write` syscalls; with coalescing, far
    /// fewer than calls under concurrency.
    pub flushes: Arc<AtomicU64>,
}

type Waiter = oneshot::Sender<Result<Bytes, RpcError>>;

/// Calls in flight on one connection.
struct Pending {
    addr: SocketAddr,
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    /// Set once the connection is dead; no call may register after that
    /// (so none can wait forever on a connection nobody reads).
    closed: bool,
    next_id: u64,
    calls: HashMap<u64, Waiter>,
}

impl Pending {
    fn register(&self) -> Option<(u64, oneshot::Receiver<Result<Bytes, RpcError>>)> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        state.calls.insert(id, tx);
        Some((id, rx))
    }

    fn complete(&self, id: u64, reply: Bytes) {
        // An unknown id is a call that timed out and left: drop the reply.
        if let Some(waiter) = self.state.lock().calls.remove(&id) {
            let _ = waiter.send(Ok(reply));
        }
    }

    fn remove(&self, id: u64) {
        self.state.lock().calls.remove(&id);
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Marks the connection dead and fails every pending call.
    fn fail_all(&self) {
        let calls = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.calls)
        };
        for (_, waiter) in calls {
            let _ = waiter.send(Err(RpcError::ConnectionLost(self.addr)));
        }
    }
}

/// Removes the call from the pending map if the caller gives up (timeout,
/// cancellation) before the reply.
struct CallGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

/// One live connection. Dropping it stops its tasks.
struct Conn {
    tx: mpsc::Sender<Bytes>,
    pending: Arc<Pending>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.pending.fail_all();
    }
}

/// A client of one peer. Cheap to share (`Arc`); calls run concurrently
/// over one connection.
pub struct RpcClient<Req, Resp> {
    addr: SocketAddr,
    key: DerivedKey,
    cfg: ClientConfig,
    conn: Mutex<Option<Arc<Conn>>>,
    /// One connect attempt at a time; `attempts`/`last_error` let the
    /// callers that queued behind a failed attempt fail fast.
    connecting: AsyncMutex<()>,
    attempts: AtomicU64,
    last_error: Mutex<Option<(std::io::ErrorKind, String, bool)>>,
    stats: ClientStats,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> RpcClient<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    /// A client of `addr`; connects on the first call.
    pub fn new(addr: SocketAddr, secret: &ClusterSecret, cfg: ClientConfig) -> RpcClient<Req, Resp> {
        RpcClient {
            addr,
            key: secret.derive(RPC_LABEL),
            cfg,
            conn: Mutex::new(None),
            connecting: AsyncMutex::new(()),
            attempts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            stats: ClientStats::default(),
            _types: PhantomData,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Sends `req` and waits for the reply, at most `timeout` (connecting
    /// included).
    pub async fn call(&self, req: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        match tokio::time::timeout(timeout, self.call_inner(req)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(RpcError::Timeout(timeout)),
        }
    }

    async fn call_inner(&self, req: &Req) -> Result<Resp, RpcError> {
        if let Some(filter) = &self.cfg.filter
            && !filter.allow(self.addr)
        {
            self.disconnect();
            let source = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "blocked by peer filter");
            return Err(RpcError::Unavailable {
                addr: self.addr,
                source,
            });
        }
        // A connection can die between being picked and the call being
        // registered; the request is not sent yet then, so try once more.
        let mut tries = 0;
        let (conn, id, rx) = loop {
            let conn = self.connection().await?;
            if let Some((id, rx)) = conn.pending.register() {
                break (conn, id, rx);
            }
            tries += 1;
            if tries == 2 {
                return Err(RpcError::ConnectionLost(self.addr));
            }
        };
        let _guard = CallGuard {
            pending: &conn.pending,
            id,
        };
        let frame = frame::encode(id, req)?;
        conn.tx
            .send(frame)
            .await
            .map_err(|_| RpcError::ConnectionLost(self.addr))?;
        let body = rx.await.map_err(|_| RpcError::ConnectionLost(self.addr))??;
        match frame::decode_body::<Reply<Resp>>(&body)? {
            Reply::Ok(resp) => Ok(resp),
            Reply::Err(msg) => Err(RpcError::Remote(msg)),
        }
    }

    /// Drops the current connection (in-flight calls fail with
    /// `ConnectionLost`); the next call reconnects.
    pub fn disconnect(&self) {
        self.conn.lock().take();
    }

    fn current(&self) -> Option<Arc<Conn>> {
        let mut slot = self.conn.lock();
        match slot.as_ref() {
            Some(conn) if !conn.pending.is_closed() => Some(conn.clone()),
            Some(_) => {
                slot.take();
                None
            }
            None => None,
        }
    }

    async fn connection(&self) -> Result<Arc<Conn>, RpcError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some((kind, msg, auth)) = self.last_error.lock().clone()
        {
            // Someone tried while we queued, and failed: share its verdict.
            return Err(if auth {
                RpcError::AuthFailed(self.addr)
            } else {
                RpcError::Unavailable {
                    addr: self.addr,
                    source: std::io::Error::new(kind, msg),
                }
            });
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let result = tokio::time::timeout(self.cfg.connect_timeout, self.connect()).await;
        let result = result.unwrap_or_else(|_| {
            Err(RpcError::Unavailable {
                addr: self.addr,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })
        });
        match result {
            Ok(conn) => {
                *self.last_error.lock() = None;
                *self.conn.lock() = Some(conn.clone());
                Ok(conn)
            }
            Err(err) => {
                let remembered = match &err {
                    RpcError::AuthFailed(_) => (std::io::ErrorKind::PermissionDenied, err.to_string(), true),
                    RpcError::Unavailable { source, .. } => (source.kind(), source.to_string(), false),
                    other => (std::io::ErrorKind::Other, other.to_string(), false),
                };
                *self.last_error.lock() = Some(remembered);
                Err(err)
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Conn>, RpcError> {
        let addr = self.addr;
        let unavailable = |source| RpcError::Unavailable { addr, source };
        let mut stream = TcpStream::connect(addr).await.map_err(unavailable)?;
        let _ = stream.set_nodelay(true);
        if let Err(err) = client_handshake(&mut stream, &self.key).await {
            metrics::counter!("tollgate_rpc_client_handshake_failures_total", "reason" => err.label()).increment(1);
            return Err(match err {
                super::auth::HandshakeError::Io(source) => unavailable(source),
                _ => RpcError::AuthFailed(addr),
            });
        }
        let (rd, wr) = stream.into_split();
        let pending = Arc::new(Pending {
            addr,
            state: Mutex::new(PendingState::default()),
        });
        let (tx, rx) = mpsc::channel(self.cfg.queue_depth);
        let reader = tokio::spawn(read_loop(rd, pending.clone()));
        let flushes = self.stats.flushes.clone();
        let writer_pending = pending.clone();
        let writer = tokio::spawn(async move {
            if let Err(err) = frame::write_loop(wr, rx, flushes).await {
                tracing::debug!(%addr, error = %err, "rpc write failed");
            }
            writer_pending.fail_all();
        });
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Conn {
            tx,
            pending,
            reader,
            writer,
        }))
    }
}

async fn read_loop(rd: OwnedReadHalf, pending: Arc<Pending>) {
    let mut frames = FramedRead::new(rd, frame::codec());
    while let Some(next) = frames.next().await {
        let Ok(frame) = next else { break };
        let frame = frame.freeze();
        match frame::split_id(&frame) {
            Ok((id, body)) => {
                let offset = frame.len() - body.len();
                pending.complete(id, frame.slice(offset..));
            }
            Err(err) => {
                tracing::warn!(addr = %pending.addr, error = %err, "rpc reply without an id; closing");
                break;
            }
        }
    }
    pending.fail_all();
}
