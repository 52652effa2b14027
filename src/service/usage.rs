//! Recording what a model call really cost.

use super::reservation::ReservationId;
use crate::actor::{EntityView, Settlement};
use crate::entity::EntityKey;
use crate::ledger::{Ledger, LedgerError};
use crate::router::{EntityRouter, RouteError};
use crate::store::health::StoreHealth;
use crate::store::{StoreError, UsageOutcome, UsageRow};
use rust_decimal::Decimal;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// The result of recording one event.
#[derive(Debug, Clone)]
pub struct UsageReceipt {
    pub duplicate: bool,
    pub cost_usd: Decimal,
    pub views: Vec<EntityView>,
}

/// Commits `row` to the ledger, then settles its reservation (if any) and
/// tells each charged entity its new spend total. The row is durable
/// before this returns Ok; if settling fails afterwards the spend is still
/// right (actors reload it from the store) and the hold expires by itself.
///
/// The commit waits at most the store's deadline, and not at all while the
/// store is down (503 `store_unavailable`; nothing acknowledged, so the
/// client retries with the same `event_id`, which never counts twice).
pub async fn record(
    router: &EntityRouter,
    ledger: &Ledger,
    health: &StoreHealth,
    row: UsageRow,
    reservation: Option<&ReservationId>,
) -> Result<UsageReceipt, UsageError> {
    let entities: Vec<EntityKey> = row.subject.entities();
    let hold = reservation.map(|r| r.hold);
    let cost = row.cost_usd.value();
    let unavailable = |err: StoreError| LedgerError::Store(Arc::new(err));
    health.fail_fast().map_err(unavailable)?;
    let outcome = tokio::time::timeout(health.timeout(), ledger.record(row))
        .await
        .unwrap_or_else(|_| Err(unavailable(StoreError::Timeout(health.timeout()))))?;
    let (duplicate, cost_usd, totals) = match outcome {
        UsageOutcome::Recorded { spend } => (false, None, spend),
        UsageOutcome::Duplicate { cost_usd } => (true, Some(cost_usd), Vec::new()),
    };
    let mut views = Vec::with_capacity(entities.len());
    for key in &entities {
        let committed = totals.iter().find(|(k, _, _)| k == key).map(|(_, p, t)| (*p, *t));
        views.push(router.settle(key, Settlement { hold, committed }).await?);
    }
    Ok(UsageReceipt {
        duplicate,
        cost_usd: cost_usd.unwrap_or(cost),
        views,
    })
}

/// Releases a hold on every entity of a reservation. Returns what was held
/// (per entity, the same amount), or None if no entity held it.
pub async fn release(router: &EntityRouter, reservation: &ReservationId) -> Result<Option<Decimal>, RouteError> {
    let mut released = None;
    for key in &reservation.entities {
        if let Some(amount) = router.release(key, reservation.hold).await? {
            released = Some(amount);
        }
    }
    Ok(released)
}
