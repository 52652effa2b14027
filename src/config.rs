//! Configuration: command-line flags with environment fallbacks.

use crate::alerts::AlertConfig;
use crate::identity::jwt::JwtConfig;
use clap::Args;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `--max-entities`: at about 8 KiB per resident entity (measured,
/// README "Sizing"), 100 000 entities are about 0.8 GiB, which fits a small
/// machine beside the database. Size it as (memory for Tollgate − ~50 MiB)
/// / 8 KiB.
pub const DEFAULT_MAX_ENTITIES: u64 = 100_000;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", default_value = "sqlite://tollgate.db")]
    pub database_url: String,

    /// Longest a request waits for the database (pool acquire and
    /// statement), in ms; past it the request gets 503 `store_unavailable`
    /// with `Retry-After`. Also the deadline of the health probe.
    #[arg(long, env = "TOLLGATE_DB_TIMEOUT_MS", default_value_t = crate::store::health::DEFAULT_DB_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub db_timeout_ms: u64,
}

impl DatabaseConfig {
    /// Defaults for `database_url` (tests, benches).
    pub fn for_url(database_url: &str) -> Self {
        DatabaseConfig {
            database_url: database_url.to_string(),
            db_timeout_ms: crate::store::health::DEFAULT_DB_TIMEOUT_MS,
        }
    }

    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            timeout: Duration::from_millis(self.db_timeout_ms),
        }
    }
}

/// Everything `tollgate serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub http: HttpConfig,

    /// Address of a second listener for operators: `/metrics`, `/healthz`,
    /// `/readyz` and `/v1/cluster*` without a credential (on --listen they
    /// need the admin credential). Bind it to loopback or a private
    /// network only, e.g. `127.0.0.1:9090`.
    #[arg(long, env = "TOLLGATE_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Answer `/readyz` with 503 while the database is unreachable. Off by
    /// default: a node whose database is down still serves warm checks
    /// from memory, and since every node shares the database, taking them
    /// all out of the load balancer would turn a partial outage into a
    /// full one.
    #[arg(long, env = "TOLLGATE_UNREADY_WHEN_STORE_DOWN")]
    pub unready_when_store_down: bool,

    /// Admin bearer token, at least 32 characters. If unset and none is
    /// stored yet, one is generated and written to --admin-token-file;
    /// only its hash is stored.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Where a generated admin token is written (mode 0600) [default:
    /// `tollgate-admin-token` next to the SQLite database, or in the
    /// working directory for Postgres].
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// How often request-counter deltas are written to the database (ms).
    /// A crash loses at most this much of request counts, never money.
    #[arg(long, env = "TOLLGATE_FLUSH_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub flush_interval_ms: u64,

    /// An entity unused this long leaves memory (its state is in the
    /// database) (seconds).
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_S", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_s: u64,

    /// Most entities resident at once, a hard cap: the least recently used
    /// leave memory first, and a new entity that finds no room (every
    /// resident one busy or holding a reservation) is refused with 503.
    /// An entity is about 8 KiB resident: the default is about 0.8 GiB.
    #[arg(long, env = "TOLLGATE_MAX_ENTITIES", default_value_t = DEFAULT_MAX_ENTITIES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entities: u64,

    /// How long an unsettled reservation holds its estimate (seconds).
    #[arg(long, env = "TOLLGATE_HOLD_TTL_S", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hold_ttl_s: u64,

    /// Proxies whose X-Forwarded-For is believed for guests' IPs
    /// (comma-separated IPs or CIDRs).
    #[arg(long, env = "TOLLGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// IPv6 guests are keyed by this prefix of their address (one
    /// subscriber normally holds a whole /64); 128 keys every address
    /// apart. IPv4 guests are always one address.
    #[arg(long, env = "TOLLGATE_GUEST_IPV6_PREFIX", default_value_t = crate::identity::guest::DEFAULT_IPV6_PREFIX, value_parser = clap::value_parser!(u8).range(32..=128))]
    pub guest_ipv6_prefix: u8,

    /// Most entities a guest (a caller without credentials) may bring into
    /// memory (or read from the store) per second, per client IP or IPv6
    /// network; beyond it they get 429. At least 2 (a guest check names
    /// its IP and fingerprint). Counted on the node the request arrives at.
    #[arg(long, env = "TOLLGATE_MAX_NEW_ENTITIES_PER_IP", default_value_t = crate::limits::new_entities::DEFAULT_PER_SECOND, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub max_new_entities_per_ip: u32,

    #[command(flatten)]
    pub jwt: JwtConfig,

    #[command(flatten)]
    pub cluster: ClusterConfig,

    #[command(flatten)]
    pub alerts: AlertConfig,

    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// How HTTP connections are bounded: every limit a slow or idle client
