//! The cluster mode (`TOLLGATE_BENCH_MODE=cluster`): three clustered nodes
//! and one single node on loopback, each set on a fresh Postgres database,
//! measured in the same run.
//!
//! - Throughput: three oha processes at once (64 connections split
//!   22/21/21), a random user of 10 000 per request; for 1 node all three
//!   send to the single node, for 3 nodes each sends to its own cluster node
//!   (≈ 2/3 of those checks are forwarded to their owner). Interleaved
//!   rounds, median of the 3-node/1-node ratio.
//! - Latency, local vs forwarded: at a fixed moderate rate
//!   (`TOLLGATE_BENCH_CLUSTER_RATE`, default 2000 req/s), checks sent to
//!   node-1 for users it owns (local) and for users node-2 or node-3 own
//!   (forwarded), plus the single node as a reference. Interleaved rounds;
//!   the reported figure is the median over rounds of
//!   p50(forwarded) − p50(local), against the 150 µs target.
//!
//! Knobs besides the shared ones: `TOLLGATE_BENCH_CLUSTER_RATE`,
//! `TOLLGATE_BENCH_LATENCY_ROUNDS` (default 5) and
//! `TOLLGATE_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`: the server the databases
//! are created on and dropped from).

use crate::api::{assign_and_warm, put_tier, setup_users, write_bodies, write_user_bodies};
use crate::cluster_api::{forwarded_admits, owners, wait_cluster_ready};
use crate::cluster_report::{LatencyRound, Report, ThroughputRound};
use crate::oha::{OhaResult, OhaRun, run_oha_concurrently};
use crate::postgres::{FreshDatabase, server_url};
use crate::procs::{
    ChildGuard, find_oha_with_version, free_port, free_udp_port, node_command, wait_healthy, work_dir_and_runtime,
};
use crate::{CONNECTIONS, SETUP_IN_FLIGHT, Settings, TIER, USERS, env_num};
use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const NODE_NAMES: [&str; NODES] = ["cluster node-1", "cluster node-2", "cluster node-3"];
const CLUSTER_SECRET: &str = "tollgate-bench-cluster-secret";
/// Connections per oha run in the latency phase: at 2000 req/s and well
/// under a millisecond each, one or two are busy at a time.
pub const LATENCY_CONNECTIONS: u32 = 16;

pub struct ClusterSettings {
    pub rate: u32,
    pub latency_rounds: usize,
}

