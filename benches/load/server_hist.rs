//! The node's own view of check latency: `tollgate_check_duration_seconds`
//! from `/metrics`, read before and after a run, and a quantile of the
//! difference computed as Prometheus' `histogram_quantile` does (linear
//! within the bucket). Printed next to oha's client-side figures, so the
//! histogram can be checked against what a client measured.

use crate::ADMIN_TOKEN;
use anyhow::{Context, Result};

const FAMILY: &str = "tollgate_check_duration_seconds_bucket";

/// Cumulative counts per upper bound (`le`), summed over every label set.
#[derive(Debug, Clone, Default)]
pub struct Buckets(Vec<(f64, f64)>);

pub async fn scrape(client: &reqwest::Client, node_url: &str) -> Result<Buckets> {
    let text = client
        .get(format!("{node_url}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .context("scraping /metrics")?
        .text()
        .await?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Buckets {
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(FAMILY)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = series.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Ok(count) = value.parse::<f64>() else { continue };
        match sums.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += count,
            None => sums.push((le, count)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    Buckets(sums)
}

/// The `q` quantile (seconds) of the observations between two scrapes.
pub fn quantile(before: &Buckets, after: &Buckets, q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .0
        .iter()
        .map(|(le, n)| {
            let was = before.0.iter().find(|(b, _)| b == le).map_or(0.0, |(_, c)| *c);
            (*le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = (rank - prev.1) / (count - prev.1).max(f64::MIN_POSITIVE);
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, count);
    }
    None
}
