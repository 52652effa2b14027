//! The single mode: one node on SQLite against a bare axum echo (the
//! floor). Phase A throughput, phase B latency at a fixed rate, phase C
//! memory per resident entity.

use crate::api::{setup_users, write_bodies};
use crate::memory::memory_phase;
use crate::oha::{OhaResult, OhaRun, fmt_ms, median_by, print_rounds, run_oha};
use crate::procs::{
    ChildGuard, command_output, find_oha, free_port, node_command, print_node_warnings, tail, wait_healthy,
};
use crate::summary::print_summary;
use crate::{CONNECTIONS, ECHO_LISTEN_ENV, MEM_IN_FLIGHT, ROLE_ENV, Settings, TIER, USERS};
use crate::{plot, server_hist};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn run(settings: &Settings) -> Result<()> {
    let oha = find_oha()?;
    let oha_version = command_output(&oha, &["--version"]).unwrap_or_else(|| "oha (version unknown)".into());

    let dir = tempfile::Builder::new()
        .prefix("tollgate-load-")
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below the node's --keep-alive-timeout-s (5 s).
        .pool_idle_timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(MEM_IN_FLIGHT)
        .build()?;

    // The node.
    let node_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let db = dir.path().join("load.db");
    let node_cmd = node_command(node_addr, &format!("sqlite://{}", db.display()), &settings.node_args);
    let node_log = dir.path().join("node.log");
    let mut node = ChildGuard::spawn("tollgate node", node_cmd, node_log.clone())?;

    // The floor.
    let echo_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut echo_cmd = Command::new(std::env::current_exe().context("locating the bench binary")?);
    echo_cmd
        .env(ROLE_ENV, "echo")
        .env(ECHO_LISTEN_ENV, echo_addr.to_string());
    let mut echo = ChildGuard::spawn("echo server", echo_cmd, dir.path().join("echo.log"))?;

    let node_url = format!("http://{node_addr}");
    let echo_url = format!("http://{echo_addr}");
    println!(
        "tollgate load bench: {oha_version}; node pid {} on {node_addr}, echo pid {} on {echo_addr}",
        node.pid(),
        echo.pid()
    );
    println!("  work dir {} (node log: {})", dir.path().display(), node_log.display());
    if !settings.node_args.is_empty() {
        println!("  extra node arguments: {}", settings.node_args.join(" "));
    }
    runtime.block_on(wait_healthy(&client, &node_url, &mut node))?;
    runtime.block_on(wait_healthy(&client, &echo_url, &mut echo))?;

    // Tier, users, warm-up.
    let started = Instant::now();
    runtime.block_on(setup_users(&client, &node_url))?;
    println!(
        "setup: tier {TIER:?} + {USERS} users assigned and warmed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    node.ensure_alive()?;

    let bodies = dir.path().join("bodies.txt");
    write_bodies(&bodies, "u", USERS)?;
    let correction = settings.latency_correction;
    let oha_run = |target: &str, secs: u64, rate: Option<u32>, tag: &str| -> Result<OhaResult> {
        let url = if target == "echo" {
            format!("{echo_url}/echo")
        } else {
            format!("{node_url}/v1/check")
        };
        let run = OhaRun {
            url,
            bodies: &bodies,
            connections: CONNECTIONS,
            secs,
            rate: rate.map(|r| (r, correction)),
            out: dir.path().join(format!("oha-{tag}-{target}.json")),
        };
        run_oha(&oha, &run)
    };

    // Warm-up runs (not reported): first connections, allocator, caches.
    oha_run("echo", 2, None, "warmup")?;
    oha_run("node", 2, None, "warmup")?;
    echo.ensure_alive()?;
    node.ensure_alive()?;

    // Phase A.
    println!(
        "\n## Phase A: throughput (oha -c {CONNECTIONS} -z {}s, POST, random user of {USERS} per request; {} interleaved rounds)\n",
        settings.secs, settings.rounds
    );
    let a_rounds = run_rounds(settings.rounds, |round| {
        let floor = oha_run("echo", settings.secs, None, &format!("a{round}"))?;
        echo.ensure_alive()?;
        let node_result = oha_run("node", settings.secs, None, &format!("a{round}"))?;
        node.ensure_alive()?;
        Ok((floor, node_result))
    })?;
    let ratios: Vec<f64> = a_rounds.iter().map(|(f, n)| n.ok_per_sec() / f.ok_per_sec()).collect();
    let (a_floor, a_node) = median_by(a_rounds, |(f, n)| n.ok_per_sec() / f.ok_per_sec());
    let ratio = a_node.ok_per_sec() / a_floor.ok_per_sec();
    println!(
        "\nnode/floor throughput per round: {}; median {ratio:.2}x  (DESIGN.md §7 target: >= 0.70x; Limitador: 0.77x)",
        ratios.iter().map(|r| format!("{r:.2}x")).collect::<Vec<_>>().join(", ")
    );

    // Phase B.
    println!(
        "\n## Phase B: latency at a fixed rate (oha -c {CONNECTIONS} -q {}{} -z {}s; {} interleaved rounds)\n",
        settings.rate,
        if settings.latency_correction {
            " --latency-correction"
        } else {
            ""
        },
        settings.secs,
        settings.rounds
    );
    let mut server_p99s = Vec::new();
    let b_rounds = run_rounds(settings.rounds, |round| {
        let floor = oha_run("echo", settings.secs, Some(settings.rate), &format!("b{round}"))?;
        echo.ensure_alive()?;
        let before = runtime.block_on(server_hist::scrape(&client, &node_url))?;
        let node_result = oha_run("node", settings.secs, Some(settings.rate), &format!("b{round}"))?;
        let after = runtime.block_on(server_hist::scrape(&client, &node_url))?;
        server_p99s.push(server_hist::quantile(&before, &after, 0.99));
        node.ensure_alive()?;
        Ok((floor, node_result))
    })?;
    // The node's histogram against the client's view: client p99 minus the
    // floor's p99 (what loopback HTTP itself costs) per round.
    for (round, ((floor, node_result), server)) in b_rounds.iter().zip(&server_p99s).enumerate() {
        let client_net = node_result.p99.zip(floor.p99).map(|(n, f)| (n - f).max(0.0));
        println!(
            "round {}: server-side p99 (tollgate_check_duration_seconds) {} ms; client p99 - floor p99 {} ms; ratio {}",
            round + 1,
            fmt_ms(*server),
            fmt_ms(client_net),
            match (server, client_net) {
                (Some(s), Some(c)) if *s > 0.0 => format!("{:.2}x", c / s),
                _ => "-".into(),
            }
        );
    }
    let (b_floor, b_node) = median_by(b_rounds, |(_, n)| n.p99.unwrap_or(f64::MAX));
    println!(
        "\nnode p99 at {} req/s (median round): {} ms, floor {} ms  (DESIGN.md §7 target: < 1 ms)",
        settings.rate,
        fmt_ms(b_node.p99),
        fmt_ms(b_floor.p99)
    );

    // Phase C.
    println!(
        "\n## Phase C: memory per resident entity ({} new users, one check each, default tier)\n",
        settings.mem_users
    );
    let mem = runtime.block_on(memory_phase(&client, &node_url, node.pid(), settings.mem_users))?;
    node.ensure_alive()?;
    mem.print();

    // Stop both; the node flushes its counters on SIGTERM.
    let node_status = node.stop(Duration::from_secs(30))?;
    let echo_status = echo.stop(Duration::from_secs(10))?;
    println!(
        "\nstopped: node {}, echo {}",
        node_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        echo_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
    );
    if node_status.is_some_and(|s| !s.success()) {
        println!(
            "WARNING: the node did not exit cleanly; its log:\n{}",
            tail(&node_log, 40)
        );
    }
    print_node_warnings("node", &node_log);

    print_summary(settings, &oha_version, &a_floor, &a_node, &b_floor, &b_node, &mem);
    let plots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/plots");
    std::fs::create_dir_all(&plots).context("creating benches/plots")?;
    plot::throughput(
        &plots.join("load-throughput.svg"),
        &format!(
            "Warm checks, oha -c {CONNECTIONS}, median of {} rounds",
            settings.rounds
        ),
        &[
            ("floor (axum echo)", a_floor.ok_per_sec()),
            ("tollgate /v1/check", a_node.ok_per_sec()),
        ],
    )?;
    plot::latency(
        &plots.join("load-latency.svg"),
        &format!("Latency at {} req/s (median round)", settings.rate),
        &[("floor (axum echo)", &b_floor), ("tollgate /v1/check", &b_node)],
    )?;
    println!("plots: {}/load-throughput.svg, load-latency.svg", plots.display());
    drop(dir);
    Ok(())
}

/// Runs `rounds` interleaved floor/node rounds and prints every run.
fn run_rounds(
    rounds: usize,
    mut round: impl FnMut(usize) -> Result<(OhaResult, OhaResult)>,
) -> Result<Vec<(OhaResult, OhaResult)>> {
    let results = (1..=rounds).map(&mut round).collect::<Result<Vec<_>>>()?;
    let table: Vec<Vec<OhaResult>> = results.iter().map(|(f, n)| vec![f.clone(), n.clone()]).collect();
    print_rounds(&["floor, axum echo POST /echo", "tollgate POST /v1/check"], &table);
    Ok(results)
}
