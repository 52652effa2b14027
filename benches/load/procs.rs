//! Child processes that never outlive the bench, ports, health waits and a
//! few facts about the machine.

use crate::{ADMIN_TOKEN, OHA_INSTALL, ROLE_ENV};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `tollgate serve` (the release build) on `listen` and `database_url`, with
/// the bench's admin token; `extra` arguments follow (cluster flags,
/// `TOLLGATE_BENCH_NODE_ARGS`).
pub fn node_command(listen: SocketAddr, database_url: &str, extra: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("serve")
        .args(["--listen", &listen.to_string()])
        .args(["--database-url", database_url])
        .args(["--admin-token", ADMIN_TOKEN])
        // No warm user may passivate during a long run.
        .args(["--idle-timeout-s", "3600"])
        .args(extra)
        .env_remove(ROLE_ENV);
    cmd
}

pub struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<ChildGuard> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        Ok(ChildGuard {
            name,
            child: Some(child),
            log,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Fails (with the tail of its log) if the process has exited.
    pub fn ensure_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("the {} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("the {} exited ({status}); its log:\n{}", self.name, tail(&self.log, 40));
        }
        Ok(())
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    return Ok(Some(status));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("the {} did not stop within {grace:?} of SIGTERM; killing it", self.name);
            let _ = child.kill();
        }
        Ok(Some(child.wait()?))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_lossy(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// WARN/ERROR/panic lines of a node's log.
pub fn node_warnings(log: &Path) -> Vec<String> {
    read_lossy(log)
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

/// Prints up to 10 of a node's warning lines, if it logged any.
pub fn print_node_warnings(what: &str, log: &Path) {
    let warnings = node_warnings(log);
    if !warnings.is_empty() {
        println!(
            "\nWARNING: the {what} logged {} warning/error line(s); first ones:",
            warnings.len()
        );
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
    }
}

pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A free UDP port (gossip).
pub fn free_udp_port() -> Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(socket.local_addr()?.port())
}

pub async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut ChildGuard) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        child.ensure_alive()?;
        if let Ok(resp) = client.get(format!("{base}/healthz")).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the {} did not answer /healthz within 60 s; its log:\n{}",
                child.name,
                tail(&child.log, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn find_oha() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("oha")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/oha"));
    }
    match candidates.into_iter().find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => {
            eprintln!("oha (the HTTP load generator) is not installed. Install it with:\n\n    {OHA_INSTALL}\n");
            bail!("oha not found on PATH or in ~/.cargo/bin")
        }
    }
}

/// oha's path and its `--version` line.
pub fn find_oha_with_version() -> Result<(PathBuf, String)> {
    let oha = find_oha()?;
    let version = command_output(&oha, &["--version"]).unwrap_or_else(|| "oha (version unknown)".into());
    Ok((oha, version))
}

/// The run's temporary directory (`<prefix>…`, removed when dropped) and
/// the bench's own runtime (2 workers).
pub fn work_dir_and_runtime(prefix: &str) -> Result<(tempfile::TempDir, tokio::runtime::Runtime)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok((dir, runtime))
}

pub fn command_output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn nproc() -> String {
    command_output(Path::new("nproc"), &[])
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_else(|| "?".into())
}

pub fn date_utc() -> String {
    command_output(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown date".into())
}
