//! The router: resolves an entity key to the actor that owns it and
//! delivers one operation to it.
//!
//! On one node every entity is local. This is the seam the cluster slots in
//! behind: a key whose owner is another node will be sent there over the
//! internal RPC, and callers above (the check and usage services) do not
//! change.

pub mod cluster;
pub mod deltas;
pub mod flusher;
pub mod peer;
pub mod peer_handler;
mod registry;
mod sweeper;

pub use cluster::{ClusterRouting, Target};
pub use peer::{EntityOp, OpReply, PeerRequest, PeerResponse};
pub use registry::{LocalEntities, OwnershipCheck, RouteError};
pub use sweeper::{PassivationPolicy, spawn_sweeper};

use crate::actor::{AdmitReply, EntityMsg, EntityView, Settlement};
use crate::entity::EntityKey;
use crate::limits::entity::{Admitted, Ask};
use rust_decimal::Decimal;
use std::sync::Arc;
use uuid::Uuid;

/// Delivers entity operations to their owners.
#[derive(Clone)]
pub struct EntityRouter {
    local: Arc<LocalEntities>,
    /// `None` on a single node: every entity is local.
    cluster: Option<Arc<ClusterRouting>>,
}

impl EntityRouter {
    pub fn new(local: Arc<LocalEntities>) -> Self {
        EntityRouter { local, cluster: None }
    }

    /// A router for a node in a cluster.
    pub fn clustered(local: Arc<LocalEntities>, cluster: Arc<ClusterRouting>) -> Self {
        EntityRouter {
            local,
            cluster: Some(cluster),
        }
    }

    pub fn local(&self) -> &Arc<LocalEntities> {
        &self.local
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterRouting>> {
        self.cluster.as_ref()
    }

    /// Does this node own `key` now? (Always, on a single node.)
    pub fn is_local(&self, key: &EntityKey) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.target(key) == Target::Local)
    }

    /// Might using `key` bring a new entity into memory? Exact for an
    /// entity this node owns; an entity owned by another node counts as
    /// new, since asking its owner would cost what the cap saves (see
    /// `limits::new_entities`: the cap is counted where a request arrives).
    pub fn may_be_new(&self, key: &EntityKey) -> bool {
        !self.is_local(key) || !self.local.is_resident(key)
    }

    /// Runs `op` wherever `key` lives.
    async fn remote(&self, key: &EntityKey, op: EntityOp) -> Result<OpReply, RouteError> {
        if let Some(cluster) = &self.cluster
            && let Some(reply) = cluster.forward(key, &op).await?
        {
            return Ok(reply);
        }
        // The owner turned out to be this node.
        self.run_local(key, op).await
    }

    /// Runs `op` on this node's actor for `key` (the RPC handler's path).
    pub async fn run_local(&self, key: &EntityKey, op: EntityOp) -> Result<OpReply, RouteError> {
        Ok(match op {
            EntityOp::Admit(ask) => OpReply::Admit(self.local.call(key, |reply| EntityMsg::Admit(ask, reply)).await?),
            EntityOp::Undo(admitted) => {
                OpReply::View(self.local.call(key, |reply| EntityMsg::Undo(admitted, reply)).await?)
            }
            EntityOp::View => OpReply::View(self.local.view(key).await?),
            EntityOp::Settle(settlement) => OpReply::View(
                self.local
                    .call(key, |reply| EntityMsg::Settle(settlement, reply))
                    .await?,
            ),
            EntityOp::Release(hold) => {
                OpReply::Released(self.local.call(key, |reply| EntityMsg::Release(hold, reply)).await?)
            }
            EntityOp::SetTier(tier) => {
                let tier: Arc<str> = tier.into();
                self.local
                    .call_if_resident(key, |reply| EntityMsg::SetTier(tier.clone(), reply))
                    .await?;
                OpReply::Done
            }
            EntityOp::SetBudget(limit) => {
                self.local
                    .call_if_resident(key, |reply| EntityMsg::SetBudget(limit, reply))
                    .await?;
                OpReply::Done
            }
        })
    }

    /// Counts a check against one entity if its limits allow.
    pub async fn admit(&self, key: &EntityKey, ask: Ask) -> Result<AdmitReply, RouteError> {
        if self.is_local(key) {
            match self.local.call(key, |reply| EntityMsg::Admit(ask, reply)).await {
                Err(RouteError::Moved) => {}
                done => return done,
            }
        }
        match self.remote(key, EntityOp::Admit(ask)).await? {
            OpReply::Admit(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Takes back an admission.
    pub async fn undo(&self, key: &EntityKey, admitted: Admitted) -> Result<EntityView, RouteError> {
        if self.is_local(key) {
            match self.local.call(key, |reply| EntityMsg::Undo(admitted, reply)).await {
                Err(RouteError::Moved) => {}
                done => return done,
            }
        }
        view_of(self.remote(key, EntityOp::Undo(admitted)).await?)
    }

    /// Reads an entity's state without consuming anything (and without
    /// starting an actor for it, wherever it lives).
    pub async fn view(&self, key: &EntityKey) -> Result<EntityView, RouteError> {
        if self.is_local(key) {
            return self.local.view(key).await;
        }
        view_of(self.remote(key, EntityOp::View).await?)
    }

    /// Applies a committed usage event to an entity.
    pub async fn settle(&self, key: &EntityKey, settlement: Settlement) -> Result<EntityView, RouteError> {
        if self.is_local(key) {
            match self.local.call(key, |reply| EntityMsg::Settle(settlement, reply)).await {
                Err(RouteError::Moved) => {}
                done => return done,
            }
        }
        view_of(self.remote(key, EntityOp::Settle(settlement)).await?)
    }

    /// Drops a hold.
    pub async fn release(&self, key: &EntityKey, hold: Uuid) -> Result<Option<Decimal>, RouteError> {
        if self.is_local(key) {
            match self.local.call(key, |reply| EntityMsg::Release(hold, reply)).await {
                Err(RouteError::Moved) => {}
                done => return done,
            }
        }
        match self.remote(key, EntityOp::Release(hold)).await? {
            OpReply::Released(amount) => Ok(amount),
            other => Err(unexpected(other)),
        }
    }

    /// Tells a resident entity that its tier changed in the store. A
    /// non-resident entity reads the new tier when it starts.
    pub async fn set_tier(&self, key: &EntityKey, tier: &str) -> Result<(), RouteError> {
        if self.is_local(key) {
            let tier: Arc<str> = tier.into();
            return self
                .local
                .call_if_resident(key, |reply| EntityMsg::SetTier(tier.clone(), reply))
                .await
                .map(|_| ());
        }
        self.remote(key, EntityOp::SetTier(tier.to_string())).await.map(|_| ())
    }

    /// Tells a resident entity that its budget changed in the store.
    pub async fn set_budget(&self, key: &EntityKey, limit: Option<Decimal>) -> Result<(), RouteError> {
        if self.is_local(key) {
            return self
                .local
                .call_if_resident(key, |reply| EntityMsg::SetBudget(limit, reply))
                .await
                .map(|_| ());
        }
        self.remote(key, EntityOp::SetBudget(limit)).await.map(|_| ())
    }
}

fn view_of(reply: OpReply) -> Result<EntityView, RouteError> {
    match reply {
        OpReply::View(view) => Ok(view),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: OpReply) -> RouteError {
    RouteError::Peer(format!("unexpected reply {reply:?}"))
}
