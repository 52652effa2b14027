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
    AlertsFired, CounterDelta, EntityRecord, RaisedAlerts, RecordedBatch, StoreError, StoreResult, UsageRow,
    WindowCount, WindowKind, aggregate_deltas, count_from_db, first_occurrences, spend_increments, stored,
    stored_threshold, stored_usd, subject_columns, to_i64, usage_outcomes,
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
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

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

/// A spend row after the ledger's upsert: entity, period, spent, and the
/// entity's effective budget and alert thresholds (if it has a budget).
type SpendRow = (String, String, Decimal, Option<Decimal>, Option<String>);

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

    pub async fn record_usage(&self, rows: &[UsageRow]) -> StoreResult<RecordedBatch> {
        if rows.is_empty() {
            return Ok(RecordedBatch::default());
        }
        let first = first_occurrences(rows);
        // First occurrences, inserted in event_id order (a fixed lock order
        // on the unique index if two nodes see the same retried events).
        let mut unique: Vec<usize> = (0..rows.len()).filter(|&i| first[i] == i).collect();
        unique.sort_by_key(|&i| rows[i].event_id);
        let index_of: HashMap<Uuid, usize> = unique.iter().map(|&i| (rows[i].event_id, i)).collect();

        let n = unique.len();
        let mut event_ids = Vec::with_capacity(n);
        let mut reservation_ids = Vec::with_capacity(n);
        let mut user_ids = Vec::with_capacity(n);
        let mut org_ids = Vec::with_capacity(n);
        let mut ips = Vec::with_capacity(n);
        let mut fingerprints = Vec::with_capacity(n);
        let mut models = Vec::with_capacity(n);
        let mut input_tokens = Vec::with_capacity(n);
        let mut output_tokens = Vec::with_capacity(n);
        let mut costs = Vec::with_capacity(n);
        let mut periods = Vec::with_capacity(n);
        let mut created_ms = Vec::with_capacity(n);
        for &i in &unique {
            let row = &rows[i];
            let [user_id, org_id, ip, fp] = subject_columns(&row.subject);
            event_ids.push(row.event_id);
            reservation_ids.push(row.reservation_id);
            user_ids.push(user_id);
            org_ids.push(org_id);
            ips.push(ip);
            fingerprints.push(fp);
            models.push(row.model.as_str());
            input_tokens.push(to_i64(row.input_tokens, "input_tokens")?);
            output_tokens.push(to_i64(row.output_tokens, "output_tokens")?);
            costs.push(row.cost_usd.value());
            periods.push(Period::containing(row.created_at_ms).to_string());
            created_ms.push(row.created_at_ms);
        }

        let mut tx = self.pool.begin().await?;
        let new_ids: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO model_usage (event_id, reservation_id, user_id, organization_id, guest_ip, \
                 guest_fingerprint, model, input_tokens, output_tokens, cost_usd, period, created_at) \
             SELECT e, r, u, o, i, f, m, it, ot, c, p, timestamptz 'epoch' + ms * interval '1 millisecond' \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                         $8::int8[], $9::int8[], $10::numeric[], $11::text[], $12::int8[]) \
                  AS t(e, r, u, o, i, f, m, it, ot, c, p, ms) \
             ON CONFLICT (event_id) DO NOTHING \
             RETURNING event_id",
        )
        .bind(&event_ids)
        .bind(reservation_ids)
        .bind(user_ids)
        .bind(org_ids)
        .bind(ips)
        .bind(fingerprints)
        .bind(models)
        .bind(input_tokens)
        .bind(output_tokens)
        .bind(costs)
        .bind(periods)
        .bind(created_ms)
        .fetch_all(&mut *tx)
        .await?;

        let mut inserted = vec![false; rows.len()];
        for id in &new_ids {
            if let Some(&i) = index_of.get(id) {
                inserted[i] = true;
            }
        }

        // Rows already in the ledger: report the cost recorded first.
        let mut existing_cost = HashMap::new();
        if new_ids.len() < n {
            let old_ids: Vec<Uuid> = unique
                .iter()
                .filter(|&&i| !inserted[i])
                .map(|&i| rows[i].event_id)
                .collect();
            let found: Vec<(Uuid, Decimal)> =
                sqlx::query_as("SELECT event_id, cost_usd FROM model_usage WHERE event_id = ANY($1)")
                    .bind(old_ids)
                    .fetch_all(&mut *tx)
                    .await?;
            for (id, cost) in found {
                if let Some(&i) = index_of.get(&id) {
                    existing_cost.insert(i, cost);
                }
            }
        }

        // Spend: one upsert for every (entity, period) touched, returning the
        // new totals and the budgets the entities run with (a member's: the
        // lower of their own and their organisation's cap on them; LEAST
        // ignores NULLs), against which alerts fire.
        let increments = spend_increments(rows, &inserted)?;
        let mut totals = HashMap::with_capacity(increments.len());
        let mut fired = AlertsFired::default();
        if !increments.is_empty() {
            let mut by_text: HashMap<(&str, String), (&EntityKey, Period, Decimal)> =
                HashMap::with_capacity(increments.len());
            let mut entities = Vec::with_capacity(increments.len());
            let mut periods = Vec::with_capacity(increments.len());
            let mut amounts = Vec::with_capacity(increments.len());
            for ((key, period), added) in &increments {
                entities.push(key.as_str());
                periods.push(period.to_string());
                amounts.push(*added);
                by_text.insert((key.as_str(), period.to_string()), (key, *period, *added));
            }
            let updated: Vec<SpendRow> = sqlx::query_as(
                "WITH up AS ( \
                     INSERT INTO entity_spend (entity, period, spent_usd) \
                     SELECT e, p, s FROM UNNEST($1::text[], $2::text[], $3::numeric[]) AS t(e, p, s) \
                     ON CONFLICT (entity, period) \
                     DO UPDATE SET spent_usd = entity_spend.spent_usd + excluded.spent_usd, updated_at = now() \
                     RETURNING entity, period, spent_usd) \
                 SELECT up.entity, up.period, up.spent_usd, \
                        LEAST(b.monthly_budget_usd, c.monthly_budget_usd), b.alert_thresholds \
                 FROM up LEFT JOIN budget_limits b ON b.entity = up.entity \
                 LEFT JOIN member_budget_caps c \
                     ON up.entity LIKE 'user:%' AND c.user_id = substr(up.entity, 6)",
            )
            .bind(entities)
            .bind(periods)
            .bind(amounts)
            .fetch_all(&mut *tx)
            .await?;

            let mut raised = RaisedAlerts::default();
            for (entity, period_text, after, budget, thresholds) in updated {
                let Some(&(key, period, added)) = by_text.get(&(entity.as_str(), period_text.clone())) else {
                    return Err(StoreError::Corrupt {
                        column: "entity_spend.entity",
                        value: format!("{entity} {period_text} was not in the batch"),
                    });
                };
                let before = after.checked_sub(added).ok_or_else(|| StoreError::Corrupt {
                    column: "entity_spend.spent_usd",
                    value: after.to_string(),
                })?;
                if let Some(limit) = budget {
                    raised.add(key, &period_text, thresholds.as_deref(), before, after, limit);
                }
                totals.insert((key.clone(), period), after);
            }
            if !raised.is_empty() {
                // One statement: the new alerts (the unique key drops any
                // that already fired) feed one delivery per live channel
                // that should hear of them — platform channels, and the
                // channels of the entity's organisation (a user's: the one
                // they belong to now).
                let (threshold_alerts, overage_alerts, deliveries): (i64, i64, i64) = sqlx::query_as(
                    "WITH new_alerts AS ( \
                         INSERT INTO usage_alerts (id, entity, period, kind, threshold, level, spent_usd, limit_usd) \
                         SELECT gen_random_uuid(), e, p, k, t, l, s, m \
                         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], \
                                     $6::numeric[], $7::numeric[]) AS x(e, p, k, t, l, s, m) \
                         ON CONFLICT (entity, period, kind, threshold) DO NOTHING \
                         RETURNING id, entity, kind), \
                     new_deliveries AS ( \
                         INSERT INTO alert_deliveries (id, alert_id, channel_id) \
                         SELECT gen_random_uuid(), a.id, c.id FROM new_alerts a \
                         JOIN alert_channels c ON c.deleted_at IS NULL AND (c.org_id IS NULL OR c.org_id = \
                             CASE WHEN a.entity LIKE 'org:%' THEN substr(a.entity, 5) \
                                  WHEN a.entity LIKE 'user:%' THEN \
                                      (SELECT m.org_id FROM org_members m WHERE m.user_id = substr(a.entity, 6)) \
                             END) \
                         RETURNING 1) \
                     SELECT (SELECT count(*) FROM new_alerts WHERE kind = 'threshold'), \
                            (SELECT count(*) FROM new_alerts WHERE kind = 'overage'), \
                            (SELECT count(*) FROM new_deliveries)",
                )
                .bind(raised.entities)
                .bind(raised.periods)
                .bind(raised.kinds)
                .bind(raised.thresholds.into_iter().map(i32::from).collect::<Vec<_>>())
                .bind(raised.levels)
                .bind(raised.spent)
                .bind(raised.limits)
                .fetch_one(&mut *tx)
                .await?;
                fired = AlertsFired {
                    threshold: count_from_db(threshold_alerts),
                    overage: count_from_db(overage_alerts),
                    deliveries: count_from_db(deliveries),
                };
            }
        }
        tx.commit().await?;
        Ok(RecordedBatch {
            outcomes: usage_outcomes(rows, &first, &inserted, &existing_cost, &totals)?,
            alerts: fired,
        })
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
