//! Configuration: command-line flags with environment fallbacks.

use crate::identity::jwt::JwtConfig;
use clap::Args;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", default_value = "sqlite://tollgate.db")]
    pub database_url: String,
}

/// Everything `tollgate serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Admin bearer token. If unset and none is stored yet, one is
    /// generated, printed once to stderr, and only its hash stored.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// How often request-counter deltas are written to the database (ms).
    /// A crash loses at most this much of request counts, never money.
    #[arg(long, env = "TOLLGATE_FLUSH_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub flush_interval_ms: u64,

    /// An entity unused this long leaves memory (its state is in the
    /// database) (seconds).
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_S", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_s: u64,

    /// Most entities resident at once; beyond it the least recently used
    /// leave memory first.
    #[arg(long, env = "TOLLGATE_MAX_ENTITIES", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entities: u64,

    /// How long an unsettled reservation holds its estimate (seconds).
    #[arg(long, env = "TOLLGATE_HOLD_TTL_S", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hold_ttl_s: u64,

    /// Proxies whose X-Forwarded-For is believed for guests' IPs
    /// (comma-separated IPs or CIDRs).
    #[arg(long, env = "TOLLGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    #[command(flatten)]
    pub jwt: JwtConfig,
}

impl ServeConfig {
    /// Defaults for a node on `database_url` (tests, benches).
    pub fn for_database(database_url: &str) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: DatabaseConfig {
                database_url: database_url.to_string(),
            },
            admin_token: None,
            flush_interval_ms: 500,
            idle_timeout_s: 300,
            max_entities: 1_000_000,
            hold_ttl_s: 900,
            trusted_proxies: Vec::new(),
            jwt: JwtConfig::disabled(),
        }
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}
