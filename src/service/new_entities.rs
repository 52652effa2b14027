//! The per-client bound on new entities, shared by every request of a
//! node (see [`crate::limits::new_entities`] for the rule).
//!
//! Only guests (callers without credentials) are bounded here: a user
//! credential reaches only its own user and organisation, and a service
//! credential is the chat backend, which names many guests by design and
//! is trusted to; what those create is bounded by the resident cap
//! (`--max-entities`). The count is kept where a request arrives: in a
//! cluster each entry node bounds its own clients, and an entity owned by
//! another node counts as new (see `EntityRouter::may_be_new`).

use crate::entity::EntityKey;
use crate::limits::new_entities::{MAX_CLIENTS, NewEntityCap, TooManyNew};
use crate::router::EntityRouter;
use parking_lot::Mutex;

/// The node's table of clients and their new entities this second.
#[derive(Debug)]
pub struct NewEntityGate {
    cap: Mutex<NewEntityCap<EntityKey>>,
}

impl NewEntityGate {
    /// At most `per_second` new entities per client per second.
    pub fn new(per_second: u32) -> Self {
        NewEntityGate {
            cap: Mutex::new(NewEntityCap::new(per_second, MAX_CLIENTS)),
        }
    }

    /// Charges `client` (a guest's IP entity) for each of `entities` that
    /// using it may bring into memory; refuses (charging nothing) when its
    /// second is spent. Entities already resident cost nothing, so a guest
    /// using its own entities is never refused here.
    pub fn admit(
        &self,
        router: &EntityRouter,
        client: &EntityKey,
        entities: &[EntityKey],
        now_ms: i64,
    ) -> Result<(), TooManyNew> {
        let new = entities.iter().filter(|k| router.may_be_new(k)).count();
        if new == 0 {
            return Ok(());
        }
        let new = u32::try_from(new).unwrap_or(u32::MAX);
        let refused = self.cap.lock().try_take(client, new, now_ms);
        if refused.is_err() {
            metrics::counter!("tollgate_new_entities_refused_total").increment(1);
        }
        refused
    }
}
