//! The internal RPC between nodes.
//!
//! - Transport: TCP, frames of `u32` big-endian length + body
//!   ([`tokio_util::codec::LengthDelimitedCodec`], at most
//!   [`frame::MAX_FRAME_LEN`]), bodies encoded with postcard (serde).
//! - Connection setup: an HMAC challenge–response in both directions
//!   ([`auth`]); a peer that fails it, speaks out of turn or is too slow is
//!   dropped.
//! - Requests `Envelope { id, body: Req }` and replies `Envelope { id, body:
//!   Reply<Resp> }`: many calls in flight on one connection, answered in any
//!   order.
//! - [`RpcServer`] runs each request on its own task; [`RpcClient`] is one
//!   lazily (re)connected multiplexed connection with write coalescing;
//!   [`PeerPool`] keeps a few clients per peer, round-robin.
//!
//! The message types are the caller's: any `Req: Serialize +
//! DeserializeOwned` and `Resp` likewise, served by a [`Handler`].
//!
//! Not protected: confidentiality and per-frame integrity after the
//! handshake (run it on a trusted network, or under WireGuard/TLS at the
//! network layer, if an on-path attacker is in the threat model).

pub mod auth;
pub mod client;
pub mod frame;
pub mod pool;
pub mod server;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

pub use client::{ClientConfig, RpcClient};
pub use frame::{Envelope, Reply};
pub use pool::PeerPool;
pub use server::{RpcServer, ServerConfig};

/// Serves requests of type `Req` with responses of type `Resp`.
///
/// Called concurrently, one task per request. An `Err` reaches the caller
/// as [`RpcError::Remote`]; a panic reaches it as `Remote("handler
/// panicked")`. Domain errors that the caller must match on belong in
/// `Resp`.
#[async_trait]
pub trait Handler<Req, Resp>: Send + Sync + 'static {
    async fn handle(&self, req: Req) -> Result<Resp, String>;
}

/// Wraps an async closure as a [`Handler`]:
/// `handler_fn(|req: Req| async move { Ok(resp) })`.
pub fn handler_fn<Req, Resp, F, Fut>(f: F) -> std::sync::Arc<dyn Handler<Req, Resp>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, String>> + Send + 'static,
{
    std::sync::Arc::new(FnHandler(f, std::marker::PhantomData))
}

struct FnHandler<F, Req, Resp>(F, std::marker::PhantomData<fn(Req) -> Resp>);

#[async_trait]
impl<Req, Resp, F, Fut> Handler<Req, Resp> for FnHandler<F, Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, String>> + Send + 'static,
{
    async fn handle(&self, req: Req) -> Result<Resp, String> {
        (self.0)(req).await
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No reply within the call's timeout. The request may have run.
    #[error("rpc call timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke with the call in flight. The request may have
    /// run.
    #[error("connection to {0} lost")]
    ConnectionLost(SocketAddr),
    /// Could not connect (refused, unreachable, connect timeout): the
    /// request was not sent.
    #[error("cannot connect to {addr}: {source}")]
    Unavailable { addr: SocketAddr, source: std::io::Error },
    /// The handshake failed: the peer refused our proof, or could not prove
    /// that it knows the secret. Retrying will not help.
    #[error("rpc authentication with {0} failed")]
    AuthFailed(SocketAddr),
    #[error("rpc i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A message could not be encoded or decoded (or was too large).
    #[error("rpc codec error: {0}")]
    Codec(String),
    /// The remote handler answered an error.
    #[error("remote error: {0}")]
    Remote(String),
    /// The client or server is shutting down.
    #[error("rpc endpoint is shut down")]
    Shutdown,
}

impl RpcError {
    /// A short name for metrics (a closed set).
    pub fn kind(&self) -> &'static str {
        match self {
            RpcError::Timeout(_) => "timeout",
            RpcError::ConnectionLost(_) => "connection_lost",
            RpcError::Unavailable { .. } => "unavailable",
            RpcError::AuthFailed(_) => "auth_failed",
            RpcError::Io(_) => "io",
            RpcError::Codec(_) => "codec",
            RpcError::Remote(_) => "remote",
            RpcError::Shutdown => "shutdown",
        }
    }

    /// True for transient failures: the same call may succeed later or
    /// elsewhere (after re-resolving the owner). Whether re-sending is safe
    /// when the request may have run ([`RpcError::Timeout`],
    /// [`RpcError::ConnectionLost`]) is for the caller to judge
    /// (idempotency); [`RpcError::was_not_sent`] tells the safe cases.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout(_) | RpcError::ConnectionLost(_) | RpcError::Unavailable { .. } | RpcError::Io(_)
        )
    }

    /// True when the request certainly never reached the peer's handler.
    pub fn was_not_sent(&self) -> bool {
        matches!(
            self,
            RpcError::Unavailable { .. } | RpcError::AuthFailed(_) | RpcError::Shutdown
        )
    }
}

impl From<postcard::Error> for RpcError {
    fn from(e: postcard::Error) -> Self {
        RpcError::Codec(e.to_string())
    }
}
