//! The load driver: concurrent tasks sending checks (and, after some
//! admitted ones, usage events) to the cluster's targets round-robin, at a
//! steady rate, for a duration, a count, or until stopped.
//!
//! Users are picked with a Zipf distribution, so a few hot users hit their
//! daily limit early while the long tail is still counting when faults hit.

mod report;
mod sender;

pub use report::{AckedUsage, Attempt, Counts, Final, LoadReport, OpKind, OpResult, Outcome};
pub use sender::{MODEL, Recorder, Sender, UsageEvent};

use crate::rng::{Rng, Zipf};
use crate::targets::Targets;
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What load to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Total operations started per second over all tasks (0: as fast as
    /// the tasks go).
    pub rate_per_sec: u32,
    /// Stop starting operations after this long (`None`: until stopped).
    pub duration: Option<Duration>,
    /// Stop after this many checks (`None`: no count limit).
    pub max_checks: Option<u64>,
    /// User ids to check (`user:<id>` entities).
    pub users: Vec<String>,
    pub zipf_exponent: f64,
    /// Percentage of admitted checks followed by a usage event.
    pub usage_percent: u64,
    /// Usage costs are uniform in 0.000001 ..= this many millionths of a dollar.
    pub max_cost_micros: u64,
    /// How long one operation keeps retrying 503s and unreachable nodes.
    pub retry_for: Duration,
    pub seed: u64,
}

impl LoadSpec {
    /// Steady load over `users`: 4 tasks, 100 ops/s, half the admitted
    /// checks followed by a usage event of up to 1 cent.
    pub fn steady(users: Vec<String>) -> Self {
        LoadSpec {
            concurrency: 4,
            rate_per_sec: 100,
            duration: None,
            max_checks: None,
            users,
            zipf_exponent: 1.0,
            usage_percent: 50,
            max_cost_micros: 10_000,
            retry_for: Duration::from_secs(15),
            seed: Rng::random_seed(),
        }
    }
}

/// Load running in the background.
#[derive(Debug)]
pub struct LoadDriver {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    recorder: Recorder,
    started: Instant,
    seed: u64,
}

impl LoadDriver {
    /// Starts `spec.concurrency` tasks sending to `targets`.
    pub fn start(spec: LoadSpec, targets: Targets) -> LoadDriver {
        let recorder = Recorder::default();
        let sender = Sender::new(targets, recorder.clone(), spec.retry_for);
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let zipf = Arc::new(Zipf::new(spec.users.len(), spec.zipf_exponent));
        let spec = Arc::new(spec);
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for task in 0..spec.concurrency.max(1) {
            let ctx = TaskCtx {
                spec: spec.clone(),
                sender: sender.clone(),
                stop: stop.clone(),
                checks: checks.clone(),
                zipf: zipf.clone(),
                rng: Rng::new(spec.seed ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                started,
            };
            tasks.spawn(ctx.run());
        }
        LoadDriver {
            stop,
            tasks,
            recorder,
            started,
            seed: spec.seed,
        }
    }

    /// The seed, to replay the same user and cost sequence.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What has been recorded so far.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Waits until the duration or count is reached, then returns the report.
    pub async fn finish(mut self) -> LoadReport {
        while self.tasks.join_next().await.is_some() {}
        self.report()
    }

    /// Stops starting operations (those in flight finish, with their
    /// retries) and returns the report.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    fn report(&self) -> LoadReport {
        let mut r = self.recorder.report();
        r.wall = self.started.elapsed();
        r
    }
}

struct TaskCtx {
    spec: Arc<LoadSpec>,
    sender: Sender,
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    zipf: Arc<Zipf>,
    rng: Rng,
    started: Instant,
}

impl TaskCtx {
    async fn run(mut self) {
        let spec = self.spec.clone();
        let mut ticker = (spec.rate_per_sec > 0).then(|| {
            let period = Duration::from_secs_f64(spec.concurrency.max(1) as f64 / f64::from(spec.rate_per_sec));
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            if self.stop.load(Ordering::Relaxed) || spec.duration.is_some_and(|d| self.started.elapsed() >= d) {
                return;
            }
            if spec
                .max_checks
                .is_some_and(|max| self.checks.fetch_add(1, Ordering::Relaxed) >= max)
            {
                return;
            }
            let Some(user) = spec.users.get(self.zipf.sample(&mut self.rng)) else {
                return;
            };
            let entity = format!("user:{user}");
            let fin = self.sender.check(&[&entity], &json!({ "user_id": user })).await;
            if fin == Final::Admitted && self.rng.below(100) < spec.usage_percent {
                let micros = 1 + self.rng.below(spec.max_cost_micros.max(1));
                let cost = Decimal::new(i64::try_from(micros).unwrap_or(1), 6);
                self.sender.usage(&UsageEvent::new(user, cost)).await;
            }
        }
    }
}
