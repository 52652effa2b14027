//! Starting, joining, killing, stopping and restarting nodes.

use super::{Cluster, Role, Slot};
use crate::api::Api;
use crate::error::{HarnessError, Result};
use crate::ports::{Proto, fixed_loopback, free_loopback};
use crate::process::{ClusterFlags, NodeProcess, NodeSpec, log_path, log_tail};
use crate::targets::Target;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Start attempts when another process grabs a port first.
const START_ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Addrs {
    http: SocketAddr,
    gossip: SocketAddr,
    rpc: SocketAddr,
}

impl Cluster {
    /// Starts the first `n` members: node-1 first (the seed), then the
    /// others together, then waits for everyone to be ready.
    pub(super) async fn start_initial(&mut self, n: usize) -> Result<()> {
        let addrs: Vec<Addrs> = (0..n).map(|i| self.allocate(i)).collect::<Result<_>>()?;
        for (i, a) in addrs.iter().enumerate() {
            let seeds = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.gossip)
                .collect();
            let (secret, db) = (self.secret.clone(), self.database_url.clone());
            self.push_slot(format!("node-{}", i + 1), Role::Member, *a, seeds, secret, db);
        }
        self.launch(0)?;
        self.ensure_up(0).await?;
        for i in 1..n {
            self.launch(i)?;
        }
        for i in 1..n {
            self.ensure_up(i).await?;
        }
        let all: Vec<usize> = (0..n).collect();
        self.wait_converged(&all).await?;
        for i in all {
            self.add_target(i);
        }
        Ok(())
    }

    /// Starts one more member (`node-<k>`, seeded with every running
    /// member), waits until all running members list it and each other as
    /// ready, then adds it to the targets. Returns its index.
    pub async fn add_node(&mut self) -> Result<usize> {
        if !self.opts.cluster {
            return Err(HarnessError::Config("add_node needs cluster mode".into()));
        }
        let i = self.slots.len();
        let addrs = self.allocate(i)?;
        let seeds = self.member_gossip_addrs();
        let (secret, db) = (self.secret.clone(), self.database_url.clone());
        let members = self.slots.iter().filter(|s| s.role == Role::Member).count();
        self.push_slot(format!("node-{}", members + 1), Role::Member, addrs, seeds, secret, db);
        self.launch(i)?;
        self.ensure_up(i).await?;
        let running = self.running_members();
        self.wait_converged(&running).await?;
        self.add_target(i);
        Ok(i)
    }

    /// Starts a process that knows the members' gossip addresses but not
    /// their secret, on a database of its own. It is never a target and
    /// never expected in a view. Returns its index.
    pub async fn launch_outsider(&mut self, secret: &str) -> Result<usize> {
        if !self.opts.cluster {
            return Err(HarnessError::Config("an outsider needs cluster mode".into()));
        }
        let db = self.scratch_database().await?;
        let i = self.slots.len();
        let addrs = self.allocate(i)?;
        let seeds = self.member_gossip_addrs();
        self.push_slot("outsider".into(), Role::Outsider, addrs, seeds, secret.to_string(), db);
        if let Some(c) = self.slots[i].spec.cluster.as_mut() {
            c.fault_injection = false;
        }
        self.launch(i)?;
        self.ensure_up(i).await?;
        Ok(i)
    }

    /// SIGKILL node `i` (a crash), then take it out of the targets.
    pub async fn kill9(&mut self, i: usize) -> Result<ExitStatus> {
        let status = self.process_mut(i)?.kill9().await?;
        self.targets.remove(i);
        tracing::info!(node = self.id(i), %status, "killed with SIGKILL");
        Ok(status)
    }

    /// Take node `i` out of the targets (drain), SIGTERM it (a graceful
    /// leave) and wait for it to exit; returns its exit status.
    pub async fn sigterm(&mut self, i: usize) -> Result<ExitStatus> {
        self.targets.remove(i);
        let timeout = self.opts.leave_timeout;
        let status = self.process_mut(i)?.sigterm(timeout).await;
        tracing::info!(node = self.id(i), ?status, "stopped with SIGTERM");
        status
    }

    /// Starts an exited node again with the same id and addresses, waits
    /// until it and every running member agree, and puts it back in the
    /// targets.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        if self.pid(i).is_some() {
            return Err(HarnessError::Config(format!("{} is still running", self.id(i))));
        }
        let slot = self
            .slots
            .get(i)
            .ok_or_else(|| HarnessError::Config(format!("no node {i}")))?;
        let role = slot.role;
        self.launch(i)?;
        self.ensure_up(i).await?;
        if role == Role::Member {
            let running = self.running_members();
            self.wait_converged(&running).await?;
            self.add_target(i);
        }
        Ok(())
    }

    /// SIGTERM every running node, last started first; their exit statuses.
    pub async fn shutdown(&mut self) -> Vec<(String, Result<ExitStatus>)> {
        let mut out = Vec::new();
        for i in (0..self.slots.len()).rev() {
            if self.pid(i).is_some() {
                let status = self.sigterm(i).await;
                out.push((self.id(i).to_string(), status));
            }
        }
        out
    }

    /// Indexes of members whose process is running.
    pub fn running_members(&mut self) -> Vec<usize> {
        self.running(Role::Member)
    }

    pub(super) fn running(&mut self, role: Role) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].role == role && self.pid(i).is_some() {
                out.push(i);
            }
        }
        out
    }

    fn member_gossip_addrs(&mut self) -> Vec<SocketAddr> {
        self.running_members()
            .into_iter()
            .filter_map(|i| self.slots[i].spec.cluster.as_ref().map(|c| c.gossip))
            .collect()
    }

    fn allocate(&self, i: usize) -> Result<Addrs> {
        if let Some(base) = self.opts.base_port {
            let port = |offset: usize| {
                u16::try_from(usize::from(base) + offset + i)
                    .map_err(|_| HarnessError::Config(format!("--base-port {base} too high for node {i}")))
            };
            return Ok(Addrs {
                http: fixed_loopback(port(0)?),
                rpc: fixed_loopback(port(100)?),
                gossip: fixed_loopback(port(200)?),
            });
        }
        let free = |proto| free_loopback(proto).map_err(|e| HarnessError::io("find a free port", e));
        Ok(Addrs {
            http: free(Proto::Tcp)?,
            gossip: free(Proto::Udp)?,
            rpc: free(Proto::Tcp)?,
        })
    }

    fn push_slot(&mut self, id: String, role: Role, a: Addrs, seeds: Vec<SocketAddr>, secret: String, db: String) {
        let spec = NodeSpec {
            http: a.http,
            cluster: self.opts.cluster.then_some(ClusterFlags {
                gossip: a.gossip,
                rpc: a.rpc,
                seeds,
                secret,
                fault_injection: self.opts.fault_injection,
            }),
            database_url: db,
            admin_token: self.admin_token.clone(),
            flush_interval_ms: self.opts.flush_interval_ms,
            log_filter: self.opts.log_filter.clone(),
            extra_args: self.opts.extra_args.clone(),
            id,
        };
        let log = log_path(self.log_dir.path(), &spec.id);
        let api = Api::new(self.http.clone(), spec.base_url(), self.admin_token.clone());
        self.slots.push(Slot {
            spec,
            role,
            process: None,
            starts: 0,
            log,
            api,
        });
    }

    fn launch(&mut self, i: usize) -> Result<()> {
        let binary = self.binary.clone();
        let slot = self
            .slots
            .get_mut(i)
            .ok_or_else(|| HarnessError::Config(format!("no node {i}")))?;
        slot.process = Some(NodeProcess::spawn(&binary, &slot.spec, &slot.log)?);
        Ok(())
    }

    /// Waits until node `i` answers `/healthz` (and `/readyz` when it runs
    /// single-node). If it died because a port was taken meanwhile, starts it
    /// again: on fresh ports the first time, on the same ones (after a pause)
    /// when it ran before (its peers know its addresses) or ports are fixed.
    async fn ensure_up(&mut self, i: usize) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.wait_up(i).await {
                Ok(()) => {
                    let slot = &mut self.slots[i];
                    slot.starts += 1;
                    let pid = slot.process.as_ref().map(NodeProcess::pid);
                    tracing::info!(node = %slot.spec.id, http = %slot.spec.http, ?pid, starts = slot.starts, "node up");
                    return Ok(());
                }
                Err(HarnessError::Node(msg)) if msg.contains("in use") && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    if self.opts.base_port.is_none() && self.slots[i].starts == 0 {
                        let a = self.allocate(i)?;
                        let slot = &mut self.slots[i];
                        slot.spec.http = a.http;
                        if let Some(c) = slot.spec.cluster.as_mut() {
                            c.gossip = a.gossip;
                            c.rpc = a.rpc;
                        }
                        slot.api = Api::new(self.http.clone(), slot.spec.base_url(), self.admin_token.clone());
                    } else {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    self.launch(i)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn wait_up(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        let path = if self.opts.cluster { "/healthz" } else { "/readyz" };
        loop {
            let exited = self.process_mut(i)?.try_exited();
            if let Some(status) = exited {
                let slot = &self.slots[i];
                return Err(HarnessError::Node(format!(
                    "{} exited with {status} while starting; log tail:\n{}",
                    slot.spec.id,
                    last_start(&log_tail(&slot.log, 60))
                )));
            }
            if self.slots[i].api.answers_200(path).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let slot = &self.slots[i];
                return Err(HarnessError::Timeout(format!(
                    "{} did not answer {path} within {:?}; log tail:\n{}",
                    slot.spec.id,
                    self.opts.ready_timeout,
                    log_tail(&slot.log, 40)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn process_mut(&mut self, i: usize) -> Result<&mut NodeProcess> {
        self.slots
            .get_mut(i)
            .and_then(|s| s.process.as_mut())
            .ok_or_else(|| HarnessError::Config(format!("node {i} was never started")))
    }

    fn add_target(&self, i: usize) {
        let slot = &self.slots[i];
        self.targets.insert(Target {
            index: i,
            node_id: slot.spec.id.clone(),
            api: slot.api.clone(),
        });
    }
}

/// The part of a log tail after the last harness start marker.
fn last_start(tail: &str) -> &str {
    tail.rfind("=== harness: starting").map_or(tail, |at| &tail[at..])
}
