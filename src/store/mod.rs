//! Durable state behind one seam: SQLite (embedded default) or Postgres.
//!
//! Nothing on the check path of a warm entity touches the store. It is read
//! when an actor starts (one or two indexed queries), written by the counter
//! flusher (one batched statement per flush) and by the usage ledger (one
//! transaction per group commit).

pub mod health;
mod postgres;
mod sqlite;
#[doc(hidden)]
pub mod testing;

pub use alerts::{
    AlertFacts, AlertRecord, AlertScope, ChannelKind, ChannelRecord, ChannelScope, ChannelTarget, DeliveryJob,
    DeliveryRecord, DeliveryStatus, MAX_ERROR_CHARS, NewChannel,
};
pub use identity::{
    AcceptOutcome, ApiKeyRecord, CreateOrgOutcome, InvitationRecord, KeyListing, KeySecret, MemberOutcome, Membership,
    OrgRecord, OrgRole, OrgUpdate, Removal, SummaryFilter, SummaryGroup, SummaryRow, UnknownRole,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::entity::EntityKey;
use crate::limits::alerts::{self as alert_rules, AlertKind, Thresholds};
use crate::limits::calendar::Period;
use crate::limits::pricing::Price;
use crate::limits::tier::Tier;
use crate::money::Usd;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Errors from the store. Mapped to 503 at the HTTP edge: the request may be
/// retried, nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (use sqlite://… or postgres://…): {0}")]
    UnsupportedUrl(String),
    #[error("corrupt value in column {column}: {value}")]
    Corrupt { column: &'static str, value: String },
    /// A database wait passed `--db-timeout-ms`.
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The store is known to be down: refused without trying.
    #[error("the database is unreachable (failing fast until it answers again)")]
    Unavailable,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which request window a counter row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// Fixed 24 h window; `window_start` is its first request's time.
    Day,
    /// Calendar month; `window_start` is the month's first millisecond.
    Month,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Day => "day",
            WindowKind::Month => "month",
        }
    }
}

/// A window's start and count as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub start_ms: i64,
    pub count: u64,
}

/// Everything an entity actor reads when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityRecord {
    /// For a `user:` key, its organisation's tier if it is a member, else `users.subscription_tier`;
    /// `organizations.subscription_tier` for an `org:` key (None: no row, so
    /// the default tier). Always None for guests.
    pub tier: Option<String>,
    /// `budget_limits.monthly_budget_usd` for this key, if any.
    pub budget_usd: Option<Usd>,
    /// `entity_spend.spent_usd` for the period asked for (zero if no row).
    pub spent_usd: Decimal,
    /// The newest `day` counter row whose window has not ended at `now`.
    pub day: Option<WindowCount>,
    /// The `month` counter for the period asked for (zero if no row).
    pub month_count: u64,
}

/// One request-counter change to add to the store (`count = count + delta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDelta {
    pub entity: EntityKey,
    pub window: WindowKind,
    pub window_start_ms: i64,
    pub delta: i64,
    /// The writer's ownership epoch for the entity (cluster mode), or 0:
    /// not fenced (a single node).
    pub epoch: u64,
}

/// Who a usage row is charged to. Each `Some` is an entity whose spend row
/// is incremented with the row's cost in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSubject {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub guest_ip: Option<String>,
    pub guest_fingerprint: Option<String>,
}

impl UsageSubject {
    /// The entity keys charged, in a fixed order (user, org, ip, fp).
    pub fn entities(&self) -> Vec<EntityKey> {
        let mut keys = Vec::with_capacity(2);
        if let Some(Ok(k)) = self.user_id.as_deref().map(EntityKey::user) {
            keys.push(k);
        }
        if let Some(Ok(k)) = self.organization_id.as_deref().map(EntityKey::org) {
            keys.push(k);
        }
        if let Some(Ok(k)) = self.guest_ip.as_deref().map(EntityKey::ip_str) {
            keys.push(k);
        }
        if let Some(Ok(k)) = self.guest_fingerprint.as_deref().map(EntityKey::fingerprint) {
            keys.push(k);
        }
        keys
    }
}

/// One ledger row to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub event_id: Uuid,
    pub reservation_id: Option<Uuid>,
    pub subject: UsageSubject,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Usd,
    /// When it was recorded (Unix ms); decides the period.
    pub created_at_ms: i64,
}

