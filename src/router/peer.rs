//! What nodes ask each other over the internal RPC (postcard on the wire).
//!
//! Entity operations travel as [`EntityOp`]s to the entity's owner; the
//! rest moves ownership ([`PeerRequest::Surrender`], [`PeerRequest::Adopt`])
//! or keeps per-node caches fresh ([`PeerRequest::Invalidate`]).

use crate::actor::{AdmitReply, EntitySnapshot, EntityView, Settlement};
use crate::entity::EntityKey;
use crate::limits::entity::{Admitted, Ask};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One operation on one entity (mirrors the router's methods).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EntityOp {
    Admit(Ask),
    Undo(Admitted),
    View,
    Settle(Settlement),
    Release(Uuid),
    /// Only if resident (the store already has the change).
    SetTier(String),
    /// Only if resident (the store already has the change).
    SetBudget(Option<Decimal>),
}

impl EntityOp {
    /// May this operation run twice without harm? Only those are retried
    /// after a timeout or a lost connection, when it may already have run.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, EntityOp::Admit(_) | EntityOp::Undo(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            EntityOp::Admit(_) => "admit",
            EntityOp::Undo(_) => "undo",
            EntityOp::View => "view",
            EntityOp::Settle(_) => "settle",
            EntityOp::Release(_) => "release",
            EntityOp::SetTier(_) => "set_tier",
            EntityOp::SetBudget(_) => "set_budget",
        }
    }
}

/// The answer to an [`EntityOp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpReply {
    Admit(AdmitReply),
    View(EntityView),
    Released(Option<Decimal>),
    Done,
}

/// A cache entry another node changed in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Invalidation {
    /// A user joined (`Some((org_id, role))`), changed role in, or left
    /// (`None`) an organisation; the store already says so.
    Membership {
        user_id: String,
        org: Option<(String, String)>,
    },
    /// An API key was created, rotated or revoked: reload it.
    ApiKey { key_id: String },
    /// A tier or a model price changed: reload the catalogue.
    Catalog,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Run `op` on `key`, which the sender believes this node owns.
    /// `hops` counts forwards, so disagreeing views cannot loop.
    Entity { key: EntityKey, op: EntityOp, hops: u8 },
    /// The sender (`to`) now owns `key`: stop serving it, write its pending
    /// counter deltas, and hand over its live state.
    Surrender { key: EntityKey, to: String },
    /// The sender is leaving: take these entities over now.
    Adopt { keys: Vec<EntityKey> },
    /// Reload one cached entry from the store.
    Invalidate(Invalidation),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerResponse {
    Op(OpReply),
    /// This node does not own the entity (views disagree for a moment):
    /// re-resolve and retry.
    NotOwner,
    /// The operation failed here (e.g. the store could not load the
    /// entity); retryable by the caller.
    Failed(String),
    Surrendered(Option<EntitySnapshot>),
    Done,
}
