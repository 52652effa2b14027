//! A few connections per peer, used round-robin.
//!
//! One connection already carries many calls; a second or third spreads the
//! per-connection reader/writer work over cores and keeps one slow socket
//! from stalling every call to that peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ClientConfig, RpcClient, RpcError};
use crate::cluster::ClusterSecret;

struct Peer<Req, Resp> {
    clients: Vec<Arc<RpcClient<Req, Resp>>>,
    next: AtomicUsize,
}

/// Clients of every peer, created on first use.
pub struct PeerPool<Req, Resp> {
    secret: ClusterSecret,
    cfg: ClientConfig,
    per_peer: usize,
    peers: RwLock<HashMap<SocketAddr, Arc<Peer<Req, Resp>>>>,
}

impl<Req, Resp> PeerPool<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    /// `per_peer` connections per peer address (at least 1; 2–4 is plenty).
    pub fn new(secret: &ClusterSecret, per_peer: usize, cfg: ClientConfig) -> PeerPool<Req, Resp> {
        PeerPool {
            secret: secret.clone(),
            cfg,
            per_peer: per_peer.max(1),
            peers: RwLock::new(HashMap::new()),
        }
    }

    /// The next client of `addr` in round-robin order.
    pub fn client(&self, addr: SocketAddr) -> Arc<RpcClient<Req, Resp>> {
        let peer = self.peer(addr);
        let i = peer.next.fetch_add(1, Ordering::Relaxed) % peer.clients.len();
        peer.clients[i].clone()
    }

    /// Calls `addr` on its next connection.
    pub async fn call(&self, addr: SocketAddr, req: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        self.client(addr).call(req, timeout).await
    }

    /// Drops the connections to `addr` (a node that left); calls in flight
    /// on them finish or fail as usual.
    pub fn forget(&self, addr: SocketAddr) {
        if let Some(peer) = self.peers.write().remove(&addr) {
            for client in &peer.clients {
                client.disconnect();
            }
        }
    }

    /// Peer addresses with clients.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.read().keys().copied().collect()
    }

    fn peer(&self, addr: SocketAddr) -> Arc<Peer<Req, Resp>> {
        if let Some(peer) = self.peers.read().get(&addr) {
            return peer.clone();
        }
        self.peers
            .write()
            .entry(addr)
            .or_insert_with(|| {
                let clients = (0..self.per_peer)
                    .map(|_| Arc::new(RpcClient::new(addr, &self.secret, self.cfg.clone())))
                    .collect();
                Arc::new(Peer {
                    clients,
                    next: AtomicUsize::new(0),
                })
            })
            .clone()
    }
}
