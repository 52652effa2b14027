//! The ledger's group commit, Postgres flavour: a batch is one
//! transaction of a fixed handful of set-based statements (the rows as
//! arrays through `UNNEST`, one aggregated spend upsert, one alerts
//! statement), whatever its size.

use super::PgStore;
use crate::entity::EntityKey;
use crate::limits::calendar::Period;
use crate::store::{
    AlertsFired, RaisedAlerts, RecordedBatch, StoreError, StoreResult, UsageRow, count_from_db, first_occurrences,
    spend_increments, subject_columns, to_i64, usage_outcomes,
};
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// A spend row after the ledger's upsert: entity, period, spent, and the
/// entity's effective budget and alert thresholds (if it has a budget).
type SpendRow = (String, String, Decimal, Option<Decimal>, Option<String>);

impl PgStore {
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
}
