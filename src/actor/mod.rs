//! One supervised ractor actor per entity.
//!
//! The actor owns its entity's [`EntityLimits`](crate::limits::entity::EntityLimits)
//! and serialises every change to it; the pure logic does the deciding. A
//! panicking actor is contained by the supervisor and rebuilt from the
//! store on its next use.

mod entity;
mod load;
mod messages;
mod supervisor;

pub use entity::{EntityActor, EntityArgs};
pub use messages::{AdmitReply, EntityMsg, EntityView, Settlement};
pub use supervisor::EntitySupervisor;

use crate::catalog::Catalog;
use crate::router::deltas::CounterDeltas;
use crate::router::flusher::Flusher;
use crate::store::Store;
use std::sync::Arc;

/// What every entity actor shares.
#[derive(Debug, Clone)]
pub struct ActorDeps {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub deltas: Arc<CounterDeltas>,
    pub flusher: Arc<Flusher>,
}
