//! The supervisor every entity actor is linked to.
//!
//! A failed entity is not restarted eagerly: the router notices the dead
//! actor on the entity's next use and starts a fresh one, which loads its
//! state from the store. So one entity's panic costs that entity its
//! unflushed holds and nothing else; every other entity carries on.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub struct EntitySupervisor;

impl Actor for EntitySupervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // ractor's default would stop the supervisor when any child ends.
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            metrics::counter!("tollgate_actor_failures_total").increment(1);
            tracing::error!(actor = %cell.get_id(), error = %err, "entity actor failed; it will be rebuilt from the store on next use");
        }
        Ok(())
    }
}
