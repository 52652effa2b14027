//! The single mode's summary for README.md.

use crate::memory::MemResult;
use crate::oha::{OhaResult, fmt_ms};
use crate::procs::{cpu_model, date_utc, nproc};
use crate::{CONNECTIONS, Settings, USERS};
use std::fmt::Write as _;

#[allow(clippy::too_many_arguments)]
pub fn print_summary(
    s: &Settings,
    oha_version: &str,
    a_floor: &OhaResult,
    a_node: &OhaResult,
    b_floor: &OhaResult,
    b_node: &OhaResult,
    mem: &MemResult,
) {
    let nproc = nproc();
    let date = date_utc();
    let ratio = a_node.ok_per_sec() / a_floor.ok_per_sec();
    let mut md = String::new();
    let _ = writeln!(md, "### Load benchmark ({date})\n");
    let _ = writeln!(
        md,
        "`cargo bench --bench load` — {nproc} CPUs ({}), {oha_version}, loopback, node on SQLite, \
         {CONNECTIONS} connections, each request a random user of {USERS}, {} s per run, {} interleaved \
         floor/node rounds per phase, the median round shown. Floor = bare axum JSON echo in its own process.\n",
        cpu_model(),
        s.secs,
        s.rounds
    );
    let _ = writeln!(
        md,
        "| | floor (axum echo) | tollgate `/v1/check` | node/floor | target |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let _ = writeln!(
        md,
        "| throughput, `-c {CONNECTIONS}` (2xx req/s) | {:.0} | {:.0} | {ratio:.2}× | ≥ 0.70× |",
        a_floor.ok_per_sec(),
        a_node.ok_per_sec()
    );
    let _ = writeln!(
        md,
        "| p50 / p99 at full load (ms) | {} / {} | {} / {} | | |",
        fmt_ms(a_floor.p50),
        fmt_ms(a_floor.p99),
        fmt_ms(a_node.p50),
        fmt_ms(a_node.p99)
    );
    let _ = writeln!(
        md,
        "| p50 / p99 / p99.9 at {} req/s (ms) | {} / {} / {} | {} / {} / {} | | p99 < 1 ms |",
        s.rate,
        fmt_ms(b_floor.p50),
        fmt_ms(b_floor.p99),
        fmt_ms(b_floor.p999),
        fmt_ms(b_node.p50),
        fmt_ms(b_node.p99),
        fmt_ms(b_node.p999)
    );
    let _ = writeln!(
        md,
        "| memory per resident entity ({} new users) | | {:.2} KiB ({:.0} B) | | ≤ 10 KiB |",
        mem.users,
        mem.bytes_per_entity() / 1024.0,
        mem.bytes_per_entity()
    );
    let total_bad = a_node.non_2xx() + a_node.error_count() + b_node.non_2xx() + b_node.error_count() + mem.non_2xx;
    let _ = writeln!(
        md,
        "\nNode non-2xx/errors across all phases: {total_bad}. Phase B {}.",
        if s.latency_correction {
            "uses `--latency-correction` (no coordinated omission)"
        } else {
            "runs without `--latency-correction`"
        }
    );
    if !s.node_args.is_empty() {
        let _ = writeln!(md, "Extra node arguments: `{}`.", s.node_args.join(" "));
    }
    println!("\n## Summary (Markdown for README.md)\n");
    println!("{md}");
}
