//! The ledger's group commit, SQLite flavour.
//!
//! A batch is one `BEGIN IMMEDIATE` transaction (one WAL fsync at commit)
//! of a fixed handful of statements, whatever its size: the rows go in as
//! one JSON array (`json_each`), so the statement text never changes (one
//! cached prepared statement, no bind-parameter limit). Money is still
//! added in Rust, never in SQL (see the module above): the spend rows are
//! read in one statement and written back in one.

use super::{SqliteStore, decimal, money_text, usd};
use crate::entity::{EntityKey, EntityKind};
use crate::limits::alerts::AlertKind;
use crate::limits::budget::effective_budget;
use crate::limits::calendar::Period;
use crate::store::{
    AlertsFired, RaisedAlerts, RecordedBatch, StoreError, StoreResult, UsageRow, checked_add, first_occurrences,
    spend_increments, stored_alert_kind, subject_columns, to_i64, usage_outcomes,
};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::SqliteConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// A ledger row as the insert's JSON array element: event id, reservation
/// id, user, org, ip, fingerprint, model, input and output tokens, cost,
/// period, created (ms).
type LedgerJson<'a> = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    &'a str,
    i64,
    i64,
    String,
    String,
    i64,
);

/// A spend row read before its write-back: index in the batch's key list,
/// spent, the entity's budget, a member's cap, the alert thresholds.
type SpendRead = (i64, Option<String>, Option<String>, Option<String>, Option<String>);

/// An alert as the insert's JSON array element: id, entity, period, kind,
/// threshold, level, spent, limit.
type AlertJson<'a> = (String, &'a str, &'a str, &'a str, u8, &'a str, String, String);

/// SQL for a random (v4) UUID as text: SQLite has no UUID function.
macro_rules! random_uuid_sql {
    () => {
        "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' \
         || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' \
         || hex(randomblob(6)))"
    };
}

impl SqliteStore {
    pub async fn record_usage(&self, rows: &[UsageRow]) -> StoreResult<RecordedBatch> {
        if rows.is_empty() {
            return Ok(RecordedBatch::default());
        }
        let first = first_occurrences(rows);
        let unique: Vec<usize> = (0..rows.len()).filter(|&i| first[i] == i).collect();
        let index_of: HashMap<Uuid, usize> = unique.iter().map(|&i| (rows[i].event_id, i)).collect();
        // Serialised before the write lock is taken.
        let ledger_rows = ledger_json(rows, &unique)?;

        // IMMEDIATE: take the write lock now, so the spend read below and
        // its write-back are one atomic step.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let new_ids: Vec<String> = sqlx::query_scalar(
            "INSERT INTO model_usage (event_id, reservation_id, user_id, organization_id, guest_ip, \
                 guest_fingerprint, model, input_tokens, output_tokens, cost_usd, period, created_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                    value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11 \
             FROM json_each($1) WHERE true \
             ON CONFLICT (event_id) DO NOTHING \
             RETURNING event_id",
        )
        .bind(ledger_rows)
        .fetch_all(&mut *tx)
        .await?;
        let mut inserted = vec![false; rows.len()];
        for id in &new_ids {
            inserted[batch_index(&index_of, id)?] = true;
        }

