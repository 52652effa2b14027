//! The invariant checks run after a scenario. They return reports and never
//! panic: a scenario turns them into checks of its
//! [`crate::report::ScenarioReport`].
//!
//! - (a) [`check_ledger`]: every acknowledged usage event is in
//!   `model_usage` (event_id is UNIQUE: present = exactly once) with the cost
//!   it was sent with, no row exists that the harness did not send, and for
//!   every (entity, period) `entity_spend.spent_usd` equals the sum of the
//!   ledger rows charging that entity.
//! - (b) [`check_admissions`]: admitted checks per entity ≤ limit + the
//!   scenario's bound; where asked, exactly the limit for entities that were
//!   refused as rate limited.
//! - (c) no 5xx other than 503: read from [`crate::load::Counts`].
//! - (d) [`check_counters`]: the flushed day counters equal the admitted
//!   checks (within a tolerance where a crash may lose a flush interval).

use crate::load::LoadReport;
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Spend that differs from its ledger sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendMismatch {
    pub entity: String,
    pub period: String,
    pub ledger: Decimal,
    pub spend: Decimal,
}

/// Result of (a).
#[derive(Debug, Clone, Default)]
pub struct LedgerReport {
    pub acknowledged: usize,
    /// Acknowledged but not in the ledger.
    pub missing: Vec<Uuid>,
    /// In the ledger with another cost or entity: (event, sent, found).
    pub altered: Vec<(Uuid, String, String)>,
    /// event_ids present more than once (impossible while UNIQUE holds).
    pub duplicates: u64,
    /// Ledger rows whose event_id the harness never sent.
    pub unknown: u64,
    pub ledger_rows: u64,
    /// (entity, period) pairs compared.
    pub spend_rows: usize,
    pub spend_mismatches: Vec<SpendMismatch>,
}

impl LedgerReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.altered.is_empty()
            && self.duplicates == 0
            && self.unknown == 0
            && self.spend_mismatches.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} acknowledged events: {} missing, {} altered, {} duplicated, {} unknown rows of {}; \
             {} spend rows: {} differ from the ledger",
            self.acknowledged,
            self.missing.len(),
            self.altered.len(),
            self.duplicates,
            self.unknown,
            self.ledger_rows,
            self.spend_rows,
            self.spend_mismatches.len()
        );
        for m in self.spend_mismatches.iter().take(5) {
            s += &format!("; {} {}: ledger {} spend {}", m.entity, m.period, m.ledger, m.spend);
        }
        for id in self.missing.iter().take(5) {
            s += &format!("; missing {id}");
        }
        for (id, sent, found) in self.altered.iter().take(5) {
            s += &format!("; {id} sent {sent} found {found}");
        }
        s
    }
}

const SPEND_VS_LEDGER: &str = "
WITH ledger AS (
    SELECT 'user:' || user_id AS entity, period, SUM(cost_usd) AS total
      FROM model_usage WHERE user_id IS NOT NULL GROUP BY 1, 2
    UNION ALL
    SELECT 'org:' || organization_id, period, SUM(cost_usd)
      FROM model_usage WHERE organization_id IS NOT NULL GROUP BY 1, 2
    UNION ALL
    SELECT 'ip:' || guest_ip, period, SUM(cost_usd)
      FROM model_usage WHERE guest_ip IS NOT NULL GROUP BY 1, 2
    UNION ALL
    SELECT 'fp:' || guest_fingerprint, period, SUM(cost_usd)
      FROM model_usage WHERE guest_fingerprint IS NOT NULL GROUP BY 1, 2
)
SELECT COALESCE(l.entity, s.entity), COALESCE(l.period, s.period),
       COALESCE(l.total, 0::numeric), COALESCE(s.spent_usd, 0::numeric)
  FROM ledger l FULL OUTER JOIN entity_spend s ON s.entity = l.entity AND s.period = l.period";

