//! The local entity registry: key → actor, started on first use.

use crate::actor::{ActorDeps, EntityActor, EntityArgs, EntityMsg, EntitySnapshot, EntityView};
use crate::entity::EntityKey;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OnceCell};

/// How long a control call (passivation) may take before it is abandoned.
/// Entity operations carry no timer of their own: a handler never awaits
/// anything, a dead actor answers at once (its reply port drops), and a
/// timer per call costs a timer-wheel insert on the hot path.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call: an actor that was passivated or crashed between
/// lookup and delivery is replaced and the call tried again.
const ATTEMPTS: usize = 3;
/// How often, and how long each time, a new entity that finds the node
/// full waits for the sweeper to make room before it is refused.
const ROOM_WAITS: usize = 2;
const ROOM_WAIT: Duration = Duration::from_millis(500);
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
    /// `--max-entities` are resident and none can leave yet (they are in
    /// use, or hold reservations): a new entity waits rather than growing
    /// memory past the cap.
    #[error("too many entities are resident; retry shortly")]
    Full,
    /// The entity was handed to another node while this call waited for
    /// it here; the router sends the call to the new owner.
    #[error("the entity moved to another node")]
    Moved,
}

/// Whether this node owns an entity now (the cluster's routing; always
/// true on a single node).
pub type OwnershipCheck = Arc<dyn Fn(&EntityKey) -> bool + Send + Sync>;

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
    /// Most slots at once (`--max-entities`): a hard cap, checked when a
    /// slot is added, so holds (which keep an entity from passivating) or
    /// a flood of new keys cannot grow memory past it.
    max_entities: usize,
    /// Slots in `slots`, counted apart so that the cap is one atomic
    /// step (`DashMap::len` walks every shard and is not atomic with an
    /// insert).
    placed: AtomicUsize,
    /// Woken when a new entity finds no room: the sweeper makes room at
    /// once instead of at its next tick.
    room_wanted: Notify,
    /// Woken by the sweeper after a pass.
    room_made: Notify,
    /// Set by a clustered node: a call whose actor stopped under it (a
    /// hand-off) starts a new one here only if this node still owns the
    /// entity.
    ownership: std::sync::OnceLock<OwnershipCheck>,
    /// `tollgate_entity_lookups_total` {warm, cold}, registered once: they
    /// are bumped on every entity call.
    warm: metrics::Counter,
    cold: metrics::Counter,
}

impl LocalEntities {
    pub fn new(supervisor: ActorCell, deps: ActorDeps, max_entities: usize) -> Self {
        LocalEntities {
            slots: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            supervisor,
            deps,
            epoch: Instant::now(),
            max_entities: max_entities.max(1),
            placed: AtomicUsize::new(0),
            ownership: std::sync::OnceLock::new(),
            warm: metrics::counter!("tollgate_entity_lookups_total", "result" => "warm"),
            cold: metrics::counter!("tollgate_entity_lookups_total", "result" => "cold"),
            room_wanted: Notify::new(),
            room_made: Notify::new(),
        }
    }

    /// How many entities are resident (or starting). Never more than the
    /// cap given to [`LocalEntities::new`].
    pub fn resident(&self) -> usize {
        self.slots.len()
    }

    /// Is `key` resident (or starting) here?
    pub fn is_resident(&self, key: &EntityKey) -> bool {
        self.slots.contains_key(key)
    }

    /// Resolves when a new entity is waiting for room.
    pub(crate) async fn room_wanted(&self) {
        self.room_wanted.notified().await;
    }

    /// Called by the sweeper after each pass: new entities waiting for
    /// room try again.
    pub(crate) fn sweep_done(&self) {
        self.room_made.notify_waiters();
    }

    /// The slot for `key`, added if the cap allows; None when full.
    fn place(&self, key: &EntityKey) -> Option<Arc<Slot>> {
        if let Some(slot) = self.slots.get(key) {
            return Some(slot.clone());
        }
        match self.slots.entry(key.clone()) {
            Entry::Occupied(entry) => Some(entry.get().clone()),
            Entry::Vacant(entry) => {
                if !self.claim_place() {
                    return None;
                }
                let slot = Arc::new(Slot {
                    actor: OnceCell::new(),
                    last_used: AtomicU64::new(0),
                });
                entry.insert(slot.clone());
                Some(slot)
            }
        }
    }

