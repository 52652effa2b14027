//! What an entity actor is asked, and what it answers.

use crate::entity::EntityKey;
use crate::limits::calendar::Period;
use crate::limits::entity::{Admitted, Ask, BudgetView, LimitView, Refusal};
use crate::limits::tier::Tier;
use ractor::RpcReplyPort;
use rust_decimal::Decimal;
use std::sync::Arc;
use uuid::Uuid;

/// A message to one entity actor. Every message that changes state is a
/// call (it has a reply), so a caller always learns whether it was applied
/// and can retry on a fresh actor if the old one was passivated.
pub enum EntityMsg {
    /// Count `ask` if every limit allows it; reply with the outcome and the
    /// state after it.
    Admit(Ask, RpcReplyPort<AdmitReply>),
    /// Take back an admission (another entity of the check refused).
    Undo(Admitted, RpcReplyPort<EntityView>),
    /// Current state, consuming nothing.
    View(RpcReplyPort<EntityView>),
    /// A usage event was committed: drop its hold and take in the ledger's
    /// spend total.
    Settle(Settlement, RpcReplyPort<EntityView>),
    /// Drop a hold; reply with what it held (None if unknown or expired).
    Release(Uuid, RpcReplyPort<Option<Decimal>>),
    /// The entity's tier changed in the store.
    SetTier(Arc<str>, RpcReplyPort<()>),
    /// The entity's budget changed in the store.
    SetBudget(Option<Decimal>, RpcReplyPort<()>),
    /// Stop if idle (no live holds). Replies whether it stopped.
    Passivate(RpcReplyPort<bool>),
    /// Stop now and hand the live state over (ownership is moving to
    /// another node).
    Surrender(RpcReplyPort<EntitySnapshot>),
    /// Panics the actor. Exists so tests can prove that one entity's crash
    /// is contained and recovered from the store; nothing outside tests
    /// sends it.
    #[doc(hidden)]
    CrashForTest,
}

/// The outcome of an [`EntityMsg::Admit`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdmitReply {
    pub result: Result<Admitted, Refusal>,
    pub view: EntityView,
}

/// A committed usage event as it concerns one entity.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    pub hold: Option<Uuid>,
    /// The entity's spend total for the period after the commit, or None
    /// for a duplicate event (nothing new was spent).
    pub committed: Option<(Period, Decimal)>,
}

/// An entity's limits and budget as the caller sees them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EntityView {
    pub key: EntityKey,
    pub tier: Arc<Tier>,
    pub limits: Vec<LimitView>,
    pub budget: BudgetView,
}

/// An entity's live state, as handed from its old owner to its new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntitySnapshot {
    pub tier_name: String,
    pub limits: crate::limits::entity::EntityLimits,
}