/// What happened to one row of a `record_usage` batch (same order as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    /// Inserted now; `spend` holds, for each charged entity, the period and
    /// its spend total after this transaction committed.
    Recorded { spend: Vec<(EntityKey, Period, Decimal)> },
    /// An earlier row had this `event_id`; nothing changed. `cost_usd` is
    /// the cost recorded the first time.
    Duplicate { cost_usd: Decimal },
}

/// Alerts a `record_usage` transaction created (duplicates of alerts that
/// had already fired are not counted: they were not created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertsFired {
    pub threshold: u64,
    pub overage: u64,
    /// Pending deliveries written for them (alerts × channels).
    pub deliveries: u64,
}

/// What a `record_usage` transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedBatch {
    /// One per row given, in order.
    pub outcomes: Vec<UsageOutcome>,
    pub alerts: AlertsFired,
}

/// How a store connects and how long the request path waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bound on every database wait: pool acquire and statement alike.
    pub timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            timeout: std::time::Duration::from_millis(health::DEFAULT_DB_TIMEOUT_MS),
        }
    }
}

/// A connected store. Cloning is cheap (pools are shared).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs a backend call unless the store is known to be down, bounded by
/// the store's deadline, and feeds its outcome to the store's health.
macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        $self
            .health()
            .gated(async {
                match $self {
                    Store::Sqlite($s) => $e,
                    Store::Postgres($s) => $e,
                }
            })
            .await
    };
}

// Declared after `dispatch!`, which their `impl Store` blocks use.
mod alerts;
mod delivered;
mod stats;
pub use delivered::MAX_DELIVERED_BATCH;
pub use stats::PoolStats;
mod identity;

