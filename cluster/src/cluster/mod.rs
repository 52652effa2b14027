//! [`Cluster`]: N real `tollgate serve` processes on loopback, one scratch
//! database, and the faults a scenario injects into them.
//!
//! Start-up, join, kill, leave and restart are in `lifecycle`; views,
//! convergence, partitions and ownership queries in `membership`.

mod lifecycle;
mod membership;

pub use membership::OwnerRow;

use crate::api::{Api, http_client};
use crate::db::ScratchDb;
use crate::error::{HarnessError, Result};
use crate::process::{NodeProcess, NodeSpec, log_tail};
use crate::targets::Targets;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Which database the nodes share.
#[derive(Debug, Clone)]
pub enum DatabaseChoice {
    /// A fresh `tollgate_cluster_<uuid>` database created on this server
    /// and dropped with the cluster.
    Scratch { server_url: String },
    /// This database, as is (kept afterwards).
    Existing { url: String },
}

/// How a cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Pass the cluster flags (`--node-id`, `--gossip-addr`, …). Without
    /// them a node runs single-node, as today's binary does.
    pub cluster: bool,
    /// Start nodes with `--enable-fault-injection` (partitions).
    pub fault_injection: bool,
    pub database: DatabaseChoice,
    pub flush_interval_ms: u64,
    /// `TOLLGATE_LOG` for every node.
    pub log_filter: String,
    /// How long start-up, joins and convergence may take.
    pub ready_timeout: Duration,
    /// How long a SIGTERM-ed node may take to hand off and exit.
    pub leave_timeout: Duration,
    /// Per-request timeout of the harness's HTTP client.
    pub request_timeout: Duration,
    /// Extra `serve` arguments for every node.
    pub extra_args: Vec<String>,
    /// Keep the node logs after the cluster is dropped.
    pub keep_logs: bool,
    /// The admin token of every node (random when `None`).
    pub admin_token: Option<String>,
    /// Fixed ports: node `i` (from 0) gets HTTP `base + i`, RPC
    /// `base + 100 + i`, gossip `base + 200 + i`. Free ports otherwise.
    pub base_port: Option<u16>,
}

impl ClusterOpts {
    /// Cluster mode with fault injection, on a scratch database of `server_url`.
    pub fn cluster(server_url: &str) -> Self {
        ClusterOpts {
            cluster: true,
            fault_injection: true,
            ..Self::single(server_url)
        }
    }

    /// One node without cluster flags, on a scratch database of `server_url`.
    pub fn single(server_url: &str) -> Self {
        ClusterOpts {
            cluster: false,
            fault_injection: false,
            database: DatabaseChoice::Scratch {
                server_url: server_url.to_string(),
            },
            flush_interval_ms: 100,
            log_filter: "info".to_string(),
            ready_timeout: Duration::from_secs(60),
            leave_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            extra_args: Vec::new(),
            keep_logs: std::env::var_os("TOLLGATE_CLUSTER_KEEP_LOGS").is_some(),
            admin_token: None,
            base_port: None,
        }
    }
}

/// A node's place in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Member,
    /// Started with the members' addresses but its own secret and database:
    /// never a target, never expected in a view.
    Outsider,
}

#[derive(Debug)]
struct Slot {
    spec: NodeSpec,
    role: Role,
    process: Option<NodeProcess>,
    /// Successful starts so far (a restarted node keeps its addresses).
    starts: u32,
    log: PathBuf,
    api: Api,
}

#[derive(Debug)]
enum LogDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl LogDir {
    fn path(&self) -> &Path {
        match self {
            LogDir::Temp(t) => t.path(),
            LogDir::Kept(p) => p,
        }
    }
}

/// Running nodes and their shared database. Dropping it kills every node
/// (SIGKILL) and then drops the scratch databases.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: processes first, databases last.
    slots: Vec<Slot>,
    targets: Targets,
    binary: PathBuf,
    opts: ClusterOpts,
    secret: String,
    admin_token: String,
    http: reqwest::Client,
    database_url: String,
    log_dir: LogDir,
    extra_dbs: Vec<ScratchDb>,
    /// Held only to be dropped last, after every node is gone.
    _db: Option<ScratchDb>,
}