    /// Claims a place for a new slot, if the cap allows.
    fn claim_place(&self) -> bool {
        self.placed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_entities).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_place(&self) {
        // Every removed slot had claimed a place; never wraps below zero.
        let _ = self
            .placed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn elapsed_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Installs the ownership check (once; a clustered node at start-up).
    pub fn set_ownership(&self, check: OwnershipCheck) {
        let _ = self.ownership.set(check);
    }

    fn owns(&self, key: &EntityKey) -> bool {
        self.ownership.get().is_none_or(|owns| owns(key))
    }

    /// Sends a message built by `build` and awaits the reply, starting the
    /// actor if needed and retrying on a fresh actor if the old one is gone
    /// — unless it was handed to another node meanwhile
    /// ([`RouteError::Moved`]: restarting it here from the store would
    /// serve it in two places).
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
                // Stopped or crashed: forget it and start afresh, if it
                // is still ours.
                Ok(CallResult::SenderError) | Err(_) => {
                    self.forget(key, &slot);
                    if !self.owns(key) {
                        return Err(RouteError::Moved);
                    }
                }
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

    /// An entity's state without consuming anything: from its actor if
    /// it is resident, otherwise read from the store without starting one
    /// (see [`crate::actor::peek`]), so read-only views cannot fill memory.
    pub async fn view(&self, key: &EntityKey) -> Result<EntityView, RouteError> {
        if let Some(view) = self.call_if_resident(key, EntityMsg::View).await? {
            return Ok(view);
        }
        metrics::counter!("tollgate_entity_peeks_total").increment(1);
        crate::actor::peek(key, &self.deps)
            .await
            .map_err(|e| RouteError::Load(e.to_string()))
    }

    async fn resolve(&self, key: &EntityKey) -> Result<(Arc<Slot>, ActorRef<EntityMsg>), RouteError> {
        self.resolve_waiting(key, ROOM_WAITS).await
    }

    /// [`LocalEntities::resolve`], waiting for room at most `room_waits`
    /// sweeps when the node is full.
    async fn resolve_waiting(
        &self,
        key: &EntityKey,
        room_waits: usize,
    ) -> Result<(Arc<Slot>, ActorRef<EntityMsg>), RouteError> {
        let mut waits = 0;
        let slot = loop {
            if let Some(slot) = self.place(key) {
                break slot;
            }
            // Full: wake the sweeper and wait (briefly) for it to make room
            // by passivating the least recently used; refuse if it cannot
            // (every resident entity is busy or holds a reservation).
            let room_made = self.room_made.notified();
            self.room_wanted.notify_one();
            if waits >= room_waits {
                metrics::counter!("tollgate_entities_refused_total").increment(1);
                return Err(RouteError::Full);
            }
            waits += 1;
            let _ = tokio::time::timeout(ROOM_WAIT, room_made).await;
        };
        slot.last_used.store(self.elapsed_ms(), Ordering::Relaxed);
        if let Some(actor) = slot.actor.get() {
            self.warm.increment(1);
            return Ok((slot.clone(), actor.clone()));
        }
        self.cold.increment(1);
        let actor = slot.actor.get_or_try_init(|| self.start(key)).await?.clone();
        Ok((slot, actor))
    }

    async fn start(&self, key: &EntityKey) -> Result<ActorRef<EntityMsg>, RouteError> {
        // A call that decided "local" just before a hand-off must not load
        // the entity here again from the store.
        if !self.owns(key) {
            return Err(RouteError::Moved);
        }
        // While the database is known to be down a cold entity cannot load:
        // refuse at once rather than start an actor (and log) per request.
        self.deps
            .store
            .health()
            .fail_fast()
            .map_err(|e| RouteError::Load(e.to_string()))?;
        let args = EntityArgs {
            key: key.clone(),
            deps: self.deps.clone(),
        };
        // The spawn returns once the actor's start — the load from the
        // store — is done.
        let started = Instant::now();
        let spawned = tracing::Instrument::instrument(
            Actor::spawn_linked(None, EntityActor, args, self.supervisor.clone()),
            tracing::debug_span!("entity_load", entity = %key),
        )
        .await;
        metrics::histogram!("tollgate_entity_load_duration_seconds").record(started.elapsed().as_secs_f64());
        match spawned {
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
        if self
            .slots
            .remove_if(key, |_, current| Arc::ptr_eq(current, slot))
            .is_some()
        {
            self.release_place();
        }
    }

    /// Removes a slot whose actor never started (its start failed) and
    /// that nobody is using: without this a failed start would keep its
    /// place under the cap for ever. `holders` is how many `Arc`s the
    /// caller itself keeps besides the map's.
    fn forget_unstarted(&self, key: &EntityKey, slot: &Arc<Slot>, holders: usize) -> bool {
        // Under the shard's write lock nobody can take a new reference, and
        // every reference taken earlier is counted.
        let removed = self.slots.remove_if(key, |_, current| {
            Arc::ptr_eq(current, slot) && current.actor.get().is_none() && Arc::strong_count(current) <= 1 + holders
        });
        if removed.is_some() {
            self.release_place();
        }
        removed.is_some()
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

    /// How long since `slot` was last used.
    pub(crate) fn unused_for(&self, slot: &Slot) -> Duration {
        Duration::from_millis(self.elapsed_ms().saturating_sub(slot.last_used.load(Ordering::Relaxed)))
    }

    /// Asks one entity to passivate; forgets it if it stopped.
    pub(crate) async fn passivate(&self, key: &EntityKey, slot: &Arc<Slot>) -> bool {
        let Some(actor) = slot.actor.get() else {
            // Still starting, or its start failed: only the latter, idle
            // and unused, is removed (this call holds one reference).
            return self.forget_unstarted(key, slot, 1);
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
            if let Some((_, slot)) = self.slots.remove(key) {
                self.release_place();
                if let Some(actor) = slot.actor.get() {
                    actor.stop(Some("fenced".into()));
                }
            }
        }
    }

    /// Every resident entity's key.
    pub fn resident_keys(&self) -> Vec<EntityKey> {
        self.slots.iter().map(|e| e.key().clone()).collect()
    }

    /// Starts an entity here if it is not resident (taking it over from
    /// its previous owner). Never waits for room: a full node refuses at
    /// once, and the entity loads from the store on its first use instead
    /// (a node adopting many entities must not wait a sweep for each).
    pub async fn ensure_resident(&self, key: &EntityKey) -> Result<(), RouteError> {
        self.resolve_waiting(key, 0).await.map(|_| ())
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
        self.slots.retain(|_, _| {
            self.release_place();
            false
        });
    }
}