impl Store {
    /// Connects to `sqlite://path` (file created if missing) or
    /// `postgres://…`, and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<Store> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit options.
    pub async fn open_with(url: &str, options: StoreOptions) -> StoreResult<Store> {
        let store = Self::connect_with(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit options.
    pub async fn connect_with(url: &str, options: StoreOptions) -> StoreResult<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url, options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url, options).await?))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// Applies the backend's migrations (idempotent). Not bounded by the
    /// request deadline: a migration may take as long as it takes.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// This store's health (shared by its clones).
    pub fn health(&self) -> &health::StoreHealth {
        match self {
            Store::Sqlite(s) => s.health(),
            Store::Postgres(s) => s.health(),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Cheap liveness probe (`SELECT 1`), gated like every call.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, s => s.ping().await)
    }

    /// The periodic probe: `SELECT 1` within the deadline even while the
    /// store is down (its first success marks the store up again).
    pub async fn probe(&self) -> StoreResult<()> {
        self.health()
            .timed(async {
                match self {
                    Store::Sqlite(s) => s.ping().await,
                    Store::Postgres(s) => s.ping().await,
                }
            })
            .await
    }

    /// Probes every [`health::PROBE_EVERY`] until the task is aborted.
    pub fn spawn_probe(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(health::PROBE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = store.probe().await {
                    tracing::debug!(error = %err, "store probe failed");
                }
            }
        })
    }

    // --- catalogue: tiers, prices, settings -------------------------------

    pub async fn load_tiers(&self) -> StoreResult<Vec<Tier>> {
        dispatch!(self, s => s.load_tiers().await)
    }

    /// Inserts or replaces a tier.
    pub async fn put_tier(&self, tier: &Tier) -> StoreResult<()> {
        dispatch!(self, s => s.put_tier(tier).await)
    }

    pub async fn load_prices(&self) -> StoreResult<Vec<(String, Price)>> {
        dispatch!(self, s => s.load_prices().await)
    }

    /// Inserts or replaces a model's prices.
    pub async fn put_price(&self, model: &str, price: &Price) -> StoreResult<()> {
        dispatch!(self, s => s.put_price(model, price).await)
    }

    /// A value from the `settings` key/value table.
    pub async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self, s => s.get_setting(key).await)
    }

    /// Stores a setting only if the key is absent; returns whether it was
    /// stored (false: another process got there first).
    pub async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.put_setting_if_absent(key, value).await)
    }

    // --- users and budgets ------------------------------------------------

    /// Creates the user or changes their tier. The tier must exist
    /// (foreign key); the caller checks that first for a clear error.
    pub async fn put_user(&self, user_id: &str, tier: &str) -> StoreResult<()> {
        dispatch!(self, s => s.put_user(user_id, tier).await)
    }

    /// The user's tier, or None if there is no such user row.
    pub async fn user_tier(&self, user_id: &str) -> StoreResult<Option<String>> {
        dispatch!(self, s => s.user_tier(user_id).await)
    }

    /// Sets (`Some`) or removes (`None`) an entity's monthly budget, with
    /// the default alert thresholds.
    pub async fn put_budget(&self, entity: &EntityKey, budget: Option<Usd>) -> StoreResult<()> {
        dispatch!(self, s => s.put_budget(entity, budget, None).await)
    }

    /// Sets (`Some`) or removes (`None`) an entity's monthly budget and its
    /// alert thresholds (`None`: the defaults, 50/75/90/100 %).
    pub async fn put_budget_with_thresholds(
        &self,
        entity: &EntityKey,
        budget: Option<Usd>,
        thresholds: Option<&Thresholds>,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.put_budget(entity, budget, thresholds).await)
    }

    // --- the entity actor's start-up read ---------------------------------

    /// Loads an entity's tier, budget, spend for `period`, the current day
    /// window (a `day` row with `window_start > now_ms - DAY_MS`, newest
    /// first) and the `month` count for `period`. At most two queries.
    pub async fn load_entity(&self, entity: &EntityKey, period: Period, now_ms: i64) -> StoreResult<EntityRecord> {
        dispatch!(self, s => s.load_entity(entity, period, now_ms).await)
    }

    // --- writes from the flusher and the ledger ---------------------------

    /// Adds every delta to `entity_counters` (`count = count +
    /// excluded.count`). Deltas for the same row may appear more than once;
    /// they add up. Deltas that carry an ownership epoch are written only
    /// if it is still the entity's current one; the entities whose deltas
    /// were refused are returned (another node has taken them over).
    pub async fn flush_counters(&self, deltas: &[CounterDelta]) -> StoreResult<Vec<EntityKey>> {
        let (fenced, plain): (Vec<CounterDelta>, Vec<CounterDelta>) = deltas.iter().cloned().partition(|d| d.epoch > 0);
        if !plain.is_empty() {
            dispatch!(self, s => s.flush_counters(&plain).await)?;
        }
        if fenced.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.flush_fenced(&fenced).await)
    }

    /// Takes ownership of `entity` for `node_id`: bumps and returns its
    /// epoch, which this node's counter flushes for it will carry.
    pub async fn claim_entity(&self, entity: &EntityKey, node_id: &str) -> StoreResult<u64> {
        dispatch!(self, s => s.claim_entity(entity, node_id).await)
    }

    /// Records a batch of usage rows in one transaction: each new
    /// `event_id` is inserted into `model_usage`, and each charged
    /// entity's `entity_spend` row for the row's period is incremented by
    /// the sum of its new rows' costs; budget alerts crossed by the change
    /// are inserted into `usage_alerts`, with one pending delivery per
    /// channel that should hear of each. Rows whose `event_id` already
    /// exists (in the table or earlier in the batch) change nothing and come
    /// back as `Duplicate`. All or nothing: on error nothing is recorded.
    pub async fn record_usage(&self, rows: &[UsageRow]) -> StoreResult<Vec<UsageOutcome>> {
        Ok(self.record_usage_batch(rows).await?.outcomes)
    }

    /// [`Store::record_usage`], also saying how many alerts fired and
    /// deliveries were created (the ledger wakes the dispatcher on those).
    pub async fn record_usage_batch(&self, rows: &[UsageRow]) -> StoreResult<RecordedBatch> {
        dispatch!(self, s => s.record_usage(rows).await)
    }

    // --- reads for status, audits and tests -------------------------------

    /// `entity_spend.spent_usd` for one entity and period (zero if none).
    pub async fn entity_spend(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        dispatch!(self, s => s.entity_spend(entity, period).await)
    }

    /// Exact `SUM(model_usage.cost_usd)` of the rows charged to `entity` in
    /// `period` (summed as decimals, never as floats).
    pub async fn ledger_sum(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        dispatch!(self, s => s.ledger_sum(entity, period).await)
    }

    /// A stored counter (0 if no row).
    pub async fn counter(&self, entity: &EntityKey, window: WindowKind, window_start_ms: i64) -> StoreResult<u64> {
        dispatch!(self, s => s.counter(entity, window, window_start_ms).await)
    }

    /// Thresholds (percent) that have fired for an entity and period.
    pub async fn alerts_fired(&self, entity: &EntityKey, period: Period) -> StoreResult<Vec<u8>> {
        dispatch!(self, s => s.alerts_fired(entity, period).await)
    }
}

