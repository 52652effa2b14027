//! What the store tells the metrics: its pool's connections, and how many
//! entities have spent their budget this month (for
//! `tollgate_entities_over_budget`, refreshed at most every 30 s).

use super::{Store, StoreResult};
use crate::limits::calendar::Period;
use rust_decimal::Decimal;

/// A pool's connections right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolStats {
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

/// Entities whose spend this period has reached their budget (a member's
/// organisation cap is not counted here; their own budget is). Postgres.
const OVER_BUDGET_SQL: &str = "SELECT count(*) FROM entity_spend s \
     JOIN budget_limits b ON b.entity = s.entity \
     WHERE s.period = $1 AND s.spent_usd >= b.monthly_budget_usd";

impl Store {
    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Store::Sqlite(s) => {
                let p = s.pool();
                PoolStats {
                    open: p.size(),
                    idle: p.num_idle() as u32,
                    max: p.options().get_max_connections(),
                }
            }
            Store::Postgres(s) => {
                let p = s.pool();
                PoolStats {
                    open: p.size(),
                    idle: p.num_idle() as u32,
                    max: p.options().get_max_connections(),
                }
            }
        }
    }

    pub async fn entities_over_budget(&self, period: Period) -> StoreResult<u64> {
        let period = period.to_string();
        let n: i64 = match self {
            // Money is TEXT in SQLite, where `>=` would compare strings:
            // compare as decimals here instead.
            Store::Sqlite(s) => {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT s.spent_usd, b.monthly_budget_usd FROM entity_spend s \
                     JOIN budget_limits b ON b.entity = s.entity WHERE s.period = $1",
                )
                .bind(period)
                .fetch_all(s.pool())
                .await?;
                let over = rows.iter().filter(|(spent, limit)| {
                    matches!((spent.parse::<Decimal>(), limit.parse::<Decimal>()), (Ok(s), Ok(l)) if s >= l)
                });
                over.count() as i64
            }
            Store::Postgres(s) => {
                sqlx::query_scalar(OVER_BUDGET_SQL)
                    .bind(period)
                    .fetch_one(s.pool())
                    .await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
