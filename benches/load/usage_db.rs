//! The usage mode's view of the database and of CPU time: the backend's
//! processes, ledger rows, and the `spend = SUM(ledger)` check.

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use sqlx::Connection;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

/// Three text columns: (user, period, cost) of a ledger row, or (entity,
/// period, spent) of a spend row.
type TextRow = (String, String, String);

/// The database a usage run writes to.
pub enum BenchDb {
    Postgres { url: String, name: String },
    Sqlite { path: PathBuf },
}

enum Conn {
    Pg(sqlx::PgConnection),
    Lite(sqlx::SqliteConnection),
}

impl BenchDb {
    pub fn label(&self) -> &'static str {
        match self {
            BenchDb::Postgres { .. } => "Postgres",
            BenchDb::Sqlite { .. } => "SQLite",
        }
    }

    async fn connect(&self) -> Result<Conn> {
        Ok(match self {
            BenchDb::Postgres { url, .. } => Conn::Pg(sqlx::PgConnection::connect(url).await?),
            BenchDb::Sqlite { path } => {
                Conn::Lite(sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?)
            }
        })
    }

    /// Rows in the ledger.
    pub async fn ledger_rows(&self) -> Result<u64> {
        let n: i64 = match self.connect().await? {
            Conn::Pg(mut c) => {
                sqlx::query_scalar("SELECT count(*) FROM model_usage")
                    .fetch_one(&mut c)
                    .await?
            }
            Conn::Lite(mut c) => {
                sqlx::query_scalar("SELECT count(*) FROM model_usage")
                    .fetch_one(&mut c)
                    .await?
            }
        };
        u64::try_from(n).context("negative count")
    }

    /// The pids of the Postgres backends serving this database (none for
    /// SQLite, which runs inside the node).
    pub async fn backend_pids(&self) -> Result<Vec<u32>> {
        let BenchDb::Postgres { url, name } = self else {
            return Ok(Vec::new());
        };
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                .bind(name)
                .fetch_all(&mut conn)
                .await?;
        let _ = conn.close().await;
        Ok(pids.into_iter().filter_map(|p| u32::try_from(p).ok()).collect())
    }

    /// Checks `spend = SUM(ledger)` for every (user, period) with either
    /// (the bench charges users only), and that no event id is in the
    /// ledger twice. Returns the number of spend rows checked.
    pub async fn check_spend(&self) -> Result<usize> {
        let (ledger, spend, dup_ids): (Vec<TextRow>, Vec<TextRow>, i64) = match self.connect().await? {
            Conn::Pg(mut c) => (
                sqlx::query_as("SELECT user_id, period, cost_usd::text FROM model_usage WHERE user_id IS NOT NULL")
                    .fetch_all(&mut c)
                    .await?,
                sqlx::query_as("SELECT entity, period, spent_usd::text FROM entity_spend")
                    .fetch_all(&mut c)
                    .await?,
                sqlx::query_scalar("SELECT count(*) - count(DISTINCT event_id) FROM model_usage")
                    .fetch_one(&mut c)
                    .await?,
            ),
            Conn::Lite(mut c) => (
                sqlx::query_as("SELECT user_id, period, cost_usd FROM model_usage WHERE user_id IS NOT NULL")
                    .fetch_all(&mut c)
                    .await?,
                sqlx::query_as("SELECT entity, period, spent_usd FROM entity_spend")
                    .fetch_all(&mut c)
                    .await?,
                sqlx::query_scalar("SELECT count(*) - count(DISTINCT event_id) FROM model_usage")
                    .fetch_one(&mut c)
                    .await?,
            ),
        };
        if dup_ids != 0 {
            bail!("{dup_ids} event ids are in the ledger more than once");
        }
        let mut sums: HashMap<(String, String), Decimal> = HashMap::new();
        for (user, period, cost) in ledger {
            *sums.entry((format!("user:{user}"), period)).or_default() += Decimal::from_str(&cost)?;
        }
        let mut seen = HashSet::new();
        for (entity, period, spent) in &spend {
            let key = (entity.clone(), period.clone());
            let sum = sums.get(&key).copied().unwrap_or_default();
            if sum.normalize() != Decimal::from_str(spent)?.normalize() {
                bail!("{entity} {period}: spend {spent} but the ledger sums to {sum}");
            }
            seen.insert(key);
        }
        if let Some((entity, period)) = sums.keys().find(|k| !seen.contains(*k)) {
            bail!("{entity} {period} has ledger rows but no spend row");
        }
        Ok(spend.len())
    }
}

/// Clock ticks per second (`/proc/<pid>/stat` counts CPU time in them).
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a constant and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds (user + system) a process has used so far, or None if it is
/// gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec())
}

/// Every `postgres` process on the machine (the whole cluster: backends,
/// WAL writer, checkpointer, autovacuum, and other clients' backends).
pub fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .collect()
}

/// CPU seconds of a set of processes, sampled before and after a phase.
pub struct CpuSample(HashMap<u32, f64>);

impl CpuSample {
    pub fn take(pids: &[u32]) -> CpuSample {
        CpuSample(pids.iter().filter_map(|&p| Some((p, cpu_secs(p)?))).collect())
    }

    /// CPU used between `self` and `later`; a pid seen only later started
    /// during the phase and counts from 0.
    pub fn used_until(&self, later: &CpuSample) -> f64 {
        later
            .0
            .iter()
            .map(|(pid, &end)| (end - self.0.get(pid).copied().unwrap_or(0.0)).max(0.0))
            .sum()
    }
}
