//! What a load run recorded, and the figures and per-entity tallies the
//! invariant checks read from it.

use crate::api::Reply;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Check,
    Usage,
}

/// What one HTTP attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer; `reason` is the body's `reason` (or `error`).
    Status { code: u16, reason: Option<String> },
    /// The connection could not be opened: the node never saw the request.
    Connect(String),
    /// Anything else (timeout, reset mid-request): the node may have acted.
    Transport(String),
}

impl Outcome {
    pub fn from_answer(answer: Result<Reply, reqwest::Error>) -> Outcome {
        match answer {
            Ok(reply) => {
                let reason = reply
                    .reason()
                    .or_else(|| reply.json.get("error").and_then(|e| e.as_str()))
                    .map(str::to_string);
                Outcome::Status {
                    code: reply.status,
                    reason,
                }
            }
            Err(e) if e.is_connect() => Outcome::Connect(e.to_string()),
            Err(e) => Outcome::Transport(e.to_string()),
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self {
            Outcome::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// 200 or 429: the node served the request.
    pub fn served(&self) -> bool {
        matches!(self.code(), Some(200 | 429))
    }
}

/// One HTTP attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub op: u64,
    pub kind: OpKind,
    /// The node it was sent to.
    pub node: String,
    pub entities: Vec<String>,
    pub started: Instant,
    pub latency: Duration,
    pub outcome: Outcome,
    /// Not the operation's first attempt.
    pub retry: bool,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// A check answered 200.
    Admitted,
    /// A check answered 429, with its reason.
    Refused(String),
    /// A usage event answered 200 (durable).
    Acked,
    /// A check whose answer was lost in transport: it may have counted.
    Ambiguous(String),
    /// A status that is neither success, 429 nor 503.
    Failed(String),
    /// Still 503 / unreachable when its retry time ran out.
    GaveUp(String),
}

/// One operation, over all its attempts.
#[derive(Debug, Clone)]
pub struct OpResult {
    pub op: u64,
    pub kind: OpKind,
    pub entities: Vec<String>,
    pub started: Instant,
    /// When the attempt that decided it was sent.
    pub last_attempt_started: Instant,
    pub finished: Instant,
    /// The node of the last attempt.
    pub node: String,
    pub tries: u32,
    pub fin: Final,
}

/// A usage event a node acknowledged.
#[derive(Debug, Clone)]
pub struct AckedUsage {
    pub event_id: Uuid,
    /// The charged entity (`user:<id>`).
    pub entity: String,
    pub cost: Decimal,
    pub node: String,
}

/// Everything one run (or several, merged) sent and got.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub attempts: Vec<Attempt>,
    pub ops: Vec<OpResult>,
    pub acked: Vec<AckedUsage>,
    /// Every usage event id sent, acknowledged or not.
    pub sent_events: Vec<Uuid>,
    pub wall: Duration,
}

/// Totals over a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// HTTP attempts.
    pub requests: u64,
    pub ops: u64,
    pub admitted: u64,
    pub refused: u64,
    pub rate_limited: u64,
    pub budget_exceeded: u64,
    pub acked_usage: u64,
    /// 503 answers (retried).
    pub s503: u64,
    /// 5xx answers other than 503.
    pub other_5xx: u64,
    /// 4xx answers other than 429.
    pub other_4xx: u64,
    pub connect_errors: u64,
    pub transport_errors: u64,
    pub retries: u64,
    /// Checks whose answer was lost (not retried).
    pub ambiguous: u64,
    pub gave_up: u64,
}

