//! Alert channels, the delivery outbox and alert reads, SQLite flavour.
//! One node: a claim is one `BEGIN IMMEDIATE` transaction, which holds the
//! write lock, so two dispatcher loops in one process never claim the same
//! delivery either.

use super::{SqliteStore, decimal};
use crate::limits::calendar::Period;
use crate::store::alerts::{
    AlertFacts, AlertRecord, AlertScope, ChannelKind, ChannelRecord, ChannelScope, ChannelTarget, DeliveryJob,
    DeliveryRecord, DeliveryStatus, NewChannel,
};
use crate::store::{StoreError, StoreResult, count_from_db, stored, stored_alert_kind, stored_threshold};
use std::collections::HashMap;
use uuid::Uuid;

/// A channel row: id, kind, target, org, created (ms).
type ChannelRow = (String, String, String, Option<String>, i64);

/// An alert row: id, entity, kind, threshold, spent, limit, period, created (ms).
type AlertRow = (String, String, String, i64, String, String, String, i64);

/// A delivery as read with its alert: alert id, channel, status,
/// attempts, last error, delivered (ms).
type DeliveryRow = (String, String, String, i64, Option<String>, Option<i64>);

/// A claimed delivery: id, attempts, created (ms), channel id, kind,
/// target, secret, then the alert's columns.
type JobRow = (
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
);

fn channel_from_row((id, kind, target, org_id, created_at_ms): ChannelRow) -> StoreResult<ChannelRecord> {
    Ok(ChannelRecord {
        id,
        kind: channel_kind(&kind)?,
        target,
        org_id,
        created_at_ms,
    })
}

fn channel_kind(text: &str) -> StoreResult<ChannelKind> {
    ChannelKind::parse(text).ok_or_else(|| StoreError::Corrupt {
        column: "alert_channels.kind",
        value: text.to_string(),
    })
}

fn uuid(text: &str, column: &'static str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt {
        column,
        value: text.to_string(),
    })
}

fn alert_from_row(
    (id, entity, kind, threshold, spent_usd, limit_usd, period, created_at_ms): AlertRow,
) -> StoreResult<AlertFacts> {
    Ok(AlertFacts {
        id: uuid(&id, "usage_alerts.id")?,
        entity,
        kind: stored_alert_kind(&kind)?,
        threshold_pct: stored_threshold(threshold)?,
        spent_usd: decimal(&spent_usd, "usage_alerts.spent_usd")?,
        limit_usd: decimal(&limit_usd, "usage_alerts.limit_usd")?,
        period: Period::parse(&period).ok_or_else(|| StoreError::Corrupt {
            column: "usage_alerts.period",
            value: period.clone(),
        })?,
        created_at_ms,
    })
}

/// A list of ids as the JSON array `json_each` reads (one bind for any
/// number of ids).
fn json_ids(ids: &[String]) -> StoreResult<String> {
    serde_json::to_string(ids).map_err(|e| StoreError::Corrupt {
        column: "alert ids",
        value: e.to_string(),
    })
}

