//! The usage mode's figures: one round's measurements, the ledger's batch
//! sizes read from `/metrics`, and the per-backend table.

use crate::oha::{OhaResult, fmt_ms};
use crate::usage::USAGE_CONNECTIONS;
use std::collections::BTreeMap;

/// The ledger's batch-size summary as the node exports it.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Events committed (`tollgate_ledger_batch_size_sum`).
    pub events: f64,
    /// Commits (`tollgate_ledger_batch_size_count`).
    pub commits: f64,
    /// Quantile → batch size, over the exporter's recent window.
    pub quantiles: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| l.starts_with("tollgate_ledger_batch_size")) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if name == "tollgate_ledger_batch_size_sum" {
                m.events = value;
            } else if name == "tollgate_ledger_batch_size_count" {
                m.commits = value;
            } else if let Some(q) = name
                .split_once("quantile=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(q, _)| q.to_string())
            {
                m.quantiles.insert(q, value);
            }
        }
        m
    }

    /// Commits and events between `earlier` and `self`; the quantiles are
    /// `self`'s (the exporter keeps no per-interval histogram).
    pub fn since(&self, earlier: &Metrics) -> Metrics {
        Metrics {
            events: self.events - earlier.events,
            commits: self.commits - earlier.commits,
            quantiles: self.quantiles.clone(),
        }
    }

    pub fn mean(&self) -> f64 {
        if self.commits > 0.0 {
            self.events / self.commits
        } else {
            0.0
        }
    }

    fn quantile(&self, q: &str) -> String {
        self.quantiles
            .get(q)
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".into())
    }

    pub fn distribution(&self) -> String {
        format!(
            "{:.0} commits, mean {:.1}; p50 {} p90 {} p99 {} max {}",
            self.commits,
            self.mean(),
            self.quantile("0.5"),
            self.quantile("0.9"),
            self.quantile("0.99"),
            self.quantile("1")
        )
    }
}

/// One throughput round.
#[derive(Debug, Clone)]
pub struct UsageRound {
    pub oha: OhaResult,
    /// New ledger rows (events acknowledged `duplicate: false`).
    pub unique: u64,
    /// CPU seconds.
    pub node_cpu: f64,
    /// Postgres backends of the bench database (None for SQLite).
    pub db_cpu: Option<f64>,
    /// Every `postgres` process (includes other clients' work).
    pub all_postgres_cpu: Option<f64>,
    pub batches: Metrics,
}

impl UsageRound {
    pub fn unique_per_sec(&self) -> f64 {
        self.unique as f64 / self.oha.secs
    }

    /// Node CPU per request answered.
    pub fn node_us(&self) -> f64 {
        self.node_cpu * 1e6 / self.oha.responses().max(1) as f64
    }

    /// Database CPU per new ledger row.
    pub fn db_us(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|c| c * 1e6 / self.unique.max(1) as f64)
    }

    pub fn print_line(&self) {
        println!(
            "  round: {:.0} 2xx/s, {:.0} unique/s ({} of {} new), p50 {} ms p99 {} ms, non-2xx {}, errors {}; \
             node {:.1} µs/req, db backends {} µs/event, all postgres {} µs/event; batches: {}",
            self.oha.ok_per_sec(),
            self.unique_per_sec(),
            self.unique,
            self.oha.responses(),
            fmt_ms(self.oha.p50),
            fmt_ms(self.oha.p99),
            self.oha.non_2xx(),
            self.oha.error_count(),
            self.node_us(),
            fmt_us(self.db_us(self.db_cpu)),
            fmt_us(self.db_us(self.all_postgres_cpu)),
            self.batches.distribution()
        );
    }
}

fn fmt_us(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The backend's table (markdown, for benches/README.md).
pub fn print_backend(
    label: &str,
    check_us: f64,
    rounds: &[UsageRound],
    median_round: &UsageRound,
    rate: u32,
    fixed: &OhaResult,
    checked: &anyhow::Result<usize>,
) {
    let unique: Vec<f64> = rounds.iter().map(UsageRound::unique_per_sec).collect();
    let (lo, hi) = unique
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let node_us = median(rounds.iter().map(UsageRound::node_us).collect());
    let db = median(rounds.iter().filter_map(|r| r.db_us(r.db_cpu)).collect::<Vec<_>>());
    let all_pg = median(
        rounds
            .iter()
            .filter_map(|r| r.db_us(r.all_postgres_cpu))
            .collect::<Vec<_>>(),
    );
    println!(
        "\n### Usage ledger, {label} (`oha -c {USAGE_CONNECTIONS}`, {} rounds, median round)\n",
        rounds.len()
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| unique acknowledged events/s (median; min–max) | {:.0} ({lo:.0}–{hi:.0}) |",
        median_round.unique_per_sec()
    );
    println!("| 2xx answers/s | {:.0} |", median_round.oha.ok_per_sec());
    println!(
        "| non-2xx / client errors | {} / {} |",
        median_round.oha.non_2xx(),
        median_round.oha.error_count()
    );
    println!(
        "| p50 / p99 at full load | {} / {} ms |",
        fmt_ms(median_round.oha.p50),
        fmt_ms(median_round.oha.p99)
    );
    println!(
        "| p50 / p99 at {rate}/s (80 %, `-q`, latency-corrected) | {} / {} ms ({} non-2xx) |",
        fmt_ms(fixed.p50),
        fmt_ms(fixed.p99),
        fixed.non_2xx() + fixed.error_count()
    );
    println!("| events per commit | {} |", median_round.batches.distribution());
    println!("| node CPU per usage request (median) | {node_us:.1} µs |");
    println!(
        "| node CPU per warm check | {check_us:.1} µs (usage/check {:.2}×) |",
        node_us / check_us
    );
    if db.is_finite() {
        println!("| Postgres CPU per event, bench database's backends | {db:.1} µs |");
        println!("| Postgres CPU per event, every postgres process | {all_pg:.1} µs |");
    }
    match checked {
        Ok(n) => println!("| spend = SUM(ledger), no event id twice | yes ({n} spend rows) |"),
        Err(err) => println!("| spend = SUM(ledger), no event id twice | **NO**: {err:#} |"),
    }
}
