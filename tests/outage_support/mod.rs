//! Outages a test (or the outage bench) owns: a Postgres server of its own
//! that it stops and starts, and a small filesystem that it fills.
//!
//! Never the shared cluster on 5432: other tests use it at the same time.
//! Under `CI` a missing tool or privilege fails the test; locally the test
//! may skip with a printed reason.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// Panics under `CI`; otherwise prints why the test is skipped.
pub fn missing(what: &str) {
    assert!(
        std::env::var("CI").is_err(),
        "CI is set but {what}: this outage test cannot run"
    );
    eprintln!("skipping: {what}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A Postgres server in a temp dir, on a free loopback port, owned by one
/// test: started by [`OwnedPostgres::start`], stopped on drop.
pub struct OwnedPostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    /// Root runs the server as `postgres` (it refuses to run as root).
    as_postgres: bool,
}

impl OwnedPostgres {
    /// initdb + start; None (after printing why) when the tools are
    /// missing outside CI.
    pub fn start() -> Option<OwnedPostgres> {
        let Some(bin) = postgres_bin() else {
            missing("no initdb under /usr/lib/postgresql/*/bin");
            return None;
        };
        let as_postgres = is_root();
        let dir = tempfile::tempdir().expect("temp dir");
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(dir.path()));
        }
        let server = OwnedPostgres {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        server.pg(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `tool` from the server's bin dir, as the user that owns the data.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.current_dir(self.dir.path());
        command
    }

    fn pg(&self, tool: &str, args: &[&str]) -> Output {
        run(self.command(tool).args(args))
    }

    fn ctl(&self, args: &[&str]) -> Output {
        let data = self.data();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all)
    }

    /// Starts the server (again) on the same port and waits until it
    /// accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.ctl(&["-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
    }

    /// A clean stop: sessions are told (57P01) and closed.
    pub fn stop(&self) {
        self.ctl(&["-m", "fast", "-w", "-t", "60", "stop"]);
    }

    /// A crash: no goodbye to clients (as when a primary dies and a new
    /// one takes its address).
    pub fn crash(&self) {
        self.ctl(&["-m", "immediate", "-w", "-t", "60", "stop"]);
    }

    pub fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args(["-D", &self.data(), "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for OwnedPostgres {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A size-limited tmpfs mounted on a temp dir, unmounted on drop.
pub struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// None (after printing why) when this process may not mount, outside
    /// CI.
    pub fn mount(size: &str) -> Option<SmallDisk> {
        if !is_root() {
            missing("not root, so no filesystem can be mounted");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path()));
        Some(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free byte with a file named `filler`.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).expect("filler file");
        let block = vec![0xa5u8; 4096];
        while file.write_all(&block).is_ok() {}
        // Byte by byte for the last partial block.
        while file.write_all(&block[..1]).is_ok() {}
        let _ = file.sync_all();
    }

    /// Gives the space back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler file");
    }

    /// Remounts read-only (`ro = true`) or read-write.
    pub fn remount(&self, ro: bool) {
        let mode = if ro { "remount,ro" } else { "remount,rw" };
        run(Command::new("mount").args(["-o", mode]).arg(self.dir.path()));
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
    }
}
