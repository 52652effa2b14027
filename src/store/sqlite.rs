//! The SQLite backend: the embedded, single-node default.
//!
//! Money columns hold exact decimal strings. SQLite has no exact decimal
//! type and its `+` and `SUM` on numeric text go through floats, so no
//! arithmetic on money ever happens in SQL here: amounts are read, added in
//! Rust as `Decimal`, and written back inside one `BEGIN IMMEDIATE`
//! transaction (which holds the write lock from the start, so the
//! read-modify-write cannot race another writer).

use super::StoreOptions;
use super::health::StoreHealth;
use super::{
    CounterDelta, EntityRecord, StoreError, StoreResult, WindowCount, WindowKind, aggregate_deltas, checked_add,
    count_from_db, stored, stored_threshold, stored_usd, to_i64,
};
use crate::entity::{EntityKey, EntityKind};
use crate::limits::alerts::Thresholds;
use crate::limits::budget::effective_budget;
use crate::limits::calendar::{DAY_MS, Period};
use crate::limits::pricing::Price;
use crate::limits::tier::Tier;
use crate::money::Usd;
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite};
use std::str::FromStr;
use std::sync::Arc;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A `subscription_tiers` row: name, daily, monthly, rpm, price.
type TierRow = (String, i64, Option<i64>, Option<i64>, String);

/// Connections in the pool. Writers serialise on SQLite's lock anyway; a
/// few connections let reads proceed alongside a write (WAL).
const POOL_SIZE: u32 = 4;

/// Rows per multi-row `VALUES` upsert of counters (4 binds each), well
/// under SQLite's bind-parameter limit.
const COUNTER_CHUNK: usize = 200;

