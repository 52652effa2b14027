//! Scenario reports: named checks (required ones decide pass/fail,
//! informational ones are only shown), the figures the long set tabulates,
//! and log tails when something failed.

use crate::load::Counts;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a failed check fails the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Required,
    Info,
}

/// One named check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub severity: Severity,
    pub ok: bool,
    pub detail: String,
}

/// The figures of one scenario (absent where it does not apply).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests: u64,
    pub admitted: u64,
    pub refused_429: u64,
    pub s503: u64,
    pub other_5xx: u64,
    pub failover: Option<Duration>,
    pub over_admission: Option<i64>,
    pub money_exact: Option<bool>,
}

/// What a scenario found.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: String,
    pub checks: Vec<Check>,
    pub figures: Figures,
    pub notes: Vec<String>,
    pub elapsed: Duration,
    /// Tails of the node logs, attached when a required check failed.
    pub logs: Option<String>,
    /// Where the full logs were kept, when they were.
    pub log_dir: Option<PathBuf>,
}

impl ScenarioReport {
    pub fn new(name: &str) -> Self {
        ScenarioReport {
            name: name.to_string(),
            checks: Vec::new(),
            figures: Figures::default(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
            logs: None,
            log_dir: None,
        }
    }

    /// A check that fails the scenario when `ok` is false.
    pub fn require(&mut self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        self.push(name, Severity::Required, ok, detail.into())
    }

    /// A check that is only reported.
    pub fn info(&mut self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        self.push(name, Severity::Info, ok, detail.into())
    }

    fn push(&mut self, name: &str, severity: Severity, ok: bool, detail: String) -> bool {
        self.checks.push(Check {
            name: name.to_string(),
            severity,
            ok,
            detail,
        });
        ok
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Every required check passed (and there was at least one).
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok || c.severity == Severity::Info)
    }

    /// Fills the request figures from load counts (adding to what is there).
    pub fn add_counts(&mut self, c: &Counts) {
        let f = &mut self.figures;
        f.requests += c.requests;
        f.admitted += c.admitted;
        f.refused_429 += c.refused;
        f.s503 += c.s503;
        f.other_5xx += c.other_5xx;
    }

    /// The failed required checks, one per line.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok && c.severity == Severity::Required)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything, for a terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let verdict = if self.ok() { "PASS" } else { "FAIL" };
        let _ = writeln!(s, "== {} — {verdict} in {:.1} s", self.name, self.elapsed.as_secs_f64());
        for c in &self.checks {
            let mark = match (c.ok, c.severity) {
                (true, _) => "ok  ",
                (false, Severity::Required) => "FAIL",
                (false, Severity::Info) => "info",
            };
            let _ = writeln!(s, "  [{mark}] {}: {}", c.name, c.detail);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if let Some(dir) = &self.log_dir {
            let _ = writeln!(s, "  logs kept in {}", dir.display());
        }
        if let Some(logs) = &self.logs {
            let _ = writeln!(s, "  node log tails:\n{logs}");
        }
        s
    }
}

/// The long set's summary table.
pub fn table(reports: &[ScenarioReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<36} {:>6} {:>7} {:>9} {:>9} {:>7} {:>6} {:>9} {:>10} {:>9} {:>6}",
        "scenario",
        "result",
        "time s",
        "requests",
        "admitted",
        "429",
        "503",
        "5xx≠503",
        "failover",
        "over-adm",
        "money"
    );
    for r in reports {
        let f = &r.figures;
        let failover = f.failover.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        let over = f.over_admission.map_or("-".into(), |o| o.to_string());
        let money = f.money_exact.map_or("-", |m| if m { "exact" } else { "WRONG" });
        let _ = writeln!(
            s,
            "{:<36} {:>6} {:>7.1} {:>9} {:>9} {:>7} {:>6} {:>9} {:>10} {:>9} {:>6}",
            r.name,
            if r.ok() { "pass" } else { "FAIL" },
            r.elapsed.as_secs_f64(),
            f.requests,
            f.admitted,
            f.refused_429,
            f.s503,
            f.other_5xx,
            failover,
            over,
            money
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_checks_do_not_fail() {
        let mut r = ScenarioReport::new("x");
        assert!(!r.ok(), "no checks is not a pass");
        r.require("a", true, "fine");
        r.info("b", false, "just so you know");
        assert!(r.ok());
        r.require("c", false, "broken");
        assert!(!r.ok());
        assert_eq!(r.failures(), "c: broken");
        assert!(r.render().contains("[FAIL] c: broken"));
        assert!(table(&[r]).contains("FAIL"));
    }
}
