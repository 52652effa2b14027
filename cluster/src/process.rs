//! One `tollgate serve` process: its command line, its log file, signals.

use crate::error::{HarnessError, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Everything a node is started with.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub http: SocketAddr,
    /// Cluster flags, absent for a single node started without them.
    pub cluster: Option<ClusterFlags>,
    pub database_url: String,
    pub admin_token: String,
    pub flush_interval_ms: u64,
    /// `TOLLGATE_LOG` for the node.
    pub log_filter: String,
    /// Appended to the command line as given.
    pub extra_args: Vec<String>,
}

/// `--node-id` and friends.
#[derive(Debug, Clone)]
pub struct ClusterFlags {
    pub gossip: SocketAddr,
    pub rpc: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub secret: String,
    pub fault_injection: bool,
}

impl NodeSpec {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The arguments after the binary.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            self.http.to_string(),
            "--database-url".into(),
            self.database_url.clone(),
            "--admin-token".into(),
            self.admin_token.clone(),
            "--flush-interval-ms".into(),
            self.flush_interval_ms.to_string(),
        ];
        if let Some(c) = &self.cluster {
            args.extend(["--node-id".into(), self.id.clone()]);
            args.extend(["--gossip-addr".into(), c.gossip.to_string()]);
            args.extend(["--rpc-addr".into(), c.rpc.to_string()]);
            if !c.seeds.is_empty() {
                let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
                args.extend(["--seeds".into(), seeds.join(",")]);
            }
            args.extend(["--cluster-secret".into(), c.secret.clone()]);
            if c.fault_injection {
                args.push("--enable-fault-injection".into());
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The command line with secrets masked, for logs and `up`.
    pub fn display_args(&self) -> String {
        let mut out = Vec::new();
        let mut mask = false;
        for a in self.args() {
            out.push(if mask { "***".to_string() } else { a.clone() });
            mask = a == "--admin-token" || a == "--cluster-secret";
        }
        out.join(" ")
    }
}

/// A running (or exited) node process whose stdout and stderr go to a file.
#[derive(Debug)]
pub struct NodeProcess {
    child: tokio::process::Child,
    pid: u32,
    exited: Option<ExitStatus>,
}

impl NodeProcess {
    /// Starts `binary` with `spec`, appending its output to `log`.
    pub fn spawn(binary: &Path, spec: &NodeSpec, log: &Path) -> Result<NodeProcess> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| HarnessError::io(format!("open {}", log.display()), e))?;
        let _ = writeln!(file, "=== harness: starting {} ({})", spec.id, spec.display_args());
        let err = file.try_clone().map_err(|e| HarnessError::io("clone log handle", e))?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        // The node must see only what the harness gives it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TOLLGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("TOLLGATE_LOG", &spec.log_filter);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawn {}", binary.display()), e))?;
        let pid = child
            .id()
            .ok_or_else(|| HarnessError::Node(format!("{} exited at once", spec.id)))?;
        Ok(NodeProcess {
            child,
            pid,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has exited (reaping it).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        if self.try_exited().is_some() {
            return Err(HarnessError::Node(format!("pid {} has already exited", self.pid)));
        }
        let pid = libc::pid_t::try_from(self.pid)
            .map_err(|_| HarnessError::Node(format!("pid {} out of range", self.pid)))?;
        // SAFETY: kill(2) on our own child, which has not been reaped yet
        // (checked just above), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(HarnessError::io(
                format!("kill({pid}, {signal})"),
                std::io::Error::last_os_error(),
            ))
        }
    }

    /// Waits for the exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exited() {
            return Ok(status);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exited = Some(status);
                Ok(status)
            }
            Ok(Err(e)) => Err(HarnessError::io(format!("wait for pid {}", self.pid), e)),
            Err(_) => Err(HarnessError::Timeout(format!(
                "pid {} still running after {timeout:?}",
                self.pid
            ))),
        }
    }

    /// SIGKILL (a crash) and reap.
    pub async fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        self.wait(Duration::from_secs(10)).await
    }

    /// SIGTERM (a graceful leave) and wait up to `timeout` for the exit; a
    /// process still running then is killed and reported as a timeout.
    pub async fn sigterm(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        match self.wait(timeout).await {
            Err(HarnessError::Timeout(msg)) => {
                let _ = self.kill9().await;
                Err(HarnessError::Timeout(format!("graceful leave: {msg}; killed")))
            }
            other => other,
        }
    }
}

/// On Linux, the node gets SIGKILL when the thread that started it dies, so
/// a harness killed mid-run (CI timeout, Ctrl-C on `cargo test`) leaves no
/// orphan nodes behind. Nodes are started from the thread running the
/// harness's future, which lives as long as the harness does.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec; it only calls
    // prctl(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut tokio::process::Command) {}

/// The last `lines` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Where node `id`'s log goes under `dir`.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cluster: bool) -> NodeSpec {
        NodeSpec {
            id: "node-2".into(),
            http: "127.0.0.1:8001".parse().expect("addr"),
            cluster: cluster.then(|| ClusterFlags {
                gossip: "127.0.0.1:7001".parse().expect("addr"),
                rpc: "127.0.0.1:9001".parse().expect("addr"),
                seeds: vec![
                    "127.0.0.1:7000".parse().expect("addr"),
                    "127.0.0.1:7002".parse().expect("addr"),
                ],
                secret: "s3cret-s3cret-s3cret".into(),
                fault_injection: true,
            }),
            database_url: "postgres://x/db".into(),
            admin_token: "adm-0123456789abcdef0123456789abcdef".into(),
            flush_interval_ms: 100,
            log_filter: "info".into(),
            extra_args: vec![],
        }
    }

    #[test]
    fn single_node_gets_no_cluster_flags() {
        let args = spec(false).args().join(" ");
        assert_eq!(
            args,
            "serve --listen 127.0.0.1:8001 --database-url postgres://x/db --admin-token adm-0123456789abcdef0123456789abcdef --flush-interval-ms 100"
        );
    }

    #[test]
    fn cluster_flags_follow_the_contract() {
        let args = spec(true).args().join(" ");
        assert!(args.contains("--node-id node-2 --gossip-addr 127.0.0.1:7001 --rpc-addr 127.0.0.1:9001"));
        assert!(args.contains("--seeds 127.0.0.1:7000,127.0.0.1:7002 --cluster-secret s3cret-s3cret-s3cret"));
        assert!(args.ends_with("--enable-fault-injection"));
        let shown = spec(true).display_args();
        assert!(!shown.contains("s3cret") && !shown.contains(" adm "), "{shown}");
    }
}