/// could otherwise stretch forever.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Longest wait for a request's header (seconds), counted from when the
    /// server starts waiting for it: a new connection, or the end of the
    /// previous response. A client that sends half a header is closed then.
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT_S", default_value_t = HttpConfig::HEADER_READ_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_read_timeout_s: u64,

    /// A connection on which no byte moved for this long is closed (after
    /// answering any request in flight) (seconds). At most
    /// --header-read-timeout-s, which also bounds the wait between two
    /// requests.
    #[arg(long, env = "TOLLGATE_KEEP_ALIVE_TIMEOUT_S", default_value_t = HttpConfig::KEEP_ALIVE_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub keep_alive_timeout_s: u64,

    /// A request not answered within this long (reading its body included)
    /// gets a 503 `timeout` (seconds).
    #[arg(long, env = "TOLLGATE_REQUEST_TIMEOUT_S", default_value_t = HttpConfig::REQUEST_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_s: u64,

    /// Most connections open at once, per listener. Beyond it new
    /// connections are not accepted: they wait in the kernel's listen
    /// backlog until one closes. Keep it under the open-file limit
    /// (`ulimit -n`).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = HttpConfig::MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// At shutdown, how long in-flight requests may take to finish before
    /// the remaining connections are dropped (seconds). Idle connections
    /// close at once.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE_S", default_value_t = HttpConfig::SHUTDOWN_GRACE_S, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub shutdown_grace_s: u64,
}

impl HttpConfig {
    /// Well within the 30 s a half-sent request may live, and generous for
    /// any real client (a header is one packet).
    pub const HEADER_READ_TIMEOUT_S: u64 = 10;
    /// Long enough for a backend's connection pool to reuse connections
    /// between bursts, short enough that idle sockets do not pile up.
    pub const KEEP_ALIVE_TIMEOUT_S: u64 = 5;
    /// Checks answer in milliseconds; 30 s means a stuck dependency, and
    /// the client should hear so rather than wait forever.
    pub const REQUEST_TIMEOUT_S: u64 = 30;
    /// A few thousand backends' pooled connections; below the usual
    /// 1 048 576 hard file limit, above the 1 024 soft default (raise it).
    pub const MAX_CONNECTIONS: u32 = 4096;
    /// Longer than any healthy request, shorter than a supervisor's kill
    /// timeout (systemd's default is 90 s).
    pub const SHUTDOWN_GRACE_S: u64 = 10;

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_s)
    }

    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_secs(self.keep_alive_timeout_s)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }

    /// Checks the limits against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.keep_alive_timeout_s > self.header_read_timeout_s {
            return Err(format!(
                "--keep-alive-timeout-s {} exceeds --header-read-timeout-s {}: the wait for the next request counts toward the header timeout",
                self.keep_alive_timeout_s, self.header_read_timeout_s
            ));
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_s: Self::HEADER_READ_TIMEOUT_S,
            keep_alive_timeout_s: Self::KEEP_ALIVE_TIMEOUT_S,
            request_timeout_s: Self::REQUEST_TIMEOUT_S,
            max_connections: Self::MAX_CONNECTIONS,
            shutdown_grace_s: Self::SHUTDOWN_GRACE_S,
        }
    }
}

/// Cluster membership. None of these set: a single node.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterConfig {
    /// This node's id in the cluster (unique, stable across restarts).
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    pub node_id: Option<String>,

    /// UDP address gossip binds and advertises (reachable by peers).
    #[arg(long, env = "TOLLGATE_GOSSIP_ADDR")]
    pub gossip_addr: Option<SocketAddr>,

    /// TCP address of the internal RPC (reachable by peers).
    #[arg(long, env = "TOLLGATE_RPC_ADDR")]
    pub rpc_addr: Option<SocketAddr>,

    /// Gossip addresses of nodes to join through (comma-separated).
    #[arg(long, env = "TOLLGATE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// Shared secret that authenticates gossip and RPC (at least 16 bytes).
    /// Required as soon as any cluster flag is set.
    #[arg(long, env = "TOLLGATE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// HTTP address peers and clients should use for this node (default:
    /// --listen).
    #[arg(long, env = "TOLLGATE_ADVERTISE_HTTP")]
    pub advertise_http: Option<SocketAddr>,

    /// Test only: enables `PUT /v1/cluster/faults`, which cuts this node
    /// off from named peers to simulate partitions.
    #[arg(long, hide = true)]
    pub enable_fault_injection: bool,
}

impl ClusterConfig {
    /// Is any cluster flag set?
    pub fn enabled(&self) -> bool {
        self.node_id.is_some()
            || self.gossip_addr.is_some()
            || self.rpc_addr.is_some()
            || !self.seeds.is_empty()
            || self.cluster_secret.is_some()
    }

