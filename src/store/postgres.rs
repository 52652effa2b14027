//! The Postgres backend: any number of nodes share one database.
//!
//! Money is `NUMERIC`, bound and read as `Decimal`, so sums in SQL are
//! exact. Batches go to the server as arrays (`UNNEST`), so a group commit
//! of a thousand usage rows is a handful of statements, not a thousand.
//! Multi-row writes are applied in a sorted order so that two nodes
//! writing overlapping rows lock them in the same order (no deadlocks).

use super::StoreOptions;
use super::health::StoreHealth;
use super::{
    CounterDelta, EntityRecord, StoreError, StoreResult, WindowCount, WindowKind, aggregate_deltas, count_from_db,
    stored, stored_threshold, stored_usd, to_i64,
};
use crate::entity::{EntityKey, EntityKind};
use crate::limits::alerts::Thresholds;
use crate::limits::budget::effective_budget;
use crate::limits::calendar::{DAY_MS, Period};
use crate::limits::pricing::Price;
use crate::limits::tier::Tier;
use crate::money::Usd;
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// SQL for a `TIMESTAMPTZ` column as Unix milliseconds (`BIGINT`), truncated
/// to the millisecond first so the cast never rounds up.
macro_rules! ms_of {
    ($column:literal) => {
        concat!(
            "(extract(epoch FROM date_trunc('milliseconds', ",
            $column,
            ")) * 1000)::int8"
        )
    };
}

/// SQL for a `TIMESTAMPTZ` from a Unix-millisecond `BIGINT` expression.
macro_rules! at_ms {
    ($ms:literal) => {
        concat!("(timestamptz 'epoch' + ", $ms, " * interval '1 millisecond')")
    };
}

// Declared after `ms_of!` and `at_ms!`, which they use.
mod alerts;
mod delivered;
mod invitations;
mod keys;
mod orgs;
mod ownership;
mod summary;
mod usage;

/// A `subscription_tiers` row: name, daily, monthly, rpm, price.
type TierRow = (String, i64, Option<i64>, Option<i32>, Decimal);

/// Connections in the pool.
const POOL_SIZE: u32 = 16;

/// A pooled connection is replaced after this long, so that after a
/// failover every connection ends up on the new primary even if the old
/// one never closed them.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// The pool: acquiring waits at most the store's deadline, and every
/// connection is pinged before it is handed out, so one that a restart or
/// failover broke is discarded, never reused.
fn pool_options(options: StoreOptions) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(options.timeout)
        .test_before_acquire(true)
        .max_lifetime(MAX_CONNECTION_LIFETIME)
}

/// A Postgres store. Cloning shares the pool and its health.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    health: Arc<StoreHealth>,
}

