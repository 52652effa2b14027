//! What the cluster mode prints: the per-round tables, the medians, the
//! verdict on the forwarding target and the Markdown summary.

use crate::cluster::{ClusterSettings, LATENCY_CONNECTIONS};
use crate::oha::{OhaResult, fmt_ms, median_by, print_rounds};
use crate::procs::{cpu_model, date_utc, nproc, print_node_warnings, tail};
use crate::{CONNECTIONS, Settings, USERS};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Acceptance 7: forwarding adds under this much at the median.
const FORWARD_TARGET_US: f64 = 150.0;

pub struct ThroughputRound {
    /// The three oha runs against the single node, as one.
    pub one: OhaResult,
    /// The three oha runs against the three cluster nodes, as one.
    pub three: OhaResult,
    /// The same, one per cluster node.
    pub parts: Vec<OhaResult>,
    /// Checks the cluster forwarded to their owner during `three`.
    pub forwarded: Option<u64>,
}

impl ThroughputRound {
    fn ratio(&self) -> f64 {
        self.three.ok_per_sec() / self.one.ok_per_sec()
    }
}

pub struct LatencyRound {
    pub local: OhaResult,
    /// Checks node-1 forwarded during `local` (should be 0).
    pub local_forwarded_ops: Option<u64>,
    pub forwarded: OhaResult,
    /// Checks node-1 forwarded during `forwarded` (should be all of them).
    pub forwarded_ops: Option<u64>,
    /// The single node at the same rate, for reference.
    pub single: OhaResult,
}

impl LatencyRound {
    /// p50(forwarded) − p50(local), µs.
    fn p50_delta_us(&self) -> f64 {
        delta_us(self.forwarded.p50, self.local.p50).unwrap_or(f64::MAX)
    }
}

fn delta_us(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some((a? - b?) * 1e6)
}

fn fmt_delta(a: Option<f64>, b: Option<f64>) -> String {
    delta_us(a, b).map_or_else(|| "n/a".into(), |d| format!("{d:+.0} µs"))
}

fn fmt_ops(ops: Option<u64>) -> String {
    ops.map_or_else(|| "n/a (no /metrics)".into(), |n| n.to_string())
}

pub struct Report {
    secs: u64,
    rounds: usize,
    latency_rounds: usize,
    rate: u32,
    latency_correction: bool,
    node_args: Vec<String>,
    oha_version: String,
    owned: [usize; 3],
    pub throughput: Vec<ThroughputRound>,
    pub latency: Vec<LatencyRound>,
}

impl Report {
    pub fn new(s: &Settings, cs: &ClusterSettings, oha_version: &str, owned: [usize; 3]) -> Report {
        Report {
            secs: s.secs,
            rounds: s.rounds,
            latency_rounds: cs.latency_rounds,
            rate: cs.rate,
            latency_correction: s.latency_correction,
            node_args: s.node_args.clone(),
            oha_version: oha_version.to_string(),
            owned,
            throughput: Vec::new(),
            latency: Vec::new(),
        }
    }

