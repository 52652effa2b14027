//! Phase C of the single mode: memory per resident entity.

use crate::api::{expect_ok, pool};
use crate::{ADMIN_TOKEN, MEM_IN_FLIGHT};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct MemResult {
    pub users: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub resident_before: u64,
    pub resident_after: u64,
    pub secs: f64,
    pub non_2xx: u64,
    pub first_failure: Option<String>,
}

impl MemResult {
    pub fn bytes_per_entity(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.users as f64
    }

    pub fn print(&self) {
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| node VmRSS before | {} KiB |", self.rss_before_kib);
        println!("| node VmRSS after | {} KiB |", self.rss_after_kib);
        println!(
            "| /readyz resident_entities before → after | {} → {} |",
            self.resident_before, self.resident_after
        );
        println!(
            "| (RSS after − before) / {} | {:.0} B = {:.2} KiB |",
            self.users,
            self.bytes_per_entity(),
            self.bytes_per_entity() / 1024.0
        );
        println!(
            "| first checks (entity loaded from SQLite) | {:.0} /s ({:.1} s for {}) |",
            self.users as f64 / self.secs,
            self.secs,
            self.users
        );
        println!(
            "\nmemory per resident entity: {:.2} KiB  (DESIGN.md §7 target: <= 10 KiB)",
            self.bytes_per_entity() / 1024.0
        );
        let delta = self.resident_after.saturating_sub(self.resident_before);
        if delta != self.users as u64 {
            println!("WARNING: resident entities grew by {delta}, not {}", self.users);
        }
        if self.non_2xx > 0 {
            println!(
                "WARNING: {} first checks were not 2xx; first: {}",
                self.non_2xx,
                self.first_failure.as_deref().unwrap_or("-")
            );
        }
    }
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

async fn resident(client: &reqwest::Client, base: &str) -> Result<u64> {
    let body = expect_ok(client.get(format!("{base}/readyz")).send().await?, "GET /readyz").await?;
    body["resident_entities"]
        .as_u64()
        .context("/readyz has no resident_entities")
}

pub async fn memory_phase(client: &reqwest::Client, base: &str, pid: u32, users: usize) -> Result<MemResult> {
    // Let the last counter flush of phase B land first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resident_before = resident(client, base).await?;
    let rss_before_kib = vm_rss_kib(pid)?;

    let non_2xx = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(parking_lot::Mutex::new(None::<String>));
    let started = Instant::now();
    let (c, b, bad, first) = (client.clone(), base.to_string(), non_2xx.clone(), first_failure.clone());
    pool(users, MEM_IN_FLIGHT, move |i| {
        let (client, base, bad, first) = (c.clone(), b.clone(), bad.clone(), first.clone());
        async move {
            let resp = client
                .post(format!("{base}/v1/check"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"user_id": format!("m{i}")}))
                .send()
                .await?;
            let status = resp.status();
            if !status.is_success() {
                bad.fetch_add(1, Ordering::Relaxed);
                let text = resp.text().await.unwrap_or_default();
                first
                    .lock()
                    .get_or_insert_with(|| format!("m{i}: HTTP {status}: {text}"));
            }
            Ok(())
        }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();

    // Let the flusher write the 100 000 new counters before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = vm_rss_kib(pid)?;
    let resident_after = resident(client, base).await?;
    let first_failure = first_failure.lock().clone();
    Ok(MemResult {
        users,
        rss_before_kib,
        rss_after_kib,
        resident_before,
        resident_after,
        secs,
        non_2xx: non_2xx.load(Ordering::Relaxed),
        first_failure,
    })
}
