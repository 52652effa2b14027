//! Cluster membership over chitchat gossip, and the [`ClusterView`] derived
//! from it.
//!
//! Each node publishes three keys: `http_addr`, `rpc_addr` and `status`
//! (`joining` → `ready` → `leaving`); its chitchat id carries the node id, a
//! generation that grows at every start, and the gossip address.
//!
//! # Failure detection: chosen values, and why
//!
//! chitchat's phi-accrual detector declares a node dead when the time since
//! its last observed heartbeat exceeds `phi_threshold × mean interval
//! between observed heartbeats`, the mean being smoothed toward
//! `initial_interval` (prior weight 5) and taken over the last
//! `sampling_window` samples; the verdict is refreshed at the end of every
//! gossip round. A chitchat node bumps its heartbeat at every round *and*
//! every message it processes, and peers see the bumps through every digest
//! they receive, so the observed interval is well below the gossip interval:
//! measured on loopback with 250 ms rounds, **≈ 100–112 ms with 3 nodes,
//! ≈ 125 ms with 6**. chitchat's defaults (1 s rounds, threshold 8, initial interval
//! 5 s) take 8–25 s to notice a death.
//!
//! [`GossipTuning::default`]:
//! - `gossip_interval` **250 ms**: status changes (`ready`, `leaving`) reach
//!   every node within about a round or two, which hand-off waits on.
//! - `phi_threshold` **20** with `initial_interval` **125 ms** (the observed
//!   mean, so a node that dies right after joining is detected as fast): a
//!   peer silent for ≈ 20 × 100–125 ms ≈ **2.0–2.5 s** is dead, declared at
//!   the end of the next round, i.e. **≈ 2.5–3 s after a kill** — 2 s of
//!   margin under the 5 s target — while a node (or the observer) must stall
//!   for over 2 s before a live node is wrongly declared dead and ownership
//!   flaps. (Threshold 10 gave ≈ 1.1 s, too twitchy on a loaded 2-core box.)
//! - `max_interval` **2 s**: a longer gap is not averaged in, so one pause
//!   does not slow the next detection.
//! - `sampling_window` **100** samples (≈ 12 s of history): the mean follows
//!   cluster-size changes quickly.
//! - `dead_node_grace_period` **15 min**: then a dead node is forgotten.
//!
//! Cost: each node gossips with ≤ 3 peers 4 times a second, datagrams of a
//! few hundred bytes for our few keys. [`Membership::failure_detection_timeouts`]
//! shows the live values.
//!
//! # Tasks
//!
//! [`Membership::start`] spawns chitchat's server task (UDP, gossip rounds)
//! and one view task that rebuilds the [`ClusterView`] when chitchat reports a
//! change in live nodes or their keys, and at every gossip round (to catch
//! deaths), publishing it only when it changed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinHandle;

use super::ClusterError;
use super::PeerFilter;
use super::gossip_transport::{GossipAuth, HmacUdpTransport};
use super::ownership::NodeId;
use super::secret::ClusterSecret;
use super::view::{ClusterView, NodeInfo, NodeStatus};

/// Gossip key of the HTTP address.
pub const KEY_HTTP_ADDR: &str = "http_addr";
/// Gossip key of the internal RPC address.
pub const KEY_RPC_ADDR: &str = "rpc_addr";
/// Gossip key of the [`NodeStatus`].
pub const KEY_STATUS: &str = "status";

/// Gossip timing; see the module docs for the defaults.
#[derive(Debug, Clone)]
pub struct GossipTuning {
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub sampling_window: usize,
    pub dead_node_grace_period: Duration,
}

impl Default for GossipTuning {
    fn default() -> Self {
        GossipTuning {
            gossip_interval: Duration::from_millis(250),
            phi_threshold: 20.0,
            initial_interval: Duration::from_millis(125),
            max_interval: Duration::from_secs(2),
            sampling_window: 100,
            dead_node_grace_period: Duration::from_secs(15 * 60),
        }
    }
}

/// What [`Membership::start`] needs.
#[derive(Clone)]
pub struct MembershipConfig {
    /// Nodes with another cluster id ignore each other.
    pub cluster_id: String,
    pub node_id: String,
    /// Must grow at every start of the node: see [`generation_now`].
    pub generation: u64,
    /// Where to bind the gossip UDP socket; port 0 picks one.
    pub gossip_listen_addr: SocketAddr,
    /// What peers are told to gossip to; `None` = the bound address (right
    /// unless the listen address is a wildcard such as `0.0.0.0`).
    pub gossip_advertise_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of some other nodes.
    pub seeds: Vec<String>,
    pub secret: ClusterSecret,
    pub http_addr: SocketAddr,
    pub rpc_addr: SocketAddr,
    pub tuning: GossipTuning,
    /// Test hook: drops gossip to or from some peers.
    pub filter: Option<Arc<dyn PeerFilter>>,
}