impl Cluster {
    /// Starts `n` nodes (`node-1` … `node-n`) and waits until every one is
    /// ready — in cluster mode, until each lists all `n` as `ready`.
    pub async fn start(binary: &Path, n: usize, opts: ClusterOpts) -> Result<Cluster> {
        if n == 0 {
            return Err(HarnessError::Config("a cluster needs at least one node".into()));
        }
        if !binary.is_file() {
            return Err(HarnessError::Config(format!(
                "no tollgate binary at {}",
                binary.display()
            )));
        }
        let (db, database_url) = match &opts.database {
            DatabaseChoice::Scratch { server_url } => {
                let db = ScratchDb::create(server_url).await?;
                let url = db.url().to_string();
                (Some(db), url)
            }
            DatabaseChoice::Existing { url } => (None, url.clone()),
        };
        migrate(binary, &database_url).await?;
        let dir = tempfile::Builder::new()
            .prefix("tollgate-cluster-")
            .tempdir()
            .map_err(|e| HarnessError::io("create log dir", e))?;
        let log_dir = if opts.keep_logs {
            LogDir::Kept(dir.keep())
        } else {
            LogDir::Temp(dir)
        };
        let http = http_client(opts.request_timeout)?;
        let mut cluster = Cluster {
            slots: Vec::new(),
            targets: Targets::default(),
            binary: binary.to_path_buf(),
            secret: format!("tg-cluster-{}", uuid::Uuid::new_v4().simple()),
            admin_token: opts
                .admin_token
                .clone()
                .unwrap_or_else(|| format!("tg-admin-{}", uuid::Uuid::new_v4().simple())),
            http,
            database_url,
            log_dir,
            extra_dbs: Vec::new(),
            _db: db,
            opts,
        };
        cluster.start_initial(n).await?;
        Ok(cluster)
    }

    /// Number of nodes ever started (members and outsiders).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether the nodes run with cluster flags.
    pub fn is_cluster(&self) -> bool {
        self.opts.cluster
    }

    pub fn opts(&self) -> &ClusterOpts {
        &self.opts
    }

    /// Node `i`'s id (`node-<i+1>`).
    pub fn id(&self, i: usize) -> &str {
        self.slots.get(i).map_or("?", |s| s.spec.id.as_str())
    }

    /// The ids of nodes `indexes`.
    pub fn ids(&self, indexes: &[usize]) -> Vec<String> {
        indexes.iter().map(|i| self.id(*i).to_string()).collect()
    }

    /// Node `i`'s start-up spec (addresses, flags).
    pub fn spec(&self, i: usize) -> Option<&NodeSpec> {
        self.slots.get(i).map(|s| &s.spec)
    }

    /// A client for node `i`.
    pub fn api(&self, i: usize) -> Result<&Api> {
        self.slots
            .get(i)
            .map(|s| &s.api)
            .ok_or_else(|| HarnessError::Config(format!("no node {i}")))
    }

    /// The process id of node `i`, if it is running.
    pub fn pid(&mut self, i: usize) -> Option<u32> {
        let slot = self.slots.get_mut(i)?;
        let proc = slot.process.as_mut()?;
        proc.try_exited().is_none().then(|| proc.pid())
    }

    /// The load-balancer pool load drivers send to.
    pub fn targets(&self) -> Targets {
        self.targets.clone()
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The cluster secret the members share.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn log_dir(&self) -> &Path {
        self.log_dir.path()
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> Option<&Path> {
        self.slots.get(i).map(|s| s.log.as_path())
    }

    /// Keeps the logs after the cluster is dropped; returns where they are.
    pub fn keep_logs(&mut self) -> PathBuf {
        let kept = match std::mem::replace(&mut self.log_dir, LogDir::Kept(PathBuf::new())) {
            LogDir::Temp(t) => t.keep(),
            LogDir::Kept(p) => p,
        };
        self.log_dir = LogDir::Kept(kept.clone());
        kept
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.slots
            .iter()
            .map(|s| {
                format!(
                    "--- {} ({}) ---\n{}\n",
                    s.spec.id,
                    s.log.display(),
                    log_tail(&s.log, lines)
                )
            })
            .collect()
    }

    /// A further scratch database on the same server, dropped with the
    /// cluster (for an outsider, which must not share the members' data).
    pub async fn scratch_database(&mut self) -> Result<String> {
        let server = match &self.opts.database {
            DatabaseChoice::Scratch { server_url } => server_url.clone(),
            DatabaseChoice::Existing { url } => url.clone(),
        };
        let db = ScratchDb::create(&server).await?;
        let url = db.url().to_string();
        migrate(&self.binary, &url).await?;
        self.extra_dbs.push(db);
        Ok(url)
    }

    /// `PUT` on every running member (tiers live in each node's catalogue,
    /// loaded at start-up and updated by a `PUT` on that node).
    pub async fn put_all(&mut self, path: &str, body: &serde_json::Value) -> Result<()> {
        for i in self.running_members() {
            self.slots[i].api.admin_put(path, body).await?;
        }
        Ok(())
    }
}

/// Whether `binary serve --help` mentions the cluster flags (the node side
/// of the cluster has landed).
pub async fn supports_cluster_flags(binary: &Path) -> Result<bool> {
    let out = tokio::process::Command::new(binary)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| HarnessError::io(format!("run {} serve --help", binary.display()), e))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("--cluster-secret"))
}

/// `tollgate migrate`, once, so that nodes starting together do not race.
pub async fn migrate(binary: &Path, database_url: &str) -> Result<()> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(["migrate", "--database-url", database_url])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TOLLGATE_") {
            cmd.env_remove(key);
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| HarnessError::Timeout("tollgate migrate".into()))?
        .map_err(|e| HarnessError::io("run tollgate migrate", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Node(format!(
            "tollgate migrate failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