pub fn run(settings: &Settings) -> Result<()> {
    let cs = ClusterSettings {
        rate: env_num("TOLLGATE_BENCH_CLUSTER_RATE", 2_000)?,
        latency_rounds: env_num("TOLLGATE_BENCH_LATENCY_ROUNDS", 5)?,
    };
    if cs.rate == 0 || cs.latency_rounds == 0 {
        bail!("TOLLGATE_BENCH_CLUSTER_RATE and TOLLGATE_BENCH_LATENCY_ROUNDS must be positive");
    }
    let (oha, oha_version) = find_oha_with_version()?;
    let (dir, runtime) = work_dir_and_runtime("tollgate-cluster-")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below the node's --keep-alive-timeout-s (5 s).
        .pool_idle_timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(SETUP_IN_FLIGHT)
        .build()?;

    // Databases first: dropped last, after the nodes (declared later) stop.
    let server = server_url();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut cluster_db = runtime.block_on(FreshDatabase::create(&server, &run_id, "cluster"))?;
    let mut single_db = runtime.block_on(FreshDatabase::create(&server, &run_id, "single"))?;

    // The cluster: every node seeds from the other two.
    let http: Vec<SocketAddr> = (0..NODES).map(|_| Ok(loopback(free_port()?))).collect::<Result<_>>()?;
    let gossip: Vec<SocketAddr> = (0..NODES)
        .map(|_| Ok(loopback(free_udp_port()?)))
        .collect::<Result<_>>()?;
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let seeds: Vec<String> = (0..NODES).filter(|&j| j != i).map(|j| gossip[j].to_string()).collect();
        let mut args = vec![
            "--node-id".to_string(),
            format!("node-{}", i + 1),
            "--gossip-addr".to_string(),
            gossip[i].to_string(),
            "--rpc-addr".to_string(),
            loopback(free_port()?).to_string(),
            "--seeds".to_string(),
            seeds.join(","),
            "--cluster-secret".to_string(),
            CLUSTER_SECRET.to_string(),
        ];
        args.extend(settings.node_args.iter().cloned());
        let log = dir.path().join(format!("node-{}.log", i + 1));
        nodes.push(ChildGuard::spawn(
            NODE_NAMES[i],
            node_command(http[i], cluster_db.url(), &args),
            log,
        )?);
    }
    // The single node, for the 1-node figures.
    let single_addr = loopback(free_port()?);
    let single_cmd = node_command(single_addr, single_db.url(), &settings.node_args);
    let mut single = ChildGuard::spawn("single node", single_cmd, dir.path().join("single.log"))?;

    let urls: Vec<String> = http.iter().map(|a| format!("http://{a}")).collect();
    let single_url = format!("http://{single_addr}");
    println!(
        "tollgate load bench, cluster mode: {oha_version}; work dir {}",
        dir.path().display()
    );
    for (node, addr) in nodes.iter().zip(&http) {
        println!(
            "  {} pid {} on {addr}, log {}",
            node.name(),
            node.pid(),
            node.log().display()
        );
    }
    println!(
        "  single node pid {} on {single_addr}, log {}",
        single.pid(),
        single.log().display()
    );
    println!(
        "  databases {} and {} on {}",
        cluster_db.name(),
        single_db.name(),
        redact(&server)
    );
    if !settings.node_args.is_empty() {
        println!("  extra node arguments: {}", settings.node_args.join(" "));
    }

    let started = Instant::now();
    runtime.block_on(async {
        for (node, url) in nodes.iter_mut().zip(&urls) {
            wait_healthy(&client, url, node).await?;
        }
        wait_healthy(&client, &single_url, &mut single).await?;
        wait_cluster_ready(&client, &urls, &mut nodes).await
    })?;
    println!(
        "cluster: {NODES} nodes ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Tier and users. Each node keeps its own tier catalogue, loaded at
    // start, so the tier goes to every node; users are assigned and warmed
    // through node-1 (forwarded to their owners).
    let started = Instant::now();
    runtime.block_on(async {
        for url in &urls {
            put_tier(&client, url).await?;
        }
        assign_and_warm(&client, &urls[0]).await?;
        setup_users(&client, &single_url).await
    })?;
    println!(
        "setup: tier {TIER:?} + {USERS} users assigned and warmed on the cluster and on the single node in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Who owns whom, as node-1 sees it; spot-checked on the other nodes.
    let owners = runtime.block_on(owners(&client, &urls))?;
    let count = |id: &str| owners.iter().filter(|o| o.as_str() == id).count();
    println!(
        "ownership: node-1 {}, node-2 {}, node-3 {} of {USERS} users",
        count("node-1"),
        count("node-2"),
        count("node-3")
    );
    let all_bodies = dir.path().join("bodies-all.txt");
    let local_bodies = dir.path().join("bodies-local.txt");
    let forwarded_bodies = dir.path().join("bodies-forwarded.txt");
    write_bodies(&all_bodies, "u", USERS)?;
    let owned = |local: bool| {
        let owners = &owners;
        (0..USERS)
            .filter(move |&i| (owners[i] == "node-1") == local)
            .map(|i| format!("u{i}"))
    };
    write_user_bodies(&local_bodies, owned(true))?;
    write_user_bodies(&forwarded_bodies, owned(false))?;
    if count("node-1") == 0 || count("node-1") == USERS {
        bail!(
            "node-1 owns {} of {USERS} users: no local/forwarded split",
            count("node-1")
        );
    }

    let correction = settings.latency_correction;
    // One oha per target at once, the connections split between them.
    let load = |targets: &[&str], bodies: &Path, rate: Option<u32>, secs: u64, tag: &str| -> Result<Vec<OhaResult>> {
        let total = if rate.is_some() {
            LATENCY_CONNECTIONS
        } else {
            CONNECTIONS
        };
        let n = targets.len() as u32;
        let runs: Vec<OhaRun> = targets
            .iter()
            .enumerate()
            .map(|(i, url)| OhaRun {
                url: format!("{url}/v1/check"),
                bodies,
                connections: total / n + u32::from((i as u32) < total % n),
                secs,
                requests: None,
                rate: rate.map(|r| (r, correction)),
                out: dir.path().join(format!("oha-{tag}-{i}.json")),
            })
            .collect();
        run_oha_concurrently(&oha, &runs)
    };
    let forwarded = |urls: &[String]| runtime.block_on(forwarded_admits(&client, urls));
    let single3 = [single_url.as_str(); NODES];
    let cluster3: Vec<&str> = urls.iter().map(String::as_str).collect();
    let node1 = [urls[0].as_str()];

    // Warm-up runs (not reported).
    load(&single3, &all_bodies, None, 2, "warmup-single")?;
    load(&cluster3, &all_bodies, None, 2, "warmup-cluster")?;
    load(&node1, &local_bodies, Some(cs.rate), 2, "warmup-local")?;
    load(&node1, &forwarded_bodies, Some(cs.rate), 2, "warmup-forwarded")?;
    alive(&mut nodes, &mut single)?;

    let mut report = Report::new(
        settings,
        &cs,
        &oha_version,
        [count("node-1"), count("node-2"), count("node-3")],
    );
    report.throughput_header();
    for round in 1..=settings.rounds {
        let one = OhaResult::concurrent(&load(
            &single3,
            &all_bodies,
            None,
            settings.secs,
            &format!("t{round}-1"),
        )?);
        alive(&mut nodes, &mut single)?;
        let before = forwarded(&urls);
        let parts = load(&cluster3, &all_bodies, None, settings.secs, &format!("t{round}-3"))?;
        let after = forwarded(&urls);
        alive(&mut nodes, &mut single)?;
        report.throughput.push(ThroughputRound {
            one,
            three: OhaResult::concurrent(&parts),
            parts,
            forwarded: after.zip(before).map(|(a, b)| a.saturating_sub(b)),
        });
    }
    report.throughput_results();

    report.latency_header();
    let node1_url = std::slice::from_ref(&urls[0]);
    for round in 1..=cs.latency_rounds {
        let mut runs = Vec::with_capacity(2);
        for (bodies, tag) in [(&local_bodies, "local"), (&forwarded_bodies, "forwarded")] {
            let before = forwarded(node1_url);
            let mut result = load(&node1, bodies, Some(cs.rate), settings.secs, &format!("l{round}-{tag}"))?;
            let after = forwarded(node1_url);
            alive(&mut nodes, &mut single)?;
            runs.push((result.remove(0), after.zip(before).map(|(a, b)| a.saturating_sub(b))));
        }
        let mut reference = load(
            &[&single_url],
            &all_bodies,
            Some(cs.rate),
            settings.secs,
            &format!("l{round}-1"),
        )?;
        alive(&mut nodes, &mut single)?;
        let (forwarded_run, forwarded_ops) = runs.remove(1);
        let (local_run, local_ops) = runs.remove(0);
        report.latency.push(LatencyRound {
            local: local_run,
            local_forwarded_ops: local_ops,
            forwarded: forwarded_run,
            forwarded_ops,
            single: reference.remove(0),
        });
    }
    report.latency_results();

    // Stop: the cluster one node at a time (each leaves gracefully and
    // hands its entities over), then the single node; then the databases.
    let mut stopped = Vec::new();
    for node in nodes.iter_mut().rev() {
        stopped.push((
            node.name(),
            node.stop(Duration::from_secs(30))?,
            node.log().to_path_buf(),
        ));
    }
    stopped.push((
        single.name(),
        single.stop(Duration::from_secs(30))?,
        single.log().to_path_buf(),
    ));
    stopped.reverse();
    report.stopped(&stopped);
    runtime.block_on(async {
        cluster_db.drop_database().await?;
        single_db.drop_database().await
    })?;
    println!("dropped databases {} and {}", cluster_db.name(), single_db.name());
    report.summary();
    drop(dir);
    Ok(())
}

fn alive(nodes: &mut [ChildGuard], single: &mut ChildGuard) -> Result<()> {
    nodes.iter_mut().try_for_each(ChildGuard::ensure_alive)?;
    single.ensure_alive()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The server URL without a password, for printing.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}