/// A generation for this start: Unix time in milliseconds, which grows at
/// every restart as long as the clock does not go back.
pub fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's membership: gossip (or none, for a single node) and the view.
pub struct Membership {
    self_id: NodeId,
    view_tx: Arc<watch::Sender<Arc<ClusterView>>>,
    gossip: Option<Gossip>,
}

struct Gossip {
    handle: ChitchatHandle,
    chitchat: Arc<AsyncMutex<Chitchat>>,
    view_task: JoinHandle<()>,
    gossip_addr: SocketAddr,
    rejected: Arc<AtomicU64>,
}

impl Membership {
    /// Binds the gossip socket, starts chitchat with status `joining`, and
    /// the view task. Returns once both run (not once the cluster is
    /// converged: watch [`Membership::view`] for that).
    pub async fn start(cfg: MembershipConfig) -> Result<Membership, ClusterError> {
        let socket = tokio::net::UdpSocket::bind(cfg.gossip_listen_addr)
            .await
            .map_err(|source| ClusterError::GossipBind {
                addr: cfg.gossip_listen_addr,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| ClusterError::GossipBind {
            addr: cfg.gossip_listen_addr,
            source,
        })?;
        let advertise = cfg.gossip_advertise_addr.unwrap_or(bound);
        let mut transport = HmacUdpTransport::with_socket(GossipAuth::new(&cfg.secret), socket);
        if let Some(filter) = cfg.filter.clone() {
            transport = transport.with_filter(filter);
        }
        let rejected = transport.rejected_counter();
        let t = &cfg.tuning;
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(cfg.node_id.as_str(), cfg.generation, advertise),
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: t.gossip_interval,
            listen_addr: bound,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: t.phi_threshold,
                sampling_window_size: t.sampling_window,
                max_interval: t.max_interval,
                initial_interval: t.initial_interval,
                dead_node_grace_period: t.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let keys = vec![
            (KEY_HTTP_ADDR.to_string(), cfg.http_addr.to_string()),
            (KEY_RPC_ADDR.to_string(), cfg.rpc_addr.to_string()),
            (KEY_STATUS.to_string(), NodeStatus::Joining.as_str().to_string()),
        ];
        let handle = spawn_chitchat(config, keys, &transport).await?;
        let chitchat = handle.chitchat();
        let self_id = NodeId::new(cfg.node_id.as_str());
        let initial = {
            let guard = chitchat.lock().await;
            build_view(&guard, &self_id)
        };
        let view_tx = Arc::new(watch::channel(Arc::new(initial)).0);
        let view_task = tokio::spawn(view_loop(
            chitchat.clone(),
            self_id.clone(),
            view_tx.clone(),
            cfg.tuning.gossip_interval,
        ));
        tracing::info!(node_id = %self_id, generation = cfg.generation, gossip = %advertise, "gossip started");
        Ok(Membership {
            self_id,
            view_tx,
            gossip: Some(Gossip {
                handle,
                chitchat,
                view_task,
                gossip_addr: bound,
                rejected,
            }),
        })
    }

    /// A node without cluster flags: no gossip; the view is this node alone,
    /// live and `ready` (nothing to join). `set_status` still updates it.
    pub fn single_node(node_id: &str, generation: u64, http_addr: Option<SocketAddr>) -> Membership {
        let self_id = NodeId::new(node_id);
        let view = ClusterView::single(self_id.clone(), generation, http_addr, NodeStatus::Ready);
        Membership {
            self_id,
            view_tx: Arc::new(watch::channel(Arc::new(view)).0),
            gossip: None,
        }
    }

    pub fn self_id(&self) -> &NodeId {
        &self.self_id
    }

    /// The bound gossip address (`None` for a single node).
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.gossip.as_ref().map(|g| g.gossip_addr)
    }

    /// Publishes this node's status, and refreshes the local view at once.
    pub async fn set_status(&self, status: NodeStatus) {
        match &self.gossip {
            Some(g) => {
                let mut guard = g.chitchat.lock().await;
                guard.self_node_state().set(KEY_STATUS, status.as_str());
                publish(&self.view_tx, build_view(&guard, &self.self_id));
            }
            None => {
                let mut nodes = self.view_tx.borrow().nodes.clone();
                for n in &mut nodes {
                    n.status = status;
                }
                publish(&self.view_tx, ClusterView::new(self.self_id.clone(), nodes));
            }
        }
    }

