//! The local entity registry: key → actor, started on first use.

use crate::actor::{ActorDeps, EntityActor, EntityArgs, EntityMsg, EntitySnapshot};
use crate::entity::EntityKey;
use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a control call (passivation) may take before it is abandoned.
/// Entity operations carry no timer of their own: a handler never awaits
/// anything, a dead actor answers at once (its reply port drops), and a
/// timer per call costs a timer-wheel insert on the hot path.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call: an actor that was passivated or crashed between
/// lookup and delivery is replaced and the call tried again.
const ATTEMPTS: usize = 3;
/// How long a surrender waits for an actor that is still starting.
const SURRENDER_WAIT: Duration = Duration::from_secs(1);

/// Why an operation could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("entity state could not be loaded: {0}")]
    Load(String),
    #[error("entity actor did not answer in time")]
    Timeout,
    #[error("entity actor unavailable")]
    Unavailable,
    #[error("the entity's owner could not be reached: {0}")]
    Peer(String),
}

/// One resident (or starting) entity.
#[derive(Debug)]
pub(crate) struct Slot {
    actor: OnceCell<ActorRef<EntityMsg>>,
    /// Milliseconds since the registry started, at last use.
    last_used: AtomicU64,
}

/// Every entity actor on this node.
pub struct LocalEntities {
    /// Keyed with foldhash: seeded per process (keys are caller-chosen, so
    /// not a fixed hash), and several times cheaper than SipHash per check.
    slots: DashMap<EntityKey, Arc<Slot>, foldhash::fast::RandomState>,
    supervisor: ActorCell,
    deps: ActorDeps,
    epoch: Instant,
}

impl LocalEntities {
    pub fn new(supervisor: ActorCell, deps: ActorDeps) -> Self {
        LocalEntities {
            slots: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            supervisor,
            deps,
            epoch: Instant::now(),
        }
    }

    /// How many entities are resident (or starting).
    pub fn resident(&self) -> usize {
        self.slots.len()
    }

    fn elapsed_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Sends a message built by `build` and awaits the reply, starting the
    /// actor if needed and retrying on a fresh actor if the old one is gone.
    pub async fn call<R, F>(&self, key: &EntityKey, build: F) -> Result<R, RouteError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> EntityMsg,
    {
        for _ in 0..ATTEMPTS {
            let (slot, actor) = self.resolve(key).await?;
            match actor.call(&build, None).await {
                Ok(CallResult::Success(reply)) => return Ok(reply),
                Ok(CallResult::Timeout) => return Err(RouteError::Timeout),
                // Stopped or crashed: forget it and start afresh.
                Ok(CallResult::SenderError) | Err(_) => self.forget(key, &slot),
            }
        }
        Err(RouteError::Unavailable)
    }

    /// Like [`LocalEntities::call`], but only if the entity is resident
    /// (or starting); returns None otherwise.
    pub async fn call_if_resident<R, F>(&self, key: &EntityKey, build: F) -> Result<Option<R>, RouteError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> EntityMsg,
    {
        if !self.slots.contains_key(key) {
            return Ok(None);
        }
        self.call(key, build).await.map(Some)
    }

