//! Configuration: command-line flags with environment fallbacks.

use crate::identity::jwt::JwtConfig;
use clap::Args;
use ipnet::IpNet;
use std::net::SocketAddr;
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
            database: DatabaseConfig {
                database_url: database_url.to_string(),
            },
            admin_token: None,
            flush_interval_ms: 500,
            idle_timeout_s: 300,
            max_entities: DEFAULT_MAX_ENTITIES,
            hold_ttl_s: 900,
            trusted_proxies: Vec::new(),
            guest_ipv6_prefix: crate::identity::guest::DEFAULT_IPV6_PREFIX,
            max_new_entities_per_ip: crate::limits::new_entities::DEFAULT_PER_SECOND,
            jwt: JwtConfig::disabled(),
            cluster: ClusterConfig::default(),
        }
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}
