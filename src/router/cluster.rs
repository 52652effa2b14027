//! Routing in a cluster: which node owns an entity, and getting an
//! operation there.
//!
//! The owner is the rendezvous-hash winner among live, `ready` nodes in
//! this node's view. Views can disagree for a moment while gossip spreads a
//! change, so a peer that does not think it owns an entity answers
//! `NotOwner` and the caller re-resolves and retries (bounded). An entity
//! this node has just handed over is remembered ("moved") until the view
//! catches up, so it is never served here from a stale copy.

use super::peer::{EntityOp, OpReply, PeerRequest, PeerResponse};
use super::registry::RouteError;
use crate::actor::{EntitySnapshot, Takeover};
use crate::cluster::rpc::{PeerPool, RpcError};
use crate::cluster::{ClusterView, NodeId, NodeStatus, owner};
use crate::entity::EntityKey;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one RPC may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an operation keeps re-resolving and retrying before the
/// caller gets a 503. Longer than failure detection (≈ 2–3 s), so a
/// crashed owner's entities are served by a survivor within it.
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(6);
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(400);

/// Where an operation on an entity should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Remote {
        node: NodeId,
        rpc: SocketAddr,
    },
    /// No ready node is known (this node is starting, or everyone leaves).
    NoOwner,
}

/// This node's routing state in a cluster.
pub struct ClusterRouting {
    self_id: NodeId,
    view: watch::Receiver<Arc<ClusterView>>,
    pool: PeerPool<PeerRequest, PeerResponse>,
    /// Entities handed over to another node whose `ready` status this
    /// node's view may not show yet.
    moved: DashMap<EntityKey, NodeId, foldhash::fast::RandomState>,
}