impl SqliteStore {
    pub(in crate::store) async fn create_channel(&self, channel: &NewChannel) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO alert_channels (id, kind, target, org_id, secret, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&channel.id)
        .bind(channel.kind.as_str())
        .bind(&channel.target)
        .bind(&channel.org_id)
        .bind(&channel.secret)
        .bind(&channel.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn channel(&self, id: &str) -> StoreResult<Option<ChannelRecord>> {
        let row: Option<ChannelRow> = sqlx::query_as(
            "SELECT id, kind, target, org_id, created_at FROM alert_channels WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(channel_from_row).transpose()
    }

    pub(in crate::store) async fn channels(
        &self,
        scope: &ChannelScope,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ChannelRecord>> {
        let (mode, org) = scope.params();
        let rows: Vec<ChannelRow> = sqlx::query_as(
            "SELECT id, kind, target, org_id, created_at FROM alert_channels WHERE deleted_at IS NULL \
               AND ($1 = 'all' OR ($1 = 'platform' AND org_id IS NULL) OR ($1 = 'org' AND org_id = $2)) \
               AND ($3 IS NULL OR id > $3) \
             ORDER BY id LIMIT $4",
        )
        .bind(mode)
        .bind(org)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(channel_from_row).collect()
    }

    pub(in crate::store) async fn delete_channel(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(concat!(
            "UPDATE alert_channels SET deleted_at = ",
            now_ms_sql!(),
            " WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE alert_deliveries SET status = 'dead', last_error = 'channel deleted', \
                 lease_owner = NULL, lease_until = NULL \
             WHERE channel_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn claim_deliveries(
        &self,
        node: &str,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<DeliveryJob>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(concat!(
            "UPDATE alert_deliveries SET lease_owner = $1, attempts = attempts + 1, lease_until = ",
            now_ms_sql!(),
            " + $3 WHERE id IN ( \
                 SELECT id FROM alert_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= ",
            now_ms_sql!(),
            " AND (lease_until IS NULL OR lease_until < ",
            now_ms_sql!(),
            ") ORDER BY next_attempt_at LIMIT $2) RETURNING id"
        ))
        .bind(node)
        .bind(i64::from(limit))
        .bind(lease_ms)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT d.id, d.attempts, d.created_at, ch.id, ch.kind, ch.target, ch.secret, \
                    a.id, a.entity, a.kind, a.threshold, a.spent_usd, a.limit_usd, a.period, a.created_at \
             FROM alert_deliveries d JOIN alert_channels ch ON ch.id = d.channel_id \
             JOIN usage_alerts a ON a.id = d.alert_id \
             WHERE d.id IN (SELECT value FROM json_each($1)) ORDER BY d.created_at",
        )
        .bind(json_ids(&ids)?)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(
                |(
                    id,
                    attempts,
                    created,
                    ch_id,
                    kind,
                    target,
                    secret,
                    a_id,
                    entity,
                    a_kind,
                    threshold,
                    spent,
                    lim,
                    period,
                    a_created,
                )| {
                    Ok(DeliveryJob {
                        id: uuid(&id, "alert_deliveries.id")?,
                        attempts: stored(attempts, "alert_deliveries.attempts")?,
                        created_at_ms: created,
                        channel: ChannelTarget {
                            id: ch_id,
                            kind: channel_kind(&kind)?,
                            target,
                            secret,
                        },
                        alert: alert_from_row((a_id, entity, a_kind, threshold, spent, lim, period, a_created))?,
                    })
                },
            )
            .collect()
    }

    pub(in crate::store) async fn release_leases(&self, node: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET lease_owner = NULL, lease_until = NULL \
             WHERE lease_owner = $1 AND status = 'pending'",
        )
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(in crate::store) async fn mark_delivered(&self, id: Uuid, node: &str) -> StoreResult<bool> {
        let done = sqlx::query(concat!(
            "UPDATE alert_deliveries SET status = 'delivered', last_error = NULL, delivered_at = ",
            now_ms_sql!(),
            ", lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'"
        ))
        .bind(id.hyphenated().to_string())
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn mark_retry(
        &self,
        id: Uuid,
        node: &str,
        next_attempt_ms: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET next_attempt_at = $3, last_error = $4, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id.hyphenated().to_string())
        .bind(node)
        .bind(next_attempt_ms)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn mark_dead(&self, id: Uuid, node: &str, error: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET status = 'dead', last_error = $3, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id.hyphenated().to_string())
        .bind(node)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn outbox_depth(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(count_from_db(n))
    }

    pub(in crate::store) async fn alerts(
        &self,
        scope: &AlertScope,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<AlertRecord>> {
        let (entity, org) = match scope {
            AlertScope::All => (None, None),
            AlertScope::Entity(key) => (Some(key.as_str()), None),
            AlertScope::Org(org) => (None, Some(org.as_str())),
        };
        let rows: Vec<AlertRow> = sqlx::query_as(
            "SELECT id, entity, kind, threshold, spent_usd, limit_usd, period, created_at FROM usage_alerts \
             WHERE created_at >= $1 AND ($2 IS NULL OR entity = $2) \
               AND ($3 IS NULL OR entity = 'org:' || $3 \
                    OR entity IN (SELECT 'user:' || user_id FROM org_members WHERE org_id = $3)) \
             ORDER BY created_at DESC, id LIMIT $4",
        )
        .bind(since_ms)
        .bind(entity)
        .bind(org)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let alerts: Vec<AlertFacts> = rows.into_iter().map(alert_from_row).collect::<StoreResult<_>>()?;
        let ids: Vec<String> = alerts.iter().map(|a| a.id.hyphenated().to_string()).collect();
        let deliveries: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT alert_id, channel_id, status, attempts, last_error, delivered_at FROM alert_deliveries \
             WHERE alert_id IN (SELECT value FROM json_each($1)) ORDER BY created_at, channel_id",
        )
        .bind(json_ids(&ids)?)
        .fetch_all(&self.pool)
        .await?;
        let mut by_alert: HashMap<Uuid, Vec<DeliveryRecord>> = HashMap::new();
        for (alert_id, channel_id, status, attempts, last_error, delivered_at_ms) in deliveries {
            by_alert
                .entry(uuid(&alert_id, "alert_deliveries.alert_id")?)
                .or_default()
                .push(DeliveryRecord {
                    channel_id,
                    status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                        column: "alert_deliveries.status",
                        value: status.clone(),
                    })?,
                    attempts: stored(attempts, "alert_deliveries.attempts")?,
                    last_error,
                    delivered_at_ms,
                });
        }
        Ok(alerts
            .into_iter()
            .map(|alert| AlertRecord {
                deliveries: by_alert.remove(&alert.id).unwrap_or_default(),
                alert,
            })
            .collect())
    }
}