/// (a) over the usage events `load` sent and got acknowledged.
pub async fn check_ledger(pool: &PgPool, load: &LoadReport) -> Result<LedgerReport, sqlx::Error> {
    let acked_ids: Vec<Uuid> = load.acked.iter().map(|a| a.event_id).collect();
    let rows: Vec<(Uuid, Decimal, Option<String>)> =
        sqlx::query_as("SELECT event_id, cost_usd, user_id FROM model_usage WHERE event_id = ANY($1)")
            .bind(&acked_ids)
            .fetch_all(pool)
            .await?;
    let found: HashMap<Uuid, (Decimal, Option<String>)> = rows.into_iter().map(|(id, c, u)| (id, (c, u))).collect();
    let mut report = LedgerReport {
        acknowledged: acked_ids.len(),
        ..LedgerReport::default()
    };
    for a in &load.acked {
        match found.get(&a.event_id) {
            None => report.missing.push(a.event_id),
            Some((cost, user)) => {
                let entity = user.as_ref().map(|u| format!("user:{u}")).unwrap_or_default();
                if *cost != a.cost || entity != a.entity {
                    report.altered.push((
                        a.event_id,
                        format!("{} {}", a.entity, a.cost),
                        format!("{entity} {cost}"),
                    ));
                }
            }
        }
    }
    let sent: Vec<Uuid> = load.sent_events.clone();
    let (rows, unknown): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT (event_id = ANY($1))) FROM model_usage")
            .bind(&sent)
            .fetch_one(pool)
            .await?;
    report.ledger_rows = u64::try_from(rows).unwrap_or(0);
    report.unknown = u64::try_from(unknown).unwrap_or(0);
    let (dups,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT event_id FROM model_usage GROUP BY event_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(pool)
    .await?;
    report.duplicates = u64::try_from(dups).unwrap_or(0);
    let spend: Vec<(String, String, Decimal, Decimal)> = sqlx::query_as(SPEND_VS_LEDGER).fetch_all(pool).await?;
    report.spend_rows = spend.len();
    report.spend_mismatches = spend
        .into_iter()
        .filter(|(_, _, ledger, spent)| ledger != spent)
        .map(|(entity, period, ledger, spend)| SpendMismatch {
            entity,
            period,
            ledger,
            spend,
        })
        .collect();
    Ok(report)
}

/// What an entity may be admitted in the scenario's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub limit: u64,
    /// Admissions allowed beyond `limit` by the fault (0: none).
    pub over: u64,
    /// An entity refused as rate limited must have been admitted exactly
    /// `limit` times (no count lost, none doubled).
    pub exact_when_refused: bool,
}

/// Result of (b).
#[derive(Debug, Clone, Default)]
pub struct AdmissionReport {
    /// Entities with a bound.
    pub entities: usize,
    /// Entities that were refused as rate limited.
    pub hit_limit: usize,
    /// Largest `admitted - limit` (negative when none reached its limit).
    pub max_over: Option<i64>,
    pub violations: Vec<String>,
}

impl AdmissionReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} entities, {} hit their limit, max over limit {}",
            self.entities,
            self.hit_limit,
            self.max_over.map_or("-".into(), |m| m.to_string())
        );
        for v in self.violations.iter().take(8) {
            s += &format!("; {v}");
        }
        s
    }
}

/// (b): `bound(entity)` says what each entity may be admitted (None: not
/// checked).
pub fn check_admissions(load: &LoadReport, bound: impl Fn(&str) -> Option<Bound>) -> AdmissionReport {
    let admitted = load.admitted_by_entity();
    let refused = load.refused_by_entity("rate_limited");
    let ambiguous = load.ambiguous_by_entity();
    let mut report = AdmissionReport::default();
    for entity in admitted
        .keys()
        .chain(refused.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let Some(b) = bound(entity) else { continue };
        let got = admitted.get(entity).copied().unwrap_or(0);
        let was_refused = refused.get(entity).copied().unwrap_or(0) > 0;
        let unsure = ambiguous.get(entity).copied().unwrap_or(0);
        report.entities += 1;
        report.hit_limit += usize::from(was_refused);
        let over = i64::try_from(got).unwrap_or(i64::MAX) - i64::try_from(b.limit).unwrap_or(i64::MAX);
        report.max_over = Some(report.max_over.map_or(over, |m| m.max(over)));
        if got > b.limit + b.over {
            report
                .violations
                .push(format!("{entity}: {got} admitted > limit {} + {}", b.limit, b.over));
        } else if b.exact_when_refused && was_refused && got != b.limit && unsure == 0 {
            report.violations.push(format!(
                "{entity}: refused as rate limited after {got} admitted, limit {}",
                b.limit
            ));
        }
    }
    report
}

