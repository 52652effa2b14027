//! The usage summary, SQLite flavour.
//!
//! SQLite cannot add money exactly (its `SUM` on decimal text goes through
//! floats), so the matching ledger rows are streamed and added up in Rust as
//! `Decimal`, holding one running total per group rather than every row.

use super::{SqliteStore, decimal};
use crate::store::identity::{SummaryTotals, utc_day};
use crate::store::{StoreResult, SummaryFilter, SummaryGroup, SummaryRow, stored};
use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Sqlite};

/// A ledger row: model, user, created (ms), input and output tokens, cost.
type LedgerRow = (String, Option<String>, i64, i64, i64, String);

impl SqliteStore {
    pub(in crate::store) async fn usage_summary(
        &self,
        filter: &SummaryFilter,
        group: SummaryGroup,
    ) -> StoreResult<Vec<SummaryRow>> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT model, user_id, created_at, input_tokens, output_tokens, cost_usd FROM model_usage \
             WHERE created_at >= ",
        );
        query.push_bind(filter.from_ms);
        query.push(" AND created_at < ").push_bind(filter.to_ms);
        if let Some(org_id) = &filter.org_id {
            query.push(" AND organization_id = ").push_bind(org_id.clone());
        }
        if let Some(user_id) = &filter.user_id {
            query.push(" AND user_id = ").push_bind(user_id.clone());
        }

        let mut totals = SummaryTotals::default();
        let mut rows = query.build_query_as::<LedgerRow>().fetch(&self.pool);
        while let Some((model, user_id, created_at, input, output, cost)) = rows.try_next().await? {
            let key = match group {
                SummaryGroup::Model => model,
                SummaryGroup::User => user_id.unwrap_or_default(),
                SummaryGroup::Day => utc_day(created_at)?,
            };
            totals.add(
                key,
                1,
                stored(input, "model_usage.input_tokens")?,
                stored(output, "model_usage.output_tokens")?,
                decimal(&cost, "model_usage.cost_usd")?,
            )?;
        }
        Ok(totals.into_rows())
    }
}
