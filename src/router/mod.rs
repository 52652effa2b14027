//! The router: resolves an entity key to the actor that owns it and
//! delivers one operation to it.
//!
//! On one node every entity is local. This is the seam the cluster slots in
//! behind: a key whose owner is another node will be sent there over the
//! internal RPC, and callers above (the check and usage services) do not
//! change.

pub mod deltas;
pub mod flusher;
mod registry;
mod sweeper;

pub use registry::{LocalEntities, RouteError};
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
}

impl EntityRouter {
    pub fn new(local: Arc<LocalEntities>) -> Self {
        EntityRouter { local }
    }

    pub fn local(&self) -> &Arc<LocalEntities> {
        &self.local
    }

    /// Counts a check against one entity if its limits allow.
    pub async fn admit(&self, key: &EntityKey, ask: Ask) -> Result<AdmitReply, RouteError> {
        self.local.call(key, |reply| EntityMsg::Admit(ask, reply)).await
    }

    /// Takes back an admission.
    pub async fn undo(&self, key: &EntityKey, admitted: Admitted) -> Result<EntityView, RouteError> {
        self.local.call(key, |reply| EntityMsg::Undo(admitted, reply)).await
    }

    /// Reads an entity's state without consuming anything.
    pub async fn view(&self, key: &EntityKey) -> Result<EntityView, RouteError> {
        self.local.call(key, EntityMsg::View).await
    }

    /// Applies a committed usage event to an entity.
    pub async fn settle(&self, key: &EntityKey, settlement: Settlement) -> Result<EntityView, RouteError> {
        self.local.call(key, |reply| EntityMsg::Settle(settlement, reply)).await
    }

    /// Drops a hold.
    pub async fn release(&self, key: &EntityKey, hold: Uuid) -> Result<Option<Decimal>, RouteError> {
        self.local.call(key, |reply| EntityMsg::Release(hold, reply)).await
    }

    /// Tells a resident entity that its tier changed in the store. A
    /// non-resident entity reads the new tier when it starts.
    pub async fn set_tier(&self, key: &EntityKey, tier: &str) -> Result<(), RouteError> {
        let tier: Arc<str> = tier.into();
        self.local
            .call_if_resident(key, |reply| EntityMsg::SetTier(tier.clone(), reply))
            .await
            .map(|_| ())
    }

    /// Tells a resident entity that its budget changed in the store.
    pub async fn set_budget(&self, key: &EntityKey, limit: Option<Decimal>) -> Result<(), RouteError> {
        self.local
            .call_if_resident(key, |reply| EntityMsg::SetBudget(limit, reply))
            .await
            .map(|_| ())
    }
}