// --- helpers shared by both backends ----------------------------------------

/// The ledger columns `(user_id, organization_id, guest_ip,
/// guest_fingerprint)` for a subject: the id of each charged entity key
/// (so an IP is stored normalised, as in its key), or the raw text when it
/// is not a valid key (stored for the record, charged to nobody).
fn subject_columns(subject: &UsageSubject) -> [Option<String>; 4] {
    fn id(raw: &Option<String>, key: fn(&str) -> Result<EntityKey, crate::entity::KeyError>) -> Option<String> {
        raw.as_deref().map(|text| {
            key(text)
                .map(|k| k.id().to_string())
                .unwrap_or_else(|_| text.to_string())
        })
    }
    [
        id(&subject.user_id, EntityKey::user),
        id(&subject.organization_id, EntityKey::org),
        id(&subject.guest_ip, EntityKey::ip_str),
        id(&subject.guest_fingerprint, EntityKey::fingerprint),
    ]
}

/// For each row of a batch, the index of the first row with the same
/// `event_id` (itself if it is the first). Later occurrences are duplicates.
fn first_occurrences(rows: &[UsageRow]) -> Vec<usize> {
    let mut seen: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::with_capacity(rows.len());
    rows.iter()
        .enumerate()
        .map(|(i, row)| *seen.entry(row.event_id).or_insert(i))
        .collect()
}

/// `a + b`, as an error rather than a panic if it would overflow.
fn checked_add(a: Decimal, b: Decimal) -> StoreResult<Decimal> {
    a.checked_add(b)
        .ok_or_else(|| StoreError::Database(sqlx::Error::InvalidArgument(format!("amount overflow: {a} + {b}"))))
}

/// The amount to add to each (entity, period) spend row for the newly
/// inserted rows (`inserted[i]`), in key order (a fixed lock order).
fn spend_increments(
    rows: &[UsageRow],
    inserted: &[bool],
) -> StoreResult<std::collections::BTreeMap<(EntityKey, Period), Decimal>> {
    let mut sums = std::collections::BTreeMap::new();
    for (row, _) in rows.iter().zip(inserted).filter(|(_, new)| **new) {
        let period = Period::containing(row.created_at_ms);
        for key in row.subject.entities() {
            let sum = sums.entry((key, period)).or_insert(Decimal::ZERO);
            *sum = checked_add(*sum, row.cost_usd.value())?;
        }
    }
    Ok(sums)
}

/// The outcome of each row: `inserted[i]` for rows inserted now (first
/// occurrences only), `existing_cost[i]` for first occurrences that were
/// already in the ledger, and `totals` the spend after the transaction.
fn usage_outcomes(
    rows: &[UsageRow],
    first: &[usize],
    inserted: &[bool],
    existing_cost: &std::collections::HashMap<usize, Decimal>,
    totals: &std::collections::HashMap<(EntityKey, Period), Decimal>,
) -> StoreResult<Vec<UsageOutcome>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let f = first[i];
            if f == i && inserted[i] {
                let period = Period::containing(row.created_at_ms);
                let spend = row
                    .subject
                    .entities()
                    .into_iter()
                    .map(|key| {
                        let total = totals.get(&(key.clone(), period)).copied().unwrap_or_default();
                        (key, period, total.normalize())
                    })
                    .collect();
                Ok(UsageOutcome::Recorded { spend })
            } else if inserted[f] {
                Ok(UsageOutcome::Duplicate {
                    cost_usd: rows[f].cost_usd.value(),
                })
            } else {
                let cost = existing_cost.get(&f).copied().ok_or_else(|| StoreError::Corrupt {
                    column: "model_usage.event_id",
                    value: format!("{} neither inserted nor found", rows[f].event_id),
                })?;
                Ok(UsageOutcome::Duplicate {
                    cost_usd: cost.normalize(),
                })
            }
        })
        .collect()
}