impl LoadReport {
    /// Appends another report's records.
    pub fn merge(&mut self, other: LoadReport) {
        self.attempts.extend(other.attempts);
        self.ops.extend(other.ops);
        self.acked.extend(other.acked);
        self.sent_events.extend(other.sent_events);
        self.wall = self.wall.max(other.wall);
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for a in &self.attempts {
            c.requests += 1;
            c.retries += u64::from(a.retry);
            match &a.outcome {
                Outcome::Status { code: 503, .. } => c.s503 += 1,
                Outcome::Status { code, .. } if *code >= 500 => c.other_5xx += 1,
                Outcome::Status { code, .. } if *code >= 400 && *code != 429 => c.other_4xx += 1,
                Outcome::Status { .. } => {}
                Outcome::Connect(_) => c.connect_errors += 1,
                Outcome::Transport(_) => c.transport_errors += 1,
            }
        }
        for o in &self.ops {
            c.ops += 1;
            match &o.fin {
                Final::Admitted => c.admitted += 1,
                Final::Refused(reason) => {
                    c.refused += 1;
                    c.rate_limited += u64::from(reason == "rate_limited");
                    c.budget_exceeded += u64::from(reason == "budget_exceeded");
                }
                Final::Acked => c.acked_usage += 1,
                Final::Ambiguous(_) => c.ambiguous += 1,
                Final::Failed(_) => {}
                Final::GaveUp(_) => c.gave_up += 1,
            }
        }
        c
    }

    /// Checks whose operation ended as `pred` says, per charged entity.
    fn tally(&self, pred: impl Fn(&OpResult) -> bool) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for o in self.ops.iter().filter(|o| o.kind == OpKind::Check && pred(o)) {
            for e in &o.entities {
                *out.entry(e.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Admitted checks per entity.
    pub fn admitted_by_entity(&self) -> BTreeMap<String, u64> {
        self.tally(|o| o.fin == Final::Admitted)
    }

    /// Checks refused with `reason` per entity.
    pub fn refused_by_entity(&self, reason: &str) -> BTreeMap<String, u64> {
        self.tally(|o| matches!(&o.fin, Final::Refused(r) if r == reason))
    }

    /// Ambiguous checks per entity.
    pub fn ambiguous_by_entity(&self) -> BTreeMap<String, u64> {
        self.tally(|o| matches!(o.fin, Final::Ambiguous(_)))
    }

    /// Admitted checks of `entity` whose deciding attempt was sent in `[from, to]`.
    pub fn admitted_between(&self, entity: &str, from: Instant, to: Instant) -> u64 {
        self.ops
            .iter()
            .filter(|o| o.fin == Final::Admitted && o.entities.iter().any(|e| e == entity))
            .filter(|o| o.last_attempt_started >= from && o.last_attempt_started <= to)
            .count() as u64
    }

    /// When the first attempt for `entity` sent at or after `t` was served
    /// (200 or 429).
    pub fn first_served_after(&self, entity: &str, t: Instant) -> Option<Instant> {
        self.attempts
            .iter()
            .filter(|a| a.started >= t && a.outcome.served() && a.entities.iter().any(|e| e == entity))
            .map(|a| a.started + a.latency)
            .min()
    }

    /// Attempts to `nodes` sent in `[from, to]` that were served.
    pub fn served_by(&self, nodes: &[String], from: Instant, to: Instant) -> u64 {
        self.attempts
            .iter()
            .filter(|a| nodes.contains(&a.node) && a.started >= from && a.started <= to && a.outcome.served())
            .count() as u64
    }

    /// Distinct entities checked.
    pub fn entities(&self) -> BTreeSet<String> {
        self.ops
            .iter()
            .filter(|o| o.kind == OpKind::Check)
            .flat_map(|o| o.entities.iter().cloned())
            .collect()
    }

    /// A few examples of operations that failed or gave up, for messages.
    pub fn failures(&self, max: usize) -> Vec<String> {
        self.ops
            .iter()
            .filter(|o| matches!(o.fin, Final::Failed(_) | Final::GaveUp(_)))
            .take(max)
            .map(|o| {
                format!(
                    "{:?} {:?} via {} after {} tries: {:?}",
                    o.kind, o.entities, o.node, o.tries, o.fin
                )
            })
            .collect()
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests for {} ops: {} admitted, {} refused ({} rate_limited, {} budget_exceeded), \
             {} usage acked; 503: {}, other 5xx: {}, other 4xx: {}, connect errors: {}, \
             transport errors: {}, retries: {}, ambiguous checks: {}, gave up: {}",
            self.requests,
            self.ops,
            self.admitted,
            self.refused,
            self.rate_limited,
            self.budget_exceeded,
            self.acked_usage,
            self.s503,
            self.other_5xx,
            self.other_4xx,
            self.connect_errors,
            self.transport_errors,
            self.retries,
            self.ambiguous,
            self.gave_up
        )
    }
}
