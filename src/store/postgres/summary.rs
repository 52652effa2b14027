//! The usage summary, Postgres flavour: grouped and summed in SQL, where
//! `NUMERIC` addition is exact.

use super::PgStore;
use crate::store::identity::SummaryTotals;
use crate::store::{StoreResult, SummaryFilter, SummaryGroup, SummaryRow, stored};
use rust_decimal::Decimal;
use sqlx::{Postgres, QueryBuilder};

/// A group: name, events, input and output tokens, cost.
type GroupRow = (String, i64, i64, i64, Decimal);

impl PgStore {
    pub(in crate::store) async fn usage_summary(
        &self,
        filter: &SummaryFilter,
        group: SummaryGroup,
    ) -> StoreResult<Vec<SummaryRow>> {
        let key = match group {
            SummaryGroup::Model => "model",
            SummaryGroup::User => "COALESCE(user_id, '')",
            SummaryGroup::Day => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let mut query = QueryBuilder::<Postgres>::new("SELECT ");
        // The bounds are constants for the planner, so the (…, created_at)
        // indexes serve the range.
        query
            .push(key)
            .push(
                ", COUNT(*), SUM(input_tokens)::int8, SUM(output_tokens)::int8, SUM(cost_usd) FROM model_usage \
                 WHERE created_at >= timestamptz 'epoch' + interval '1 millisecond' * ",
            )
            .push_bind(filter.from_ms)
            .push(" AND created_at < timestamptz 'epoch' + interval '1 millisecond' * ")
            .push_bind(filter.to_ms);
        if let Some(org_id) = &filter.org_id {
            query.push(" AND organization_id = ").push_bind(org_id.clone());
        }
        if let Some(user_id) = &filter.user_id {
            query.push(" AND user_id = ").push_bind(user_id.clone());
        }
        query.push(" GROUP BY 1");

        let groups: Vec<GroupRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let mut totals = SummaryTotals::default();
        for (key, events, input, output, cost) in groups {
            totals.add(
                key,
                stored(events, "model_usage (count)")?,
                stored(input, "model_usage.input_tokens (sum)")?,
                stored(output, "model_usage.output_tokens (sum)")?,
                cost,
            )?;
        }
        Ok(totals.into_rows())
    }
}
