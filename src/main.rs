//! The `tollgate` command: `serve` runs a node, `migrate` prepares a database.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate::config::{DatabaseConfig, ServeConfig};
use tollgate::node::Node;
use tollgate::store::Store;
use tollgate::telemetry::logging::{self, LogFormat};

/// mimalloc: the check path allocates a few small buffers per request, and
/// glibc's malloc showed up at ~10 % of a loaded node's CPU profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tollgate decides whether each user, organisation or guest of a chat API
/// may send the next message and can afford it, and records what each model
/// call really cost.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    /// Log lines as text or JSON (filter with TOLLGATE_LOG or RUST_LOG).
    #[arg(long, global = true, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (HTTP API on --listen).
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(DatabaseConfig),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Flushes queued log lines when main returns.
    let _log_guard = logging::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Migrate(db) => {
                let store = Store::open_with(&db.database_url, db.store_options())
                    .await
                    .context("migrating the database")?;
                eprintln!("migrations applied ({})", store.backend());
                Ok(())
            }
        }
    })
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let node = Node::start(&config).await.context("starting the node")?;
    if let Some(file) = node.generated_admin_token_file() {
        // The path, never the token: logs are kept and shared.
        tracing::warn!(
            file = %file.display(),
            "no admin token was configured, so one was generated and written to this file (mode 0600); only its hash is stored. Use it as `Authorization: Bearer <token>`"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        ops_listen = ?node.ops_addr(),
        database = node.state().store.backend(),
        "tollgate serving"
    );
    node.serve(listener, shutdown_signal()).await.context("serving")?;
    tracing::info!("stopped cleanly; all counters flushed");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests, then flushing");
}
