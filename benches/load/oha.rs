//! Running `oha` and reading its JSON output.

use crate::ADMIN_TOKEN;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, Clone, Default)]
pub struct OhaResult {
    pub secs: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Client-side errors, without the in-flight requests cut at the deadline.
    pub errors: BTreeMap<String, u64>,
    /// Seconds.
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
}

impl OhaResult {
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn non_2xx(&self) -> u64 {
        self.responses() - self.ok()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn ok_per_sec(&self) -> f64 {
        self.ok() as f64 / self.secs
    }

    pub fn success_pct(&self) -> f64 {
        let all = self.responses() + self.error_count();
        if all == 0 {
            0.0
        } else {
            100.0 * self.ok() as f64 / all as f64
        }
    }

    /// Runs made at the same time, as one: responses and errors add up over
    /// the longest run's duration; each percentile is the worst of the runs'
    /// (oha's JSON has no histogram fine enough to merge them exactly).
    pub fn concurrent(runs: &[OhaResult]) -> OhaResult {
        let mut all = OhaResult::default();
        for run in runs {
            all.secs = all.secs.max(run.secs);
            for (status, n) in &run.statuses {
                *all.statuses.entry(*status).or_default() += n;
            }
            for (error, n) in &run.errors {
                *all.errors.entry(error.clone()).or_default() += n;
            }
        }
        let worst = |p: fn(&OhaResult) -> Option<f64>| runs.iter().filter_map(p).reduce(f64::max);
        all.p50 = worst(|r| r.p50);
        all.p90 = worst(|r| r.p90);
        all.p99 = worst(|r| r.p99);
        all.p999 = worst(|r| r.p999);
        all
    }
}

/// One oha run: `POST` bodies drawn at random from the lines of `bodies`.
pub struct OhaRun<'a> {
    pub url: String,
    pub bodies: &'a Path,
    pub connections: u32,
    pub secs: u64,
    /// A fixed number of requests (`-n`) instead of a duration (`-z secs`).
    pub requests: Option<u64>,
    /// A fixed rate, and whether to correct for coordinated omission.
    pub rate: Option<(u32, bool)>,
    /// Where oha writes its JSON.
    pub out: PathBuf,
}

impl OhaRun<'_> {
    fn command(&self, oha: &Path) -> Command {
        let mut cmd = Command::new(oha);
        cmd.args(["--no-tui", "--no-color", "--output-format", "json"])
            .arg("-o")
            .arg(&self.out)
            .args(["-c", &self.connections.to_string()])
            .args(match self.requests {
                Some(n) => ["-n".to_string(), n.to_string()],
                None => ["-z".to_string(), format!("{}s", self.secs)],
            })
            .args(["-m", "POST"])
            .args(["-T", "application/json"])
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .arg("-Z")
            .arg(self.bodies);
        if let Some((rate, correction)) = self.rate {
            cmd.args(["-q", &rate.to_string()]);
            if correction {
                cmd.arg("--latency-correction");
            }
        }
        cmd.arg(&self.url);
        cmd
    }
}

pub fn run_oha(oha: &Path, run: &OhaRun) -> Result<OhaResult> {
    let mut results = run_oha_concurrently(oha, std::slice::from_ref(run))?;
    results.pop().context("oha gave no result")
}

/// Starts every run at once and waits for all of them.
pub fn run_oha_concurrently(oha: &Path, runs: &[OhaRun]) -> Result<Vec<OhaResult>> {
    let mut children: Vec<Child> = Vec::with_capacity(runs.len());
    for run in runs {
        let spawned = run
            .command(oha)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(err) => {
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(err).with_context(|| format!("running {}", oha.display()));
            }
        }
    }
    // Wait for every child before looking at any result, so none is left
    // running when one failed.
    let outputs: Vec<_> = children.into_iter().map(Child::wait_with_output).collect();
    runs.iter()
        .zip(outputs)
        .map(|(run, output)| {
            let output = output.with_context(|| format!("waiting for {}", oha.display()))?;
            if !output.status.success() {
                bail!(
                    "oha failed ({}) against {}:\n{}",
                    output.status,
                    run.url,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let text = std::fs::read_to_string(&run.out).with_context(|| format!("reading {}", run.out.display()))?;
            parse_oha(&text).with_context(|| format!("parsing oha's JSON in {}", run.out.display()))
        })
        .collect()
}

fn parse_oha(text: &str) -> Result<OhaResult> {
    let json: serde_json::Value = serde_json::from_str(text)?;
    let secs = json["summary"]["total"].as_f64().context("summary.total")?;
    let statuses = json["statusCodeDistribution"]
        .as_object()
        .context("statusCodeDistribution")?
        .iter()
        .map(|(k, v)| Ok((k.parse::<u16>()?, v.as_u64().unwrap_or(0))))
        .collect::<Result<BTreeMap<u16, u64>>>()?;
    let errors = json["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let p = |key: &str| json["latencyPercentiles"][key].as_f64();
    Ok(OhaResult {
        secs,
        statuses,
        errors,
        p50: p("p50"),
        p90: p("p90"),
        p99: p("p99"),
        p999: p("p99.9"),
    })
}

pub fn fmt_ms(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s.is_finite() => format!("{:.3}", s * 1000.0),
        _ => "n/a".into(),
    }
}

pub fn print_table(rows: &[(&str, &OhaResult)]) {
    println!("| target | 2xx req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | success | non-2xx | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.2} % | {} | {} |",
            r.ok_per_sec(),
            fmt_ms(r.p50),
            fmt_ms(r.p90),
            fmt_ms(r.p99),
            fmt_ms(r.p999),
            r.success_pct(),
            r.non_2xx(),
            r.error_count()
        );
    }
    for (name, r) in rows {
        let odd: Vec<String> = r
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .chain(r.errors.iter().map(|(e, n)| format!("{e}: {n}")))
            .collect();
        if !odd.is_empty() {
            println!("WARNING {name}: {}", odd.join("; "));
        }
    }
}

/// Prints every round's runs as one table; `labels[i]` names run `i` of a
/// round.
pub fn print_rounds(labels: &[&str], rounds: &[Vec<OhaResult>]) {
    let rows: Vec<(String, &OhaResult)> = rounds
        .iter()
        .enumerate()
        .flat_map(|(i, runs)| {
            labels
                .iter()
                .zip(runs)
                .map(move |(label, r)| (format!("round {}: {label}", i + 1), r))
        })
        .collect();
    print_table(&rows.iter().map(|(name, r)| (name.as_str(), *r)).collect::<Vec<_>>());
}

/// The element whose `key` is the median (elements sorted by `key`).
pub fn median_by<T>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = items.len() / 2;
    items.swap_remove(mid)
}
