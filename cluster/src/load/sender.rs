//! Sending one operation (a check or a usage event) to the targets with the
//! harness's retry rules, and recording every attempt.
//!
//! Retry rules, the same for the load driver and scenario code:
//! - a 503 or a connection that could not be opened is retried on the next
//!   target (the node did not take the request, or said it is safe to retry);
//! - a usage event that failed in any other transport way (timeout, reset)
//!   is retried too, with the same `event_id` (idempotent);
//! - a check that failed that way is **ambiguous** (it may have been
//!   counted) and is not retried;
//! - any other status is final; an operation that cannot succeed within
//!   `retry_for` gives up.

use super::report::{AckedUsage, Attempt, Final, LoadReport, OpKind, OpResult, Outcome};
use crate::targets::{Target, Targets};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The model name the harness's usage events carry (`cost_usd` is given,
/// so no price is needed).
pub const MODEL: &str = "cluster-harness";

/// Everything sent and answered, shared by the tasks of one run.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<LoadReport>>);

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut LoadReport) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A copy of what has been recorded so far.
    pub fn report(&self) -> LoadReport {
        self.with(|r| r.clone())
    }

    /// Operations finished so far.
    pub fn ops_done(&self) -> usize {
        self.with(|r| r.ops.len())
    }
}

/// A usage event to record.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub event_id: Uuid,
    pub user_id: String,
    pub cost: Decimal,
}

impl UsageEvent {
    pub fn new(user_id: &str, cost: Decimal) -> Self {
        UsageEvent {
            event_id: Uuid::new_v4(),
            user_id: user_id.to_string(),
            cost,
        }
    }

    fn body(&self) -> Value {
        json!({
            "event_id": self.event_id, "user_id": self.user_id, "model": MODEL,
            "input_tokens": 1, "output_tokens": 1, "cost_usd": self.cost.to_string(),
        })
    }
}

/// Sends operations round-robin over a [`Targets`] pool, recording them.
#[derive(Debug, Clone)]
pub struct Sender {
    targets: Targets,
    recorder: Recorder,
    retry_for: Duration,
    next_target: Arc<AtomicU64>,
    next_op: Arc<AtomicU64>,
}

impl Sender {
    pub fn new(targets: Targets, recorder: Recorder, retry_for: Duration) -> Self {
        Sender {
            targets,
            recorder,
            retry_for,
            next_target: Arc::new(AtomicU64::new(0)),
            next_op: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// `POST /v1/check` with `body`, counted against `entity`s (the keys
    /// the check charges, e.g. `user:u1`, or `ip:…` and `fp:…`).
    pub async fn check(&self, entities: &[&str], body: &Value) -> Final {
        self.run(OpKind::Check, entities, body, None, None).await
    }

    /// The same, always on `target` (retries stay there too).
    pub async fn check_on(&self, target: &Target, entities: &[&str], body: &Value) -> Final {
        self.run(OpKind::Check, entities, body, None, Some(target)).await
    }

    /// `POST /v1/usage` for `event`.
    pub async fn usage(&self, event: &UsageEvent) -> Final {
        let entity = format!("user:{}", event.user_id);
        self.recorder.with(|r| r.sent_events.push(event.event_id));
        self.run(OpKind::Usage, &[&entity], &event.body(), Some(event), None)
            .await
    }

    async fn run(
        &self,
        kind: OpKind,
        entities: &[&str],
        body: &Value,
        event: Option<&UsageEvent>,
        pinned: Option<&Target>,
    ) -> Final {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + self.retry_for;
        let path = match kind {
            OpKind::Check => "/v1/check",
            OpKind::Usage => "/v1/usage",
        };
        let entities: Vec<String> = entities.iter().map(|e| e.to_string()).collect();
        let mut tries = 0u32;
        let mut last_node = String::new();
        let mut last_start = started;
        let fin = loop {
            let target = match pinned {
                Some(t) => Some(t.clone()),
                None => self.targets.pick(self.next_target.fetch_add(1, Ordering::Relaxed)),
            };
            let Some(target) = target else {
                if Instant::now() > deadline {
                    break Final::GaveUp("no target up".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            tries += 1;
            last_start = Instant::now();
            last_node = target.node_id.clone();
            let answer = target.api.post(path, body).await;
            let outcome = Outcome::from_answer(answer);
            self.recorder.with(|r| {
                r.attempts.push(Attempt {
                    op,
                    kind,
                    node: target.node_id.clone(),
                    entities: entities.clone(),
                    started: last_start,
                    latency: last_start.elapsed(),
                    outcome: outcome.clone(),
                    retry: tries > 1,
                })
            });
            let retry_why = match (&outcome, kind) {
                (Outcome::Status { code: 200, .. }, OpKind::Check) => break Final::Admitted,
                (Outcome::Status { code: 200, .. }, OpKind::Usage) => {
                    if let Some(ev) = event {
                        self.recorder.with(|r| {
                            r.acked.push(AckedUsage {
                                event_id: ev.event_id,
                                entity: entities.first().cloned().unwrap_or_default(),
                                cost: ev.cost,
                                node: target.node_id.clone(),
                            })
                        });
                    }
                    break Final::Acked;
                }
                (Outcome::Status { code: 429, reason }, OpKind::Check) => {
                    break Final::Refused(reason.clone().unwrap_or_default());
                }
                (Outcome::Status { code: 503, .. }, _) => "503".to_string(),
                (Outcome::Connect(e), _) => format!("connect: {e}"),
                (Outcome::Transport(e), OpKind::Usage) => format!("transport: {e}"),
                (Outcome::Transport(e), OpKind::Check) => break Final::Ambiguous(e.clone()),
                (Outcome::Status { code, reason }, _) => {
                    break Final::Failed(format!("{code} {}", reason.clone().unwrap_or_default()));
                }
            };
            if Instant::now() > deadline {
                break Final::GaveUp(retry_why);
            }
            let backoff = Duration::from_millis(20 * u64::from(tries.min(10)));
            tokio::time::sleep(backoff).await;
        };
        self.recorder.with(|r| {
            r.ops.push(OpResult {
                op,
                kind,
                entities,
                started,
                last_attempt_started: last_start,
                finished: Instant::now(),
                node: last_node,
                tries,
                fin: fin.clone(),
            })
        });
        fin
    }
}
