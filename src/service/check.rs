//! A check across one to four entities, all or nothing.
//!
//! Entities are asked in a fixed order (the key order). If one refuses,
//! what the earlier ones admitted is taken back, so a refused check changes
//! no counter and holds nothing. Under contention a check may spuriously
//! refuse (another check briefly holds what was later given back); it never
//! admits more than every limit allows.

use super::reservation::ReservationId;
use crate::actor::EntityView;
use crate::entity::EntityKey;
use crate::limits::budget::reservable;
use crate::limits::entity::{Admitted, Ask, Refusal};
use crate::router::{EntityRouter, RouteError};
use rust_decimal::Decimal;

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckPlan {
    /// The entities that must all allow; sorted and deduplicated here.
    pub entities: Vec<EntityKey>,
    pub requests: u64,
    pub estimate: Option<Decimal>,
    pub hold_ttl_ms: i64,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub refusal: Option<Refusal>,
    pub reservation: Option<ReservationId>,
    /// One view per entity, in plan order, after the check.
    pub views: Vec<EntityView>,
}

impl CheckOutcome {
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }
}

pub async fn check(router: &EntityRouter, mut plan: CheckPlan, now_ms: i64) -> Result<CheckOutcome, RouteError> {
    plan.entities.sort();
    plan.entities.dedup();
    // A zero estimate reserves nothing: no reservation id, no hold, and
    // the budget judges it as a check without an estimate.
    let estimate = reservable(plan.estimate);
    let reservation = estimate.map(|_| ReservationId::new(plan.entities.clone()));
    let ask = Ask {
        requests: plan.requests,
        estimate,
        hold: reservation.as_ref().map(|r| (r.hold, now_ms + plan.hold_ttl_ms)),
    };

    let mut admitted: Vec<(&EntityKey, Admitted)> = Vec::with_capacity(plan.entities.len());
    let mut views = Vec::with_capacity(plan.entities.len());
    let mut refusal = None;
    for key in &plan.entities {
        let reply = match router.admit(key, ask).await {
            Ok(reply) => reply,
            Err(err) => {
                rollback(router, &admitted, &mut views).await;
                return Err(err);
            }
        };
        views.push(reply.view);
        match reply.result {
            Ok(adm) => admitted.push((key, adm)),
            Err(r) => {
                refusal = Some(r);
                break;
            }
        }
    }

    if refusal.is_some() {
        rollback(router, &admitted, &mut views).await;
        // Entities after the refusing one were not asked; show them as
        // they stand.
        for key in &plan.entities[views.len()..] {
            views.push(router.view(key).await?);
        }
        return Ok(CheckOutcome {
            refusal,
            reservation: None,
            views,
        });
    }
    Ok(CheckOutcome {
        refusal: None,
        reservation,
        views,
    })
}

/// Takes back every admission, replacing their views with the state after.
async fn rollback(router: &EntityRouter, admitted: &[(&EntityKey, Admitted)], views: &mut [EntityView]) {
    for (i, (key, adm)) in admitted.iter().enumerate() {
        match router.undo(key, *adm).await {
            Ok(view) => views[i] = view,
            // The actor is gone: its replacement loads counts from the
            // store plus pending deltas, which include this admission, so
            // it over-counts by this one check (conservative, logged).
            Err(err) => {
                metrics::counter!("tollgate_undo_failures_total").increment(1);
                tracing::warn!(entity = %key, error = %err, "could not take back an admission");
            }
        }
    }
}