    async fn resolve(&self, key: &EntityKey) -> Result<(Arc<Slot>, ActorRef<EntityMsg>), RouteError> {
        let slot = match self.slots.get(key) {
            Some(slot) => slot.clone(),
            None => self
                .slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        actor: OnceCell::new(),
                        last_used: AtomicU64::new(0),
                    })
                })
                .clone(),
        };
        slot.last_used.store(self.elapsed_ms(), Ordering::Relaxed);
        let actor = slot.actor.get_or_try_init(|| self.start(key)).await?.clone();
        Ok((slot, actor))
    }

    async fn start(&self, key: &EntityKey) -> Result<ActorRef<EntityMsg>, RouteError> {
        let args = EntityArgs {
            key: key.clone(),
            deps: self.deps.clone(),
        };
        match Actor::spawn_linked(None, EntityActor, args, self.supervisor.clone()).await {
            Ok((actor, _join)) => {
                metrics::counter!("tollgate_entity_starts_total").increment(1);
                Ok(actor)
            }
            Err(err) => {
                metrics::counter!("tollgate_entity_start_errors_total").increment(1);
                tracing::warn!(entity = %key, error = %err, "entity failed to start");
                Err(RouteError::Load(err.to_string()))
            }
        }
    }

    /// Removes `slot` for `key` if it is still the registered one.
    pub(crate) fn forget(&self, key: &EntityKey, slot: &Arc<Slot>) {
        self.slots.remove_if(key, |_, current| Arc::ptr_eq(current, slot));
    }

    /// Entities not used for `idle`, plus the least recently used ones
    /// beyond `max_resident`: the candidates for passivation. Walks every
    /// slot, so callers run it off the async workers.
    pub(crate) fn passivation_candidates(&self, idle: Duration, max_resident: usize) -> Vec<(EntityKey, Arc<Slot>)> {
        let now = self.elapsed_ms();
        let idle_ms = idle.as_millis() as u64;
        let over = self.slots.len().saturating_sub(max_resident);
        if over == 0 {
            return self
                .slots
                .iter()
                .filter(|e| now.saturating_sub(e.value().last_used.load(Ordering::Relaxed)) >= idle_ms)
                .map(|e| (e.key().clone(), e.value().clone()))
                .collect();
        }
        let mut all: Vec<(u64, EntityKey, Arc<Slot>)> = self
            .slots
            .iter()
            .map(|e| {
                (
                    e.value().last_used.load(Ordering::Relaxed),
                    e.key().clone(),
                    e.value().clone(),
                )
            })
            .collect();
        // The `over` least recently used first, then any others idle.
        let over = over.min(all.len());
        if over > 0 && over < all.len() {
            all.select_nth_unstable_by_key(over, |(used, _, _)| *used);
        }
        all.into_iter()
            .enumerate()
            .filter(|(i, (used, _, _))| *i < over || now.saturating_sub(*used) >= idle_ms)
            .map(|(_, (_, key, slot))| (key, slot))
            .collect()
    }

    /// Asks one entity to passivate; forgets it if it stopped.
    pub(crate) async fn passivate(&self, key: &EntityKey, slot: &Arc<Slot>) -> bool {
        let Some(actor) = slot.actor.get() else {
            return false; // still starting
        };
        match actor.call(EntityMsg::Passivate, Some(CONTROL_TIMEOUT)).await {
            Ok(CallResult::Success(true)) => {
                self.forget(key, slot);
                true
            }
            Ok(CallResult::Success(false)) | Ok(CallResult::Timeout) => false,
            Ok(CallResult::SenderError) | Err(_) => {
                self.forget(key, slot);
                true
            }
        }
    }

    /// Hands an entity over: stops its actor and returns its live state
    /// (None if it is not resident). An actor still starting is waited for
    /// briefly, so a state being loaded is not lost.
    pub async fn surrender(&self, key: &EntityKey) -> Option<EntitySnapshot> {
        let slot = self.slots.get(key)?.clone();
        let actor = match slot.actor.get() {
            Some(actor) => actor.clone(),
            None => {
                let waited = tokio::time::timeout(SURRENDER_WAIT, async {
                    loop {
                        if let Some(actor) = slot.actor.get() {
                            return actor.clone();
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
                match waited {
                    Ok(actor) => actor,
                    Err(_) => {
                        self.forget(key, &slot);
                        return None;
                    }
                }
            }
        };
        self.forget(key, &slot);
        match actor.call(EntityMsg::Surrender, Some(CONTROL_TIMEOUT)).await {
            Ok(CallResult::Success(snapshot)) => Some(snapshot),
            _ => None,
        }
    }

    /// Stops entities whose ownership has moved elsewhere (the store
    /// refused their counter writes), without handing anything over.
    pub fn drop_stale(&self, keys: &[EntityKey]) {
        for key in keys {
            if let Some((_, slot)) = self.slots.remove(key)
                && let Some(actor) = slot.actor.get()
            {
                actor.stop(Some("fenced".into()));
            }
        }
    }

    /// Every resident entity's key.
    pub fn resident_keys(&self) -> Vec<EntityKey> {
        self.slots.iter().map(|e| e.key().clone()).collect()
    }

    /// Starts an entity here if it is not resident (taking it over from
    /// its previous owner).
    pub async fn ensure_resident(&self, key: &EntityKey) -> Result<(), RouteError> {
        self.resolve(key).await.map(|_| ())
    }

    /// Crashes an entity's actor and waits until it has stopped (tests of
    /// supervision only). Returns the id of the actor that crashed.
    #[doc(hidden)]
    pub async fn crash_for_test(&self, key: &EntityKey) -> Result<ractor::ActorId, RouteError> {
        let (_, actor) = self.resolve(key).await?;
        actor
            .send_message(EntityMsg::CrashForTest)
            .map_err(|_| RouteError::Unavailable)?;
        for _ in 0..500 {
            if actor.get_status() == ractor::ActorStatus::Stopped {
                return Ok(actor.get_id());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(RouteError::Timeout)
    }

    /// The id of an entity's current actor, if it is resident (tests).
    #[doc(hidden)]
    pub fn actor_id_for_test(&self, key: &EntityKey) -> Option<ractor::ActorId> {
        self.slots.get(key)?.actor.get().map(|a| a.get_id())
    }

    /// Stops every resident actor (after the final flush at shutdown).
    pub fn stop_all(&self) {
        self.supervisor.stop_children(Some("shutdown".into()));
        self.slots.clear();
    }
}