        // Rows already in the ledger: report the cost recorded first.
        let mut existing_cost = HashMap::new();
        if new_ids.len() < unique.len() {
            let old_ids: Vec<String> = unique
                .iter()
                .filter(|&&i| !inserted[i])
                .map(|&i| rows[i].event_id.hyphenated().to_string())
                .collect();
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT event_id, cost_usd FROM model_usage WHERE event_id IN (SELECT value FROM json_each($1))",
            )
            .bind(to_json(&old_ids)?)
            .fetch_all(&mut *tx)
            .await?;
            for (id, cost) in found {
                existing_cost.insert(batch_index(&index_of, &id)?, decimal(&cost, "model_usage.cost_usd")?);
            }
        }

        let increments = spend_increments(rows, &inserted)?;
        let mut totals = HashMap::with_capacity(increments.len());
        let mut raised = RaisedAlerts::default();
        if !increments.is_empty() {
            let added: Vec<((EntityKey, Period), Decimal)> = increments.into_iter().collect();
            let after = add_spend(&mut tx, &added, &mut raised).await?;
            for (((key, period), _), after) in added.into_iter().zip(after) {
                totals.insert((key, period), after);
            }
        }
        let alerts = insert_alerts(&mut tx, raised).await?;
        tx.commit().await?;
        Ok(RecordedBatch {
            outcomes: usage_outcomes(rows, &first, &inserted, &existing_cost, &totals)?,
            alerts,
        })
    }
}

/// The first occurrences (`unique`) as the insert's JSON array.
fn ledger_json(rows: &[UsageRow], unique: &[usize]) -> StoreResult<String> {
    let mut values: Vec<LedgerJson> = Vec::with_capacity(unique.len());
    for &i in unique {
        let row = &rows[i];
        let [user_id, org_id, ip, fp] = subject_columns(&row.subject);
        values.push((
            row.event_id.hyphenated().to_string(),
            row.reservation_id.map(|r| r.hyphenated().to_string()),
            user_id,
            org_id,
            ip,
            fp,
            row.model.as_str(),
            to_i64(row.input_tokens, "input_tokens")?,
            to_i64(row.output_tokens, "output_tokens")?,
            money_text(row.cost_usd.value()),
            Period::containing(row.created_at_ms).to_string(),
            row.created_at_ms,
        ));
    }
    to_json(&values)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        column: "model_usage",
        value: e.to_string(),
    })
}

/// The batch row an `event_id` read back from the ledger belongs to.
fn batch_index(index_of: &HashMap<Uuid, usize>, id: &str) -> StoreResult<usize> {
    Uuid::parse_str(id)
        .ok()
        .and_then(|id| index_of.get(&id).copied())
        .ok_or_else(|| StoreError::Corrupt {
            column: "model_usage.event_id",
            value: format!("{id} was not in the batch"),
        })
}

/// Adds each amount to its spend row inside the caller's transaction (one
/// read, one write for the whole batch), adds the budget alerts the
/// changes raise to `raised`, and returns the new totals in `added`'s
/// order.
async fn add_spend(
    conn: &mut SqliteConnection,
    added: &[((EntityKey, Period), Decimal)],
    raised: &mut RaisedAlerts,
) -> StoreResult<Vec<Decimal>> {
    let periods: Vec<String> = added.iter().map(|((_, period), _)| period.to_string()).collect();
    let keys: Vec<(&str, &str)> = added
        .iter()
        .zip(&periods)
        .map(|(((key, _), _), period)| (key.as_str(), period.as_str()))
        .collect();
    // A member runs with the lower of their own budget and their
    // organisation's cap on them; alerts fire against that.
    let read: Vec<SpendRead> = sqlx::query_as(
        "SELECT t.key, s.spent_usd, b.monthly_budget_usd, c.monthly_budget_usd, b.alert_thresholds \
         FROM json_each($1) AS t \
         LEFT JOIN entity_spend s ON s.entity = t.value ->> 0 AND s.period = t.value ->> 1 \
         LEFT JOIN budget_limits b ON b.entity = t.value ->> 0 \
         LEFT JOIN member_budget_caps c \
             ON substr(t.value ->> 0, 1, 5) = 'user:' AND c.user_id = substr(t.value ->> 0, 6)",
    )
    .bind(to_json(&keys)?)
    .fetch_all(&mut *conn)
    .await?;
    if read.len() != added.len() {
        return Err(StoreError::Corrupt {
            column: "entity_spend",
            value: format!("read {} spend rows for {} keys", read.len(), added.len()),
        });
    }

    let mut totals = vec![Decimal::ZERO; added.len()];
    let mut written: Vec<(&str, &str, String)> = Vec::with_capacity(added.len());
    for (i, spent, budget, cap, thresholds) in read {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < added.len())
            .ok_or_else(|| StoreError::Corrupt {
                column: "entity_spend",
                value: format!("key index {i} out of range"),
            })?;
        let ((key, _), amount) = &added[i];
        let before = spent
            .map(|s| decimal(&s, "entity_spend.spent_usd"))
            .transpose()?
            .unwrap_or_default();
        let after = checked_add(before, *amount)?;
        let budget = effective_budget(
            budget
                .map(|b| usd(&b, "budget_limits.monthly_budget_usd"))
                .transpose()?,
            if key.kind() == EntityKind::User {
                cap.map(|c| usd(&c, "member_budget_caps.monthly_budget_usd"))
                    .transpose()?
            } else {
                None
            },
        );
        if let Some(limit) = budget {
            raised.add(key, &periods[i], thresholds.as_deref(), before, after, limit.value());
        }
        totals[i] = after.normalize();
        written.push((keys[i].0, keys[i].1, money_text(after)));
    }
    sqlx::query(concat!(
        "INSERT INTO entity_spend (entity, period, spent_usd) \
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each($1) WHERE true \
         ON CONFLICT (entity, period) DO UPDATE SET spent_usd = excluded.spent_usd, updated_at = ",
        now_ms_sql!()
    ))
    .bind(to_json(&written)?)
    .execute(&mut *conn)
    .await?;
    Ok(totals)
}

