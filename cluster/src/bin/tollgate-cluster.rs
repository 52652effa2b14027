//! `tollgate-cluster`: run N Tollgate nodes on loopback (`up`), or run the
//! fault-injection scenarios (`scenarios [--long]`). See cluster/README.md.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_cluster::cluster::{Cluster, ClusterOpts, DatabaseChoice, supports_cluster_flags};
use tollgate_cluster::report::table;
use tollgate_cluster::scenarios::{Env, Params, Scenario, run_all};

#[derive(Debug, Parser)]
#[command(version, about = "Fault-injection harness for Tollgate clusters")]
struct Cli {
    /// The `tollgate` binary to start (build it with `cargo build --release`).
    #[arg(long, global = true, default_value = "target/release/tollgate")]
    tollgate: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N nodes on loopback and print their addresses; Ctrl-C stops
    /// them gracefully (SIGTERM each).
    Up(UpArgs),
    /// Run the scenarios and print a table of figures.
    Scenarios(ScenarioArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// How many nodes.
    #[arg(default_value_t = 3)]
    nodes: usize,
    /// Postgres database the nodes share (used as is, kept afterwards).
    #[arg(
        long,
        env = "TOLLGATE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Create a scratch database on that server instead, dropped on exit.
    #[arg(long)]
    fresh: bool,
    /// Fixed ports: node i (from 0) gets HTTP base+i, RPC base+100+i,
    /// gossip base+200+i. Free ports otherwise.
    #[arg(long)]
    base_port: Option<u16>,
    /// Admin token for every node (generated and printed otherwise).
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Start nodes with --enable-fault-injection (PUT /v1/cluster/faults).
    #[arg(long)]
    fault_injection: bool,
    /// Run without cluster flags (one node, for a binary without them).
    #[arg(long)]
    single: bool,
    #[arg(long, default_value_t = 500)]
    flush_interval_ms: u64,
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// Longer load phases, more load, a 20 s partition.
    #[arg(long)]
    long: bool,
    /// Run only these scenarios (repeatable); all by default.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Postgres server on which each scenario creates its scratch database.
    #[arg(
        long,
        env = "TOLLGATE_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_CLUSTER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up(cli.tollgate, args).await,
            Command::Scenarios(args) => scenarios(cli.tollgate, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(binary: PathBuf, args: UpArgs) -> anyhow::Result<ExitCode> {
    let cluster_mode = !args.single;
    if cluster_mode && !supports_cluster_flags(&binary).await? {
        bail!(
            "{} serve has no --cluster-secret: build the cluster branch, or pass --single",
            binary.display()
        );
    }
    let mut opts = if cluster_mode {
        ClusterOpts::cluster(&args.database_url)
    } else {
        ClusterOpts::single(&args.database_url)
    };
    opts.fault_injection = args.fault_injection;
    opts.flush_interval_ms = args.flush_interval_ms;
    opts.base_port = args.base_port;
    opts.admin_token = args.admin_token;
    opts.keep_logs = true;
    if !args.fresh {
        opts.database = DatabaseChoice::Existing { url: args.database_url };
    }
    let mut cluster = Cluster::start(&binary, args.nodes, opts)
        .await
        .context("starting the nodes")?;
    println!(
        "{} node(s) up{}; database {}",
        args.nodes,
        if cluster_mode { " and ready as one cluster" } else { "" },
        cluster.database_url()
    );
    for i in 0..cluster.len() {
        let pid = cluster.pid(i).map_or("-".into(), |p| p.to_string());
        if let Some(spec) = cluster.spec(i) {
            let (gossip, rpc) = spec
                .cluster
                .as_ref()
                .map_or(("-".into(), "-".into()), |c| (c.gossip.to_string(), c.rpc.to_string()));
            println!(
                "  {:<8} http://{}  gossip {gossip}  rpc {rpc}  pid {pid}",
                spec.id, spec.http
            );
        }
    }
    println!("admin token: {}", cluster.admin_token());
    println!("logs: {}", cluster.log_dir().display());
    if let Some(first) = cluster.spec(0) {
        // `/v1/cluster` needs the admin credential on the public listener.
        println!(
            "try:  curl -s -H 'Authorization: Bearer {}' http://{}/v1/cluster",
            cluster.admin_token(),
            first.http
        );
    }
    println!("Ctrl-C (or SIGTERM) stops every node gracefully.");
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    let mut clean = true;
    for (id, status) in cluster.shutdown().await {
        match status {
            Ok(s) => {
                clean &= s.success();
                println!("{id} exited: {s}");
            }
            Err(e) => {
                clean = false;
                println!("{id}: {e}");
            }
        }
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn scenarios(binary: PathBuf, args: ScenarioArgs) -> anyhow::Result<ExitCode> {
    let mut selected = Vec::new();
    for name in &args.only {
        match Scenario::from_name(name) {
            Some(s) => selected.push(s),
            None => {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                bail!("no scenario {name:?}; there are: {}", names.join(", "));
            }
        }
    }
    if selected.is_empty() {
        selected = Scenario::ALL.to_vec();
    }
    let env = Env {
        binary,
        server_url: args.database_url,
    };
    let params = if args.long { Params::long() } else { Params::short() };
    let reports = run_all(&env, &params, &selected).await?;
    println!("\n{}", table(&reports));
    if reports.iter().all(|r| r.ok()) {
        Ok(ExitCode::SUCCESS)
    } else {
        for r in reports.iter().filter(|r| !r.ok()) {
            println!("{} failed:\n{}", r.name, r.failures());
        }
        Ok(ExitCode::FAILURE)
    }
}