/// Identical counter deltas summed, in key order (a fixed lock order).
fn aggregate_deltas(deltas: &[CounterDelta]) -> Vec<(&str, WindowKind, i64, i64)> {
    let mut sums: std::collections::BTreeMap<(&str, &'static str, i64), (WindowKind, i64)> =
        std::collections::BTreeMap::new();
    for d in deltas {
        let entry = sums
            .entry((d.entity.as_str(), d.window.as_str(), d.window_start_ms))
            .or_insert((d.window, 0));
        entry.1 = entry.1.saturating_add(d.delta);
    }
    sums.into_iter()
        .map(|((entity, _, start), (window, delta))| (entity, window, start, delta))
        .collect()
}

/// One fenced counter row, summed like [`aggregate_deltas`], sorted by
/// entity (a fixed lock order).
struct FencedRow {
    entity: EntityKey,
    window: WindowKind,
    start: i64,
    delta: i64,
    epoch: u64,
}

fn fenced_rows(deltas: &[CounterDelta]) -> Vec<FencedRow> {
    let mut sums: std::collections::BTreeMap<(&str, &'static str, i64), FencedRow> = std::collections::BTreeMap::new();
    for d in deltas {
        let row = sums
            .entry((d.entity.as_str(), d.window.as_str(), d.window_start_ms))
            .or_insert_with(|| FencedRow {
                entity: d.entity.clone(),
                window: d.window,
                start: d.window_start_ms,
                delta: 0,
                epoch: d.epoch,
            });
        row.delta = row.delta.saturating_add(d.delta);
        // One entity has one owner epoch at a time; the newest wins.
        row.epoch = row.epoch.max(d.epoch);
    }
    sums.into_values().collect()
}

/// A u64 as a BIGINT, refusing values that do not fit.
fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| {
        StoreError::Database(sqlx::Error::InvalidArgument(format!(
            "{what} {value} is too large to store"
        )))
    })
}

/// A stored count as u64; negative counts (net negative deltas) read as 0.
fn count_from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A stored non-negative integer that must fit `T`.
fn stored<T: TryFrom<i64>>(value: i64, column: &'static str) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt {
        column,
        value: value.to_string(),
    })
}

/// A stored amount that must be a valid `Usd`.
fn stored_usd(value: Decimal, column: &'static str) -> StoreResult<Usd> {
    Usd::new(value).map_err(|_| StoreError::Corrupt {
        column,
        value: value.to_string(),
    })
}

/// The alerts one `record_usage` transaction raises, as column arrays for
/// one multi-row insert.
#[derive(Debug, Default)]
struct RaisedAlerts {
    entities: Vec<String>,
    periods: Vec<String>,
    kinds: Vec<&'static str>,
    thresholds: Vec<u8>,
    levels: Vec<&'static str>,
    spent: Vec<Decimal>,
    limits: Vec<Decimal>,
}

impl RaisedAlerts {
    fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Adds the alerts a spend change from `before` to `after` raises
    /// against `limit`, with the budget's stored thresholds (`None`: the
    /// defaults). A stored list that does not parse (written by hand)
    /// falls back to the defaults rather than failing the ledger.
    fn add(
        &mut self,
        entity: &EntityKey,
        period: &str,
        thresholds: Option<&str>,
        before: Decimal,
        after: Decimal,
        limit: Decimal,
    ) {
        let thresholds = match thresholds.map(Thresholds::parse) {
            None => Thresholds::default(),
            Some(Ok(t)) => t,
            Some(Err(err)) => {
                tracing::warn!(entity = %entity, error = %err, "stored alert thresholds are invalid; using the defaults");
                Thresholds::default()
            }
        };
        for (kind, pct) in alert_rules::raised(&thresholds, before, after, limit) {
            self.entities.push(entity.as_str().to_string());
            self.periods.push(period.to_string());
            self.kinds.push(kind.as_str());
            self.thresholds.push(pct);
            self.levels.push(alert_rules::level(kind, pct));
            self.spent.push(after);
            self.limits.push(limit);
        }
    }
}

/// A stored alert kind.
fn stored_alert_kind(text: &str) -> StoreResult<AlertKind> {
    AlertKind::parse(text).ok_or_else(|| StoreError::Corrupt {
        column: "usage_alerts.kind",
        value: text.to_string(),
    })
}

/// A stored alert threshold (percent).
fn stored_threshold(value: i64) -> StoreResult<u8> {
    stored(value, "usage_alerts.threshold")
}