/// Result of (d).
#[derive(Debug, Clone, Default)]
pub struct CounterReport {
    pub entities: usize,
    /// (entity, admitted seen by the harness, counted in the store).
    pub differences: Vec<(String, u64, u64)>,
}

impl CounterReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!("{} entities, {} differ", self.entities, self.differences.len());
        for (e, seen, stored) in self.differences.iter().take(8) {
            s += &format!("; {e}: admitted {seen}, stored {stored}");
        }
        s
    }
}

/// (d): waits up to `settle` for the flushed day counters of the entities
/// in `admitted` to equal their admitted counts, allowing `stored` to fall
/// short by `tolerance(entity)` (counts a crash lost) or exceed by the
/// entity's ambiguous checks (counted, answer lost).
pub async fn check_counters(
    pool: &PgPool,
    load: &LoadReport,
    tolerance: impl Fn(&str) -> u64,
    settle: Duration,
) -> Result<CounterReport, sqlx::Error> {
    let admitted = load.admitted_by_entity();
    let ambiguous = load.ambiguous_by_entity();
    let entities: Vec<String> = admitted.keys().cloned().collect();
    let deadline = Instant::now() + settle;
    loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT entity, SUM(count)::bigint FROM entity_counters \
             WHERE window_kind = 'day' AND entity = ANY($1) GROUP BY entity",
        )
        .bind(&entities)
        .fetch_all(pool)
        .await?;
        let stored: BTreeMap<String, u64> = rows
            .into_iter()
            .map(|(e, n)| (e, u64::try_from(n).unwrap_or(0)))
            .collect();
        let mut report = CounterReport {
            entities: entities.len(),
            differences: Vec::new(),
        };
        for (entity, seen) in &admitted {
            let got = stored.get(entity).copied().unwrap_or(0);
            let low = seen.saturating_sub(tolerance(entity));
            let high = seen + ambiguous.get(entity).copied().unwrap_or(0);
            if got < low || got > high {
                report.differences.push((entity.clone(), *seen, got));
            }
        }
        if report.ok() || Instant::now() > deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Final, OpKind, OpResult};

    fn op(entity: &str, fin: Final) -> OpResult {
        let now = Instant::now();
        OpResult {
            op: 0,
            kind: OpKind::Check,
            entities: vec![entity.to_string()],
            started: now,
            last_attempt_started: now,
            finished: now,
            node: "node-1".into(),
            tries: 1,
            fin,
        }
    }

    fn load(ops: Vec<OpResult>) -> LoadReport {
        LoadReport {
            ops,
            ..LoadReport::default()
        }
    }

    #[test]
    fn admissions_within_bound_and_exact() {
        let limited = Final::Refused("rate_limited".into());
        let mut ops: Vec<OpResult> = (0..3).map(|_| op("user:a", Final::Admitted)).collect();
        ops.push(op("user:a", limited.clone()));
        ops.extend((0..2).map(|_| op("user:b", Final::Admitted)));
        ops.push(op("user:b", limited.clone()));
        ops.extend((0..5).map(|_| op("user:c", Final::Admitted)));
        let exact = |_: &str| {
            Some(Bound {
                limit: 3,
                over: 0,
                exact_when_refused: true,
            })
        };
        let r = check_admissions(&load(ops.clone()), exact);
        assert_eq!(r.entities, 3);
        assert_eq!(r.hit_limit, 2);
        assert_eq!(r.max_over, Some(2));
        assert_eq!(r.violations.len(), 2, "{:?}", r.violations);
        assert!(r.violations[0].starts_with("user:b: refused"));
        assert!(r.violations[1].starts_with("user:c: 5 admitted"));

        let loose = |e: &str| {
            (e != "user:b").then_some(Bound {
                limit: 3,
                over: 2,
                exact_when_refused: false,
            })
        };
        let r = check_admissions(&load(ops), loose);
        assert!(r.ok(), "{}", r.summary());
        assert_eq!(r.entities, 2);
    }
}