    /// Publishes any other key of this node's gossip state (the resident
    /// entity count, say). Not part of the view: changing it never changes
    /// ownership.
    pub async fn set_key(&self, key: &str, value: &str) {
        if let Some(g) = &self.gossip {
            g.chitchat.lock().await.self_node_state().set(key, value);
        }
    }

    /// Every live node's value of a gossip key, by node id.
    pub async fn key_values(&self, key: &str) -> Vec<(NodeId, String)> {
        let Some(g) = &self.gossip else { return Vec::new() };
        let guard = g.chitchat.lock().await;
        guard
            .node_states()
            .iter()
            .filter_map(|(id, state)| Some((NodeId::new(id.node_id.clone()), state.get(key)?.to_string())))
            .collect()
    }

    /// The view, updated when membership changes.
    pub fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_tx.subscribe()
    }

    /// The current view.
    pub fn current(&self) -> Arc<ClusterView> {
        self.view_tx.borrow().clone()
    }

    /// The failure detector's current timeout per live peer: how long a
    /// peer may stay silent before it is declared dead (adapts to the
    /// observed heartbeat rate; see the module docs).
    pub async fn failure_detection_timeouts(&self) -> Vec<(NodeId, Duration)> {
        let Some(g) = &self.gossip else { return Vec::new() };
        let guard = g.chitchat.lock().await;
        let mut out: Vec<(NodeId, Duration)> = guard
            .live_nodes()
            .filter_map(|id| Some((NodeId::new(id.node_id.clone()), guard.failure_detection_timeout(id)?)))
            .collect();
        out.sort();
        out
    }

    /// Gossip datagrams dropped so far (bad tag, stale, …).
    pub fn gossip_rejected(&self) -> u64 {
        self.gossip.as_ref().map_or(0, |g| g.rejected.load(Ordering::Relaxed))
    }

    /// Stops gossiping (peers then declare this node dead after the
    /// failure-detection delay) and the view task. Publish `leaving` and hand
    /// entities off before calling this for a graceful leave.
    pub async fn shutdown(mut self) -> Result<(), ClusterError> {
        if let Some(g) = self.gossip.take() {
            g.view_task.abort();
            g.handle
                .shutdown()
                .await
                .map_err(|e| ClusterError::Gossip(e.to_string()))?;
        }
        Ok(())
    }
}

/// Dropping stops gossip too (chitchat's loop ends when its handle is
/// dropped), without waiting for it.
impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(g) = &self.gossip {
            g.view_task.abort();
        }
    }
}

async fn spawn_chitchat(
    config: ChitchatConfig,
    keys: Vec<(String, String)>,
    transport: &HmacUdpTransport,
) -> Result<ChitchatHandle, ClusterError> {
    chitchat::spawn_chitchat(config, keys, transport)
        .await
        .map_err(|e| ClusterError::Gossip(format!("{e:#}")))
}

fn publish(tx: &watch::Sender<Arc<ClusterView>>, view: ClusterView) {
    tx.send_if_modified(|current| {
        if **current == view {
            false
        } else {
            *current = Arc::new(view);
            true
        }
    });
}

async fn view_loop(
    chitchat: Arc<AsyncMutex<Chitchat>>,
    self_id: NodeId,
    tx: Arc<watch::Sender<Arc<ClusterView>>>,
    period: Duration,
) {
    let mut live_rx = chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching = true;
    loop {
        tokio::select! {
            changed = live_rx.changed(), if watching => watching = changed.is_ok(),
            _ = tick.tick() => {}
        }
        let view = build_view(&*chitchat.lock().await, &self_id);
        publish(&tx, view);
    }
}

/// Reads the chitchat state into a [`ClusterView`].
fn build_view(chitchat: &Chitchat, self_id: &NodeId) -> ClusterView {
    let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let nodes = chitchat
        .node_states()
        .iter()
        .map(|(id, state)| NodeInfo {
            node_id: NodeId::new(id.node_id.clone()),
            generation: id.generation_id,
            http_addr: state.get(KEY_HTTP_ADDR).and_then(|a| a.parse().ok()),
            rpc_addr: state.get(KEY_RPC_ADDR).and_then(|a| a.parse().ok()),
            gossip_addr: Some(id.gossip_advertise_addr),
            status: state
                .get(KEY_STATUS)
                .and_then(NodeStatus::parse)
                .unwrap_or(NodeStatus::Joining),
            live: live.contains(id),
        })
        .collect();
    ClusterView::new(self_id.clone(), nodes)
}