impl PgStore {
    pub async fn connect(url: &str, options: StoreOptions) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?, options).await
    }

    /// Connects with ready-made connection options (the test helpers name
    /// a fresh database this way).
    pub(super) async fn connect_with(connect: PgConnectOptions, options: StoreOptions) -> StoreResult<Self> {
        let pool = pool_options(options).connect_with(connect).await?;
        Ok(PgStore {
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
                    rpm: rpm
                        .map(|r| stored(i64::from(r), "subscription_tiers.rpm"))
                        .transpose()?,
                    price_monthly_usd: stored_usd(price, "subscription_tiers.price_monthly_usd")?,
                })
            })
            .collect()
    }

    pub async fn put_tier(&self, tier: &Tier) -> StoreResult<()> {
        let rpm = tier
            .rpm
            .map(|r| {
                i32::try_from(r)
                    .map_err(|_| StoreError::Database(sqlx::Error::InvalidArgument(format!("rpm {r} is too large"))))
            })
            .transpose()?;
        sqlx::query(
            "INSERT INTO subscription_tiers (name, daily_limit, monthly_limit, rpm, price_monthly_usd) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET daily_limit = excluded.daily_limit, \
                 monthly_limit = excluded.monthly_limit, rpm = excluded.rpm, \
                 price_monthly_usd = excluded.price_monthly_usd, updated_at = now()",
        )
        .bind(&tier.name)
        .bind(to_i64(tier.daily_limit, "daily_limit")?)
        .bind(tier.monthly_limit.map(|m| to_i64(m, "monthly_limit")).transpose()?)
        .bind(rpm)
        .bind(tier.price_monthly_usd.value())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn load_prices(&self) -> StoreResult<Vec<(String, Price)>> {
        let rows: Vec<(String, Decimal, Decimal)> =
            sqlx::query_as("SELECT model, input_per_mtok_usd, output_per_mtok_usd FROM model_prices ORDER BY model")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(model, input, output)| {
                let price = Price {
                    input_per_mtok_usd: stored_usd(input, "model_prices.input_per_mtok_usd")?,
                    output_per_mtok_usd: stored_usd(output, "model_prices.output_per_mtok_usd")?,
                };
                Ok((model, price))
            })
            .collect()
    }

    pub async fn put_price(&self, model: &str, price: &Price) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO model_prices (model, input_per_mtok_usd, output_per_mtok_usd) VALUES ($1, $2, $3) \
             ON CONFLICT (model) DO UPDATE SET input_per_mtok_usd = excluded.input_per_mtok_usd, \
                 output_per_mtok_usd = excluded.output_per_mtok_usd, updated_at = now()",
        )
        .bind(model)
        .bind(price.input_per_mtok_usd.value())
        .bind(price.output_per_mtok_usd.value())
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
        sqlx::query(
            "INSERT INTO users (id, subscription_tier) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET subscription_tier = excluded.subscription_tier, updated_at = now()",
        )
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
                sqlx::query(
                    "INSERT INTO budget_limits (entity, monthly_budget_usd, alert_thresholds) VALUES ($1, $2, $3) \
                     ON CONFLICT (entity) DO UPDATE SET monthly_budget_usd = excluded.monthly_budget_usd, \
                         alert_thresholds = excluded.alert_thresholds, updated_at = now()",
                )
                .bind(entity.as_str())
                .bind(budget.value())
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
        let (tier, budget, cap, spent): (Option<String>, Option<Decimal>, Option<Decimal>, Option<Decimal>) =
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
                 ORDER BY window_start DESC LIMIT 1) AS d \
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
                    .map(|b| stored_usd(b, "budget_limits.monthly_budget_usd"))
                    .transpose()?,
                cap.map(|b| stored_usd(b, "member_budget_caps.monthly_budget_usd"))
                    .transpose()?,
            ),
            spent_usd: spent.unwrap_or_default().normalize(),
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
        // Postgres refuses to touch one row twice in an upsert, so identical
        // rows are summed first (and sorted, for a fixed lock order).
        let rows = aggregate_deltas(deltas);
        let mut entities = Vec::with_capacity(rows.len());
        let mut windows = Vec::with_capacity(rows.len());
        let mut starts = Vec::with_capacity(rows.len());
        let mut counts = Vec::with_capacity(rows.len());
        for (entity, window, start, delta) in rows {
            entities.push(entity);
            windows.push(window.as_str());
            starts.push(start);
            counts.push(delta);
        }
        sqlx::query(
            "INSERT INTO entity_counters (entity, window_kind, window_start, count) \
             SELECT e, w, s, c FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS t(e, w, s, c) \
             ON CONFLICT (entity, window_kind, window_start) \
             DO UPDATE SET count = entity_counters.count + excluded.count",
        )
        .bind(entities)
        .bind(windows)
        .bind(starts)
        .bind(counts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- reads ----------------------------------------------------------------

    pub async fn entity_spend(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        let spent: Option<Decimal> =
            sqlx::query_scalar("SELECT spent_usd FROM entity_spend WHERE entity = $1 AND period = $2")
                .bind(entity.as_str())
                .bind(period.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(spent.unwrap_or_default().normalize())
    }

    pub async fn ledger_sum(&self, entity: &EntityKey, period: Period) -> StoreResult<Decimal> {
        let sql = match entity.kind() {
            EntityKind::User => "SELECT COALESCE(SUM(cost_usd), 0) FROM model_usage WHERE user_id = $1 AND period = $2",
            EntityKind::Org => {
                "SELECT COALESCE(SUM(cost_usd), 0) FROM model_usage WHERE organization_id = $1 AND period = $2"
            }
            EntityKind::Ip => "SELECT COALESCE(SUM(cost_usd), 0) FROM model_usage WHERE guest_ip = $1 AND period = $2",
            EntityKind::Fingerprint => {
                "SELECT COALESCE(SUM(cost_usd), 0) FROM model_usage WHERE guest_fingerprint = $1 AND period = $2"
            }
        };
        let sum: Decimal = sqlx::query_scalar(sql)
            .bind(entity.id())
            .bind(period.to_string())
            .fetch_one(&self.pool)
            .await?;
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
        let thresholds: Vec<i32> = sqlx::query_scalar(
            "SELECT threshold FROM usage_alerts WHERE entity = $1 AND period = $2 AND kind = 'threshold' \
             ORDER BY threshold",
        )
        .bind(entity.as_str())
        .bind(period.to_string())
        .fetch_all(&self.pool)
        .await?;
        thresholds.into_iter().map(|t| stored_threshold(i64::from(t))).collect()
    }

    /// The pool, for the test helpers.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}