/// Current time as SQL, in Unix milliseconds (the timestamp columns' unit).
macro_rules! now_ms_sql {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

// Declared after `now_ms_sql!`, which they use.
mod alerts;
mod delivered;
mod invitations;
mod keys;
mod orgs;
mod ownership;
mod summary;
mod usage;

/// A SQLite store. Cloning shares the pool and its health.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    health: Arc<StoreHealth>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by a
    /// `sqlite://path` URL: WAL journal, `synchronous = FULL` (an
    /// acknowledged usage row survives power loss), foreign keys on, and a
    /// busy timeout of the store's deadline (a writer that would wait longer
    /// for the lock answers 503 like any other slow database wait).
    pub async fn connect(url: &str, options: StoreOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(options.timeout)
            // A COMMIT that fails (SQLITE_FULL on a full disk) leaves the
            // transaction open, holding the write lock: such a connection
            // is closed (which rolls it back), never handed out again.
            .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(connect)
            .await?;
        Ok(SqliteStore {
            pool,
            health: Arc::new(StoreHealth::new(options.timeout)),
        })
    }

    pub(super) fn health(&self) -> &StoreHealth {
        &self.health
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Applies the migrations up to and including `version` only (the test
    /// helpers build databases as older releases left them this way).
    pub(super) async fn migrate_to(&self, version: i64) -> StoreResult<()> {
        MIGRATOR.run_to(version, &self.pool).await?;
        Ok(())
    }

    /// The pool, for the test helpers.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // --- catalogue ----------------------------------------------------------

    pub async fn load_tiers(&self) -> StoreResult<Vec<Tier>> {
        let rows: Vec<TierRow> = sqlx::query_as(
            "SELECT name, daily_limit, monthly_limit, rpm, price_monthly_usd FROM subscription_tiers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(name, daily, monthly, rpm, price)| {
                Ok(Tier {
                    name,
                    daily_limit: stored(daily, "subscription_tiers.daily_limit")?,
                    monthly_limit: monthly
                        .map(|m| stored(m, "subscription_tiers.monthly_limit"))
                        .transpose()?,
                    rpm: rpm.map(|r| stored(r, "subscription_tiers.rpm")).transpose()?,
                    price_monthly_usd: usd(&price, "subscription_tiers.price_monthly_usd")?,
                })
            })
            .collect()
    }

    pub async fn put_tier(&self, tier: &Tier) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO subscription_tiers (name, daily_limit, monthly_limit, rpm, price_monthly_usd) ",
            "VALUES ($1, $2, $3, $4, $5) ",
            "ON CONFLICT (name) DO UPDATE SET daily_limit = excluded.daily_limit, ",
            "monthly_limit = excluded.monthly_limit, rpm = excluded.rpm, ",
            "price_monthly_usd = excluded.price_monthly_usd, updated_at = ",
            now_ms_sql!()
        ))
        .bind(&tier.name)
        .bind(to_i64(tier.daily_limit, "daily_limit")?)
        .bind(tier.monthly_limit.map(|m| to_i64(m, "monthly_limit")).transpose()?)
        .bind(tier.rpm.map(i64::from))
        .bind(money_text(tier.price_monthly_usd.value()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn load_prices(&self) -> StoreResult<Vec<(String, Price)>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT model, input_per_mtok_usd, output_per_mtok_usd FROM model_prices ORDER BY model")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(model, input, output)| {
                let price = Price {
                    input_per_mtok_usd: usd(&input, "model_prices.input_per_mtok_usd")?,
                    output_per_mtok_usd: usd(&output, "model_prices.output_per_mtok_usd")?,
                };
                Ok((model, price))
            })
            .collect()
    }

    pub async fn put_price(&self, model: &str, price: &Price) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO model_prices (model, input_per_mtok_usd, output_per_mtok_usd) VALUES ($1, $2, $3) ",
            "ON CONFLICT (model) DO UPDATE SET input_per_mtok_usd = excluded.input_per_mtok_usd, ",
            "output_per_mtok_usd = excluded.output_per_mtok_usd, updated_at = ",
            now_ms_sql!()
        ))
        .bind(model)
        .bind(money_text(price.input_per_mtok_usd.value()))
        .bind(money_text(price.output_per_mtok_usd.value()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    pub async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        let done = sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // --- users and budgets ----------------------------------------------------

    pub async fn put_user(&self, user_id: &str, tier: &str) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO users (id, subscription_tier) VALUES ($1, $2) ",
            "ON CONFLICT (id) DO UPDATE SET subscription_tier = excluded.subscription_tier, updated_at = ",
            now_ms_sql!()
        ))
        .bind(user_id)
        .bind(tier)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user_tier(&self, user_id: &str) -> StoreResult<Option<String>> {
        let tier = sqlx::query_scalar("SELECT subscription_tier FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(tier)
    }

    pub async fn put_budget(
        &self,
        entity: &EntityKey,
        budget: Option<Usd>,
        thresholds: Option<&Thresholds>,
    ) -> StoreResult<()> {
        match budget {
            Some(budget) => {
                sqlx::query(concat!(
                    "INSERT INTO budget_limits (entity, monthly_budget_usd, alert_thresholds) VALUES ($1, $2, $3) ",
                    "ON CONFLICT (entity) DO UPDATE SET monthly_budget_usd = excluded.monthly_budget_usd, ",
                    "alert_thresholds = excluded.alert_thresholds, updated_at = ",
                    now_ms_sql!()
                ))
                .bind(entity.as_str())
                .bind(money_text(budget.value()))
                .bind(thresholds.map(Thresholds::to_string))
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM budget_limits WHERE entity = $1")
                    .bind(entity.as_str())
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    // --- the entity actor's start-up read ---------------------------------------

    pub async fn load_entity(&self, entity: &EntityKey, period: Period, now_ms: i64) -> StoreResult<EntityRecord> {
        // At most one of these is bound; the other subquery matches nothing.
        // A member of an organisation follows the organisation's tier.
        let user_id = (entity.kind() == EntityKind::User).then(|| entity.id());
        let org_id = (entity.kind() == EntityKind::Org).then(|| entity.id());
        // A member's budget is the lower of their own and their
        // organisation's cap on it.
        let (tier, budget, cap, spent): (Option<String>, Option<String>, Option<String>, Option<String>) =
            sqlx::query_as(
                "SELECT COALESCE((SELECT o.subscription_tier FROM org_members m \
                                      JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1), \
                                 (SELECT subscription_tier FROM users WHERE id = $1), \
                                 (SELECT subscription_tier FROM organizations WHERE id = $4)), \
                        (SELECT monthly_budget_usd FROM budget_limits WHERE entity = $2), \
                        (SELECT monthly_budget_usd FROM member_budget_caps WHERE user_id = $1), \
                        (SELECT spent_usd FROM entity_spend WHERE entity = $2 AND period = $3)",
            )
            .bind(user_id)
            .bind(entity.as_str())
            .bind(period.to_string())
            .bind(org_id)
            .fetch_one(&self.pool)
            .await?;
        let windows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT window_kind, window_start, count FROM ( \
                 SELECT window_kind, window_start, count FROM entity_counters \
                 WHERE entity = $1 AND window_kind = 'day' AND window_start > $2 \
                 ORDER BY window_start DESC LIMIT 1) \
             UNION ALL \
             SELECT window_kind, window_start, count FROM entity_counters \
             WHERE entity = $1 AND window_kind = 'month' AND window_start = $3",
        )
        .bind(entity.as_str())
        .bind(now_ms.saturating_sub(DAY_MS))
        .bind(period.start_ms())
        .fetch_all(&self.pool)
        .await?;

        let mut record = EntityRecord {
            tier,
            budget_usd: effective_budget(
                budget
                    .map(|b| usd(&b, "budget_limits.monthly_budget_usd"))
                    .transpose()?,
                cap.map(|b| usd(&b, "member_budget_caps.monthly_budget_usd"))
                    .transpose()?,
            ),
            spent_usd: spent
                .map(|s| decimal(&s, "entity_spend.spent_usd"))
                .transpose()?
                .unwrap_or_default(),
            ..EntityRecord::default()
        };
        for (kind, start_ms, count) in windows {
            if kind == WindowKind::Day.as_str() {
                record.day = Some(WindowCount {
                    start_ms,
                    count: count_from_db(count),
                });
            } else {
                record.month_count = count_from_db(count);
            }
        }
        Ok(record)
    }

    // --- writes ---------------------------------------------------------------

    pub async fn flush_counters(&self, deltas: &[CounterDelta]) -> StoreResult<()> {
        let rows = aggregate_deltas(deltas);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in rows.chunks(COUNTER_CHUNK) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO entity_counters (entity, window_kind, window_start, count) ");
            insert.push_values(chunk, |mut values, (entity, window, start, delta)| {
                values
                    .push_bind(*entity)
                    .push_bind(window.as_str())
                    .push_bind(*start)
                    .push_bind(*delta);
            });
            insert
                .push(" ON CONFLICT (entity, window_kind, window_start) DO UPDATE SET count = count + excluded.count");
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // --- reads ----------------------------------------------------------------

    pub async fn entity_spend(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        let spent: Option<String> =
            sqlx::query_scalar("SELECT spent_usd FROM entity_spend WHERE entity = $1 AND period = $2")
                .bind(entity.as_str())
                .bind(period.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(spent
            .map(|s| decimal(&s, "entity_spend.spent_usd"))
            .transpose()?
            .unwrap_or_default())
    }

    pub async fn ledger_sum(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        let sql = match entity.kind() {
            EntityKind::User => "SELECT cost_usd FROM model_usage WHERE user_id = $1 AND period = $2",
            EntityKind::Org => "SELECT cost_usd FROM model_usage WHERE organization_id = $1 AND period = $2",
            EntityKind::Ip => "SELECT cost_usd FROM model_usage WHERE guest_ip = $1 AND period = $2",
            EntityKind::Fingerprint => "SELECT cost_usd FROM model_usage WHERE guest_fingerprint = $1 AND period = $2",
        };
        let costs: Vec<String> = sqlx::query_scalar(sql)
            .bind(entity.id())
            .bind(period.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut sum = Decimal::ZERO;
        for cost in costs {
            sum = checked_add(sum, decimal(&cost, "model_usage.cost_usd")?)?;
        }
        Ok(sum.normalize())
    }

    pub async fn counter(&self, entity: &EntityKey, window: WindowKind, window_start_ms: i64) -> StoreResult<u64> {
        let count: Option<i64> = sqlx::query_scalar(
            "SELECT count FROM entity_counters WHERE entity = $1 AND window_kind = $2 AND window_start = $3",
        )
        .bind(entity.as_str())
        .bind(window.as_str())
        .bind(window_start_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(count.map(count_from_db).unwrap_or(0))
    }

    pub async fn alerts_fired(&self, entity: &EntityKey, period: Period) -> StoreResult<Vec<u8>> {
        let thresholds: Vec<i64> = sqlx::query_scalar(
            "SELECT threshold FROM usage_alerts WHERE entity = $1 AND period = $2 AND kind = 'threshold' \
             ORDER BY threshold",
        )
        .bind(entity.as_str())
        .bind(period.to_string())
        .fetch_all(&self.pool)
        .await?;
        thresholds.into_iter().map(stored_threshold).collect()
    }
}

/// The exact text an amount is stored as.
fn money_text(value: Decimal) -> String {
    value.normalize().to_string()
}

/// A stored amount.
fn decimal(text: &str, column: &'static str) -> StoreResult<Decimal> {
    Decimal::from_str_exact(text)
        .map(|d| d.normalize())
        .map_err(|_| StoreError::Corrupt {
            column,
            value: text.to_string(),
        })
}

/// A stored non-negative amount.
fn usd(text: &str, column: &'static str) -> StoreResult<Usd> {
    stored_usd(decimal(text, column)?, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, testing::fresh_sqlite};

    fn inner(store: &Store) -> &SqliteStore {
        match store {
            Store::Sqlite(s) => s,
            Store::Postgres(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn bad_stored_text_is_corrupt_not_a_panic() {
        let (store, _dir) = fresh_sqlite().await;
        let pool = &inner(&store).pool;
        let key = EntityKey::user("broken").unwrap();
        let period = Period::containing(1_795_838_400_000);
        sqlx::query("INSERT INTO entity_spend (entity, period, spent_usd) VALUES ($1, $2, '1.5e3')")
            .bind(key.as_str())
            .bind(period.to_string())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO budget_limits (entity, monthly_budget_usd) VALUES ($1, '-1')")
            .bind(key.as_str())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE subscription_tiers SET price_monthly_usd = 'ten' WHERE name = 'pro'")
            .execute(pool)
            .await
            .unwrap();

        let err = store.entity_spend(&key, period).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    column: "entity_spend.spent_usd",
                    ..
                }
            ),
            "{err}"
        );
        let err = store.load_entity(&key, period, 0).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let err = store.load_tiers().await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    column: "subscription_tiers.price_monthly_usd",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn amounts_are_stored_as_exact_normalised_text() {
        assert_eq!(money_text(Decimal::from_str_exact("12.2070").unwrap()), "12.207");
        assert_eq!(
            money_text(Decimal::from_str_exact("0.000000000001").unwrap()),
            "0.000000000001"
        );
        assert_eq!(decimal("0.012207", "c").unwrap().to_string(), "0.012207");
        assert!(decimal("0.1e1", "c").is_err());
        assert!(decimal("", "c").is_err());
    }
}