    /// Checks that a cluster configuration is complete and usable.
    pub fn validate(&self, listen: SocketAddr, database_url: &str) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("--node-id", self.node_id.is_none()),
            ("--gossip-addr", self.gossip_addr.is_none()),
            ("--rpc-addr", self.rpc_addr.is_none()),
            ("--cluster-secret", self.cluster_secret.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, absent)| absent.then_some(flag))
        .collect();
        if !missing.is_empty() {
            return Err(format!("a cluster node also needs {}", missing.join(", ")));
        }
        if !database_url.starts_with("postgres") {
            return Err("a cluster needs a shared Postgres database (--database-url postgres://…)".into());
        }
        let http = self.advertise_http.unwrap_or(listen);
        if http.port() == 0 || http.ip().is_unspecified() {
            return Err(format!(
                "peers cannot reach HTTP address {http}: set --listen to a concrete address or use --advertise-http"
            ));
        }
        for (flag, addr) in [("--gossip-addr", self.gossip_addr), ("--rpc-addr", self.rpc_addr)] {
            if let Some(addr) = addr
                && (addr.port() == 0 || addr.ip().is_unspecified())
            {
                return Err(format!("{flag} {addr}: peers need a concrete address and port"));
            }
        }
        Ok(())
    }
}

impl ServeConfig {
    /// Defaults for a node on `database_url` (tests, benches).
    pub fn for_database(database_url: &str) -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: HttpConfig::default(),
            ops_listen: None,
            database: DatabaseConfig::for_url(database_url),
            unready_when_store_down: false,
            admin_token: None,
            admin_token_file: None,
            flush_interval_ms: 500,
            idle_timeout_s: 300,
            max_entities: DEFAULT_MAX_ENTITIES,
            hold_ttl_s: 900,
            trusted_proxies: Vec::new(),
            guest_ipv6_prefix: crate::identity::guest::DEFAULT_IPV6_PREFIX,
            max_new_entities_per_ip: crate::limits::new_entities::DEFAULT_PER_SECOND,
            jwt: JwtConfig::disabled(),
            cluster: ClusterConfig::default(),
            alerts: AlertConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
        }
    }

    /// Where a generated admin token goes (see `--admin-token-file`).
    pub fn admin_token_file(&self) -> PathBuf {
        const NAME: &str = "tollgate-admin-token";
        if let Some(path) = &self.admin_token_file {
            return path.clone();
        }
        let url = &self.database.database_url;
        let sqlite_file = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        match sqlite_file.map(|f| f.split('?').next().unwrap_or(f)) {
            Some(file) if !file.is_empty() && !file.contains(":memory:") => {
                Path::new(file).parent().unwrap_or(Path::new("")).join(NAME)
            }
            _ => PathBuf::from(NAME),
        }
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpConfig,
    }

    #[test]
    fn http_defaults_match_the_flags_and_bound_slow_clients() {
        let Ok(Cli { http }) = Cli::try_parse_from(["tollgate"]) else {
            panic!("no flags must parse")
        };
        let default = HttpConfig::default();
        assert_eq!(http.header_read_timeout_s, default.header_read_timeout_s);
        assert_eq!(http.keep_alive_timeout_s, default.keep_alive_timeout_s);
        assert_eq!(http.request_timeout_s, default.request_timeout_s);
        assert_eq!(http.max_connections, default.max_connections);
        assert_eq!(http.shutdown_grace_s, default.shutdown_grace_s);
        // Issue 8: a half-sent request is closed within 30 s.
        assert!(default.header_read_timeout() <= Duration::from_secs(30));
        assert_eq!(default.validate(), Ok(()));
    }

    #[test]
    fn the_admin_token_file_sits_next_to_the_sqlite_database() {
        let at = |url: &str| ServeConfig::for_database(url).admin_token_file();
        assert_eq!(
            at("sqlite:///var/lib/tollgate/t.db"),
            PathBuf::from("/var/lib/tollgate/tollgate-admin-token")
        );
        assert_eq!(at("sqlite://t.db?mode=rwc"), PathBuf::from("tollgate-admin-token"));
        assert_eq!(at("postgres://db/tollgate"), PathBuf::from("tollgate-admin-token"));
        let mut chosen = ServeConfig::for_database("sqlite://t.db");
        chosen.admin_token_file = Some(PathBuf::from("/run/secret"));
        assert_eq!(chosen.admin_token_file(), PathBuf::from("/run/secret"));
    }

    #[test]
    fn keep_alive_may_not_outlast_the_header_timeout() {
        let http = HttpConfig {
            keep_alive_timeout_s: 20,
            header_read_timeout_s: 10,
            ..HttpConfig::default()
        };
        assert!(http.validate().is_err());
    }
}