    fn correction_flag(&self) -> &'static str {
        if self.latency_correction {
            " --latency-correction"
        } else {
            ""
        }
    }

    pub fn throughput_header(&self) {
        println!(
            "\n## Throughput: 1 node vs 3 nodes (3 oha at once, -c {CONNECTIONS} split 22/21/21, -z {}s, \
             random user of {USERS} per request; {} interleaved rounds)\n",
            self.secs, self.rounds
        );
        println!(
            "1 node: all three oha send to the single node. 3 nodes: each oha sends to its own cluster node, \
             so about 2/3 of the checks are forwarded to the owner. Percentiles are the worst of the three oha runs."
        );
        println!(
            "Caveat: on this {}-CPU machine the nodes and oha share the same cores, so 3-node throughput is \
             CPU-bound and cannot scale; the ratio shows the cost of forwarding, not cluster capacity.\n",
            nproc()
        );
    }

    pub fn throughput_results(&self) {
        let rounds: Vec<Vec<OhaResult>> = self
            .throughput
            .iter()
            .map(|r| vec![r.one.clone(), r.three.clone()])
            .collect();
        print_rounds(&["1 node (single node)", "3 nodes (one oha per node)"], &rounds);
        println!();
        for (i, r) in self.throughput.iter().enumerate() {
            let per_node: Vec<String> = r.parts.iter().map(|p| format!("{:.0}", p.ok_per_sec())).collect();
            let share = r.forwarded.map_or_else(
                || "n/a".into(),
                |f| format!("{:.1} %", 100.0 * f as f64 / r.three.ok().max(1) as f64),
            );
            println!(
                "round {}: 3-node/1-node {:.2}x; per node {} req/s; forwarded {} of {} 3-node checks ({share})",
                i + 1,
                r.ratio(),
                per_node.join(" / "),
                fmt_ops(r.forwarded),
                r.three.ok()
            );
        }
        let median = self.median_throughput();
        println!(
            "\n3-node vs 1-node throughput (median round): {:.0} vs {:.0} req/s = {:.2}x",
            median.three.ok_per_sec(),
            median.one.ok_per_sec(),
            median.ratio()
        );
    }

    fn median_throughput(&self) -> &ThroughputRound {
        median_by(self.throughput.iter().collect(), |r| r.ratio())
    }

    pub fn latency_header(&self) {
        println!(
            "\n## Latency: local vs forwarded check (oha -c {LATENCY_CONNECTIONS} -q {}{} -z {}s to node-1; \
             {} interleaved rounds)\n",
            self.rate,
            self.correction_flag(),
            self.secs,
            self.latency_rounds
        );
        println!(
            "local: users node-1 owns ({} of {USERS}); forwarded: users node-2 or node-3 own ({}); \
             single node: all users, same rate, for reference.\n",
            self.owned[0],
            self.owned[1] + self.owned[2]
        );
    }

    pub fn latency_results(&self) {
        let rounds: Vec<Vec<OhaResult>> = self
            .latency
            .iter()
            .map(|r| vec![r.local.clone(), r.forwarded.clone(), r.single.clone()])
            .collect();
        print_rounds(
            &[
                "node-1, local users",
                "node-1, forwarded users",
                "single node, all users",
            ],
            &rounds,
        );
        println!();
        for (i, r) in self.latency.iter().enumerate() {
            println!(
                "round {}: forwarded − local p50 {}, p90 {}, p99 {}; node-1 forwarded {} of {} local-user checks, {} of {} forwarded-user checks",
                i + 1,
                fmt_delta(r.forwarded.p50, r.local.p50),
                fmt_delta(r.forwarded.p90, r.local.p90),
                fmt_delta(r.forwarded.p99, r.local.p99),
                fmt_ops(r.local_forwarded_ops),
                r.local.ok(),
                fmt_ops(r.forwarded_ops),
                r.forwarded.ok()
            );
        }
        println!("\n{}", self.verdict());
    }

    fn median_latency(&self) -> &LatencyRound {
        median_by(self.latency.iter().collect(), |r| r.p50_delta_us())
    }

    fn verdict(&self) -> String {
        let m = self.median_latency();
        let delta = m.p50_delta_us();
        format!(
            "forwarding adds {delta:.0} µs at the median (p50 {} ms forwarded vs {} ms local, median of {} rounds): \
             target < {FORWARD_TARGET_US:.0} µs {}",
            fmt_ms(m.forwarded.p50),
            fmt_ms(m.local.p50),
            self.latency.len(),
            if delta < FORWARD_TARGET_US { "MET" } else { "NOT MET" }
        )
    }

    pub fn stopped(&self, stopped: &[(&str, Option<ExitStatus>, PathBuf)]) {
        let statuses: Vec<String> = stopped
            .iter()
            .map(|(name, status, _)| format!("{name} {}", status.map_or_else(|| "-".into(), |s| s.to_string())))
            .collect();
        println!("\nstopped: {}", statuses.join(", "));
        for (name, status, log) in stopped {
            if status.is_some_and(|s| !s.success()) {
                println!("WARNING: the {name} did not exit cleanly; its log:\n{}", tail(log, 40));
            }
            print_node_warnings(name, log);
        }
    }

    pub fn summary(&self) {
        let t = self.median_throughput();
        let l = self.median_latency();
        let bad: u64 = self
            .throughput
            .iter()
            .flat_map(|r| [&r.one, &r.three])
            .chain(self.latency.iter().flat_map(|r| [&r.local, &r.forwarded, &r.single]))
            .map(|r| r.non_2xx() + r.error_count())
            .sum();
        let mut md = String::new();
        let _ = writeln!(md, "### Cluster load benchmark ({})\n", date_utc());
        let _ = writeln!(
            md,
            "`TOLLGATE_BENCH_MODE=cluster cargo bench --bench load` — {} CPUs ({}), {}, loopback, every node on \
             Postgres (3 clustered nodes on one database, 1 single node on another), a random user of {USERS} per \
             request, {} s per run, median round shown. The nodes and oha share the CPUs: 3-node throughput \
             cannot scale here and shows the cost of forwarding.\n",
            nproc(),
            cpu_model(),
            self.oha_version,
            self.secs
        );
        let _ = writeln!(
            md,
            "| throughput, 3 × oha, {CONNECTIONS} connections in all | 1 node | 3 nodes | 3-node/1-node |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|");
        let ratios: Vec<String> = self.throughput.iter().map(|r| format!("{:.2}", r.ratio())).collect();
        let _ = writeln!(
            md,
            "| 2xx req/s (median of {} rounds) | {:.0} | {:.0} | **{:.2}×** (rounds: {}) |",
            self.throughput.len(),
            t.one.ok_per_sec(),
            t.three.ok_per_sec(),
            t.ratio(),
            ratios.join(", ")
        );
        let _ = writeln!(
            md,
            "| p50 / p99 at full load (ms, worst oha) | {} / {} | {} / {} | |\n",
            fmt_ms(t.one.p50),
            fmt_ms(t.one.p99),
            fmt_ms(t.three.p50),
            fmt_ms(t.three.p99)
        );
        let _ = writeln!(
            md,
            "| at {} req/s{} to node-1 (ms) | local | forwarded | forwarded − local | single node |",
            self.rate,
            self.correction_flag()
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (name, p) in [
            ("p50", (|r: &OhaResult| r.p50) as fn(&OhaResult) -> Option<f64>),
            ("p90", |r| r.p90),
            ("p99", |r| r.p99),
        ] {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |",
                fmt_ms(p(&l.local)),
                fmt_ms(p(&l.forwarded)),
                fmt_delta(p(&l.forwarded), p(&l.local)),
                fmt_ms(p(&l.single))
            );
        }
        let deltas: Vec<String> = self
            .latency
            .iter()
            .map(|r| format!("{:.0}", r.p50_delta_us()))
            .collect();
        let _ = writeln!(
            md,
            "\n{}; per-round p50 differences (µs): {}. Non-2xx/errors across all runs: {bad}.",
            self.verdict(),
            deltas.join(", ")
        );
        if !self.node_args.is_empty() {
            let _ = writeln!(md, "Extra node arguments: `{}`.", self.node_args.join(" "));
        }
        println!("\n## Summary (Markdown for README.md)\n");
        println!("{md}");
    }
}