impl ClusterRouting {
    pub fn new(
        self_id: NodeId,
        view: watch::Receiver<Arc<ClusterView>>,
        pool: PeerPool<PeerRequest, PeerResponse>,
    ) -> Self {
        ClusterRouting {
            self_id,
            view,
            pool,
            moved: DashMap::with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    pub fn self_id(&self) -> &NodeId {
        &self.self_id
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// Where `key` lives now.
    pub fn target(&self, key: &EntityKey) -> Target {
        let view = self.view();
        let owner = view.owner(key.as_str());
        if !self.moved.is_empty()
            && let Some(moved_to) = self.moved.get(key).map(|m| m.clone())
        {
            let still_there = view
                .node(moved_to.as_str())
                .filter(|n| n.live && n.status != NodeStatus::Leaving);
            match (still_there, owner) {
                // The view has caught up: the note is no longer needed.
                (_, Some(o)) if o.node_id == moved_to => {
                    self.moved.remove(key);
                }
                (Some(node), _) => {
                    if let Some(rpc) = node.rpc_addr {
                        return Target::Remote { node: moved_to, rpc };
                    }
                }
                // It left or died: ownership follows the view again.
                (None, _) => {
                    self.moved.remove(key);
                }
            }
        }
        match owner {
            Some(o) if o.node_id == self.self_id => Target::Local,
            Some(o) => match o.rpc_addr {
                Some(rpc) => Target::Remote {
                    node: o.node_id.clone(),
                    rpc,
                },
                None => Target::NoOwner,
            },
            None => Target::NoOwner,
        }
    }

    /// Remembers that `key` was handed to `to`.
    pub fn note_moved(&self, key: &EntityKey, to: NodeId) {
        if to != self.self_id {
            self.moved.insert(key.clone(), to);
        }
    }

    pub async fn call(&self, rpc: SocketAddr, req: &PeerRequest) -> Result<PeerResponse, RpcError> {
        self.pool.call(rpc, req, CALL_TIMEOUT).await
    }

    pub async fn call_with_timeout(
        &self,
        rpc: SocketAddr,
        req: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, RpcError> {
        self.pool.call(rpc, req, timeout).await
    }

    /// Runs `op` on a remote owner, re-resolving and retrying while the
    /// owner is unreachable or views disagree. Returns `Ok(None)` when the
    /// owner turns out to be this node (the caller runs it locally).
    pub async fn forward(&self, key: &EntityKey, op: &EntityOp) -> Result<Option<OpReply>, RouteError> {
        let started = Instant::now();
        let deadline = started + FORWARD_DEADLINE;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.target(key) {
                Target::Local => return Ok(None),
                Target::Remote { node, rpc } => {
                    let req = PeerRequest::Entity {
                        key: key.clone(),
                        op: op.clone(),
                        hops: 0,
                    };
                    let span = tracing::debug_span!("forward", %node, op = op.name());
                    match tracing::Instrument::instrument(self.call(rpc, &req), span).await {
                        Ok(PeerResponse::Op(reply)) => {
                            metrics::counter!("tollgate_forwarded_ops_total", "op" => op.name()).increment(1);
                            metrics::histogram!("tollgate_forward_duration_seconds")
                                .record(started.elapsed().as_secs_f64());
                            return Ok(Some(reply));
                        }
                        Ok(PeerResponse::Failed(why)) => return Err(RouteError::Load(why)),
                        Ok(PeerResponse::NotOwner) => {
                            metrics::counter!("tollgate_forward_retries_total", "why" => "not_owner").increment(1);
                        }
                        Ok(other) => {
                            return Err(RouteError::Peer(format!(
                                "{node} answered {other:?} to an entity operation"
                            )));
                        }
                        Err(err) if err.was_not_sent() || (err.is_retryable() && op.is_idempotent()) => {
                            metrics::counter!("tollgate_rpc_errors_total", "kind" => err.kind()).increment(1);
                            metrics::counter!("tollgate_forward_retries_total", "why" => "unreachable").increment(1);
                            tracing::debug!(%node, error = %err, "owner unreachable; will re-resolve");
                        }
                        Err(err) => {
                            metrics::counter!("tollgate_rpc_errors_total", "kind" => err.kind()).increment(1);
                            return Err(RouteError::Peer(format!("{node}: {err}")));
                        }
                    }
                }
                Target::NoOwner => {}
            }
            if Instant::now() + backoff > deadline {
                return Err(RouteError::Unavailable);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The node that would own `key` if this one did not exist, among live
    /// nodes that are ready or leaving: the owner before this node joined,
    /// or the leaving owner it takes over from.
    fn previous_owner(&self, key: &EntityKey) -> Option<(NodeId, SocketAddr)> {
        let view = self.view();
        let candidates: Vec<NodeId> = view
            .nodes
            .iter()
            .filter(|n| n.live && n.node_id != self.self_id)
            .filter(|n| matches!(n.status, NodeStatus::Ready | NodeStatus::Leaving))
            .map(|n| n.node_id.clone())
            .collect();
        let source = owner(key.as_str(), &candidates)?;
        let rpc = view.node(source.as_str())?.rpc_addr?;
        Some((source.clone(), rpc))
    }
}

impl Takeover for ClusterRouting {
    fn node_id(&self) -> &str {
        self.self_id.as_str()
    }

    fn previous_state<'a>(
        &'a self,
        key: &'a EntityKey,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<EntitySnapshot>> + Send + 'a>> {
        Box::pin(async move {
            let (source, rpc) = self.previous_owner(key)?;
            let req = PeerRequest::Surrender {
                key: key.clone(),
                to: self.self_id.to_string(),
            };
            match self.call(rpc, &req).await {
                Ok(PeerResponse::Surrendered(snapshot)) => {
                    if snapshot.is_some() {
                        metrics::counter!("tollgate_handoffs_total", "direction" => "in").increment(1);
                    }
                    snapshot
                }
                Ok(other) => {
                    tracing::warn!(%source, entity = %key, reply = ?other, "unexpected surrender reply; loading from the store");
                    None
                }
                // Dead or cut off: the store is the truth (at most one flush
                // interval of its counts is lost; money never is).
                Err(err) => {
                    tracing::info!(%source, entity = %key, error = %err, "previous owner unreachable; loading from the store");
                    None
                }
            }
        })
    }
}
