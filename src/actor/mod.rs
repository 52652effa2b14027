//! One supervised ractor actor per entity.
//!
//! The actor owns its entity's [`EntityLimits`](crate::limits::entity::EntityLimits)
//! and serialises every change to it; the pure logic does the deciding. A
//! panicking actor is contained by the supervisor and rebuilt from the
//! store on its next use.

mod entity;
mod load;
mod messages;
mod peek;
mod supervisor;

pub use entity::{EntityActor, EntityArgs};
pub use messages::{AdmitReply, EntityMsg, EntitySnapshot, EntityView, Settlement};
pub use peek::peek;
pub use supervisor::EntitySupervisor;

use crate::catalog::Catalog;
use crate::entity::EntityKey;
use crate::router::deltas::CounterDeltas;
use crate::router::flusher::Flusher;
use crate::store::Store;
use std::sync::Arc;

/// What every entity actor shares.
#[derive(Clone)]
pub struct ActorDeps {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub deltas: Arc<CounterDeltas>,
    pub flusher: Arc<Flusher>,
    /// In a cluster, how an actor takes its entity over from the node that
    /// owned it before; `None` on a single node.
    pub takeover: Option<Arc<dyn Takeover>>,
}

impl std::fmt::Debug for ActorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorDeps")
            .field("store", &self.store)
            .field("clustered", &self.takeover.is_some())
            .finish_non_exhaustive()
    }
}

/// What an entity actor needs from the cluster when it starts.
pub trait Takeover: Send + Sync + 'static {
    /// This node's id, which its ownership claims carry.
    fn node_id(&self) -> &str;

    /// Asks the node that owned `key` before this one, if it is alive, to
    /// hand over the entity: it stops serving it, writes its pending
    /// counter deltas, and returns its live state (None if it did not have
    /// the entity in memory, or cannot be reached: then the store is the
    /// truth).
    fn previous_state<'a>(
        &'a self,
        key: &'a EntityKey,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<EntitySnapshot>> + Send + 'a>>;
}
