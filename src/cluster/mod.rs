//! The cluster foundations: who is in the cluster, who owns an entity, and
//! how nodes talk to each other.
//!
//! - [`ownership`]: rendezvous hashing of an entity key over node ids (pure).
//! - [`membership`]: chitchat gossip (UDP) publishing each node's `http_addr`,
//!   `rpc_addr` and `status`, and a [`ClusterView`] watch channel derived
//!   from it. [`Membership::single_node`] gives the same view without gossip.
//! - [`gossip_transport`]: the chitchat transport, UDP with an HMAC-SHA256 tag
//!   on every datagram; unauthenticated datagrams are dropped.
//! - [`rpc`]: the internal RPC, TCP + length-delimited postcard frames,
//!   multiplexed by request id, authenticated by an HMAC challenge–response.
//!
//! Every key used on the wire is derived from one [`ClusterSecret`], with a
//! distinct label per use (see [`secret`]), so the gossip key and the RPC key
//! are never the same bytes.

pub mod gossip_transport;
pub mod membership;
pub mod ownership;
pub mod rpc;
pub mod secret;
pub mod view;

pub use membership::{GossipTuning, Membership, MembershipConfig};
pub use ownership::{NodeId, owner};
pub use secret::ClusterSecret;
pub use view::{ClusterView, NodeInfo, NodeStatus};

/// Cuts this node off from some peers: a test hook to simulate network
/// partitions in-process. Installed in the gossip transport
/// ([`MembershipConfig::filter`]) it drops datagrams to and from denied
/// peers; in the RPC client ([`rpc::ClientConfig::filter`]) it fails calls to
/// them with [`rpc::RpcError::Unavailable`] and drops the open connection (so
/// calls in flight fail with `ConnectionLost`). Without one, everything
/// passes.
pub trait PeerFilter: Send + Sync + std::fmt::Debug + 'static {
    /// False to cut traffic between this node and `peer` (a gossip or RPC
    /// address).
    fn allow(&self, peer: std::net::SocketAddr) -> bool;
}

/// A [`PeerFilter`] from a mutable set of blocked addresses.
#[derive(Debug, Default)]
pub struct BlockList {
    blocked: parking_lot::RwLock<std::collections::HashSet<std::net::SocketAddr>>,
}

impl BlockList {
    pub fn block(&self, peer: std::net::SocketAddr) {
        self.blocked.write().insert(peer);
    }

    pub fn unblock(&self, peer: std::net::SocketAddr) {
        self.blocked.write().remove(&peer);
    }

    pub fn clear(&self) {
        self.blocked.write().clear();
    }
}

impl PeerFilter for BlockList {
    fn allow(&self, peer: std::net::SocketAddr) -> bool {
        !self.blocked.read().contains(&peer)
    }
}

/// Errors of the cluster layer outside the RPC (which has
/// [`rpc::RpcError`]).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster secret is unusable (too short).
    #[error("cluster secret must be at least {min} bytes, got {got}")]
    WeakSecret { min: usize, got: usize },
    /// The gossip socket could not be bound.
    #[error("cannot bind gossip socket on {addr}: {source}")]
    GossipBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// chitchat refused to start or failed while shutting down.
    #[error("gossip: {0}")]
    Gossip(String),
}