/// Inserts the raised alerts (those that already fired are dropped by the
/// unique key) and one pending delivery for each new alert and each live
/// channel that should hear of it: platform channels, and the channels of
/// the entity's organisation (a user's: the one they belong to now).
async fn insert_alerts(conn: &mut SqliteConnection, raised: RaisedAlerts) -> StoreResult<AlertsFired> {
    let mut fired = AlertsFired::default();
    if raised.is_empty() {
        return Ok(fired);
    }
    let alerts: Vec<AlertJson> = (0..raised.entities.len())
        .map(|i| {
            (
                Uuid::new_v4().hyphenated().to_string(),
                raised.entities[i].as_str(),
                raised.periods[i].as_str(),
                raised.kinds[i],
                raised.thresholds[i],
                raised.levels[i],
                money_text(raised.spent[i]),
                money_text(raised.limits[i]),
            )
        })
        .collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO usage_alerts (id, entity, period, kind, threshold, level, spent_usd, limit_usd) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                value ->> 7 \
         FROM json_each($1) WHERE true \
         ON CONFLICT (entity, period, kind, threshold) DO NOTHING RETURNING id, kind",
    )
    .bind(to_json(&alerts)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut new_ids: Vec<String> = Vec::with_capacity(inserted.len());
    for (id, kind) in inserted {
        match stored_alert_kind(&kind)? {
            AlertKind::Threshold => fired.threshold += 1,
            AlertKind::Overage => fired.overage += 1,
        }
        new_ids.push(id);
    }
    if new_ids.is_empty() {
        return Ok(fired);
    }
    let done = sqlx::query(concat!(
        "INSERT INTO alert_deliveries (id, alert_id, channel_id) SELECT ",
        random_uuid_sql!(),
        ", a.id, c.id FROM usage_alerts a \
         JOIN alert_channels c ON c.deleted_at IS NULL AND (c.org_id IS NULL OR c.org_id = \
             CASE WHEN a.entity LIKE 'org:%' THEN substr(a.entity, 5) \
                  WHEN a.entity LIKE 'user:%' THEN \
                      (SELECT m.org_id FROM org_members m WHERE m.user_id = substr(a.entity, 6)) \
             END) \
         WHERE a.id IN (SELECT value FROM json_each($1))"
    ))
    .bind(to_json(&new_ids)?)
    .execute(&mut *conn)
    .await?;
    fired.deliveries = done.rows_affected();
    Ok(fired)
}
