//! A node's place in the cluster: membership (gossip), the internal RPC
//! server, readiness, and the graceful leave. A node without cluster flags
//! gets the same shape with itself alone, so `/v1/cluster` answers alike.

use crate::cluster::rpc::{ClientConfig, PeerPool, RpcServer};
use crate::cluster::{
    BlockList, ClusterSecret, GossipTuning, Membership, MembershipConfig, NodeId, NodeStatus, PeerFilter,
};
use crate::config::ClusterConfig;
use crate::router::peer::Invalidation;
use crate::router::peer_handler::PeerHandler;
use crate::router::{ClusterRouting, LocalEntities, PeerRequest, PeerResponse, Target};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connections per peer in the RPC pool.
const CONNECTIONS_PER_PEER: usize = 2;
/// After publishing `leaving`, how long to keep serving before handing
/// entities over: a few gossip rounds, so peers stop routing here first.
const LEAVE_PROPAGATION: Duration = Duration::from_millis(1_000);
/// Most entities per adoption request.
const ADOPT_BATCH: usize = 500;
/// How long a peer may take to adopt one batch.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the resident entity count is gossiped.
const ENTITY_COUNT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("internal RPC: {0}")]
    Rpc(#[from] crate::cluster::rpc::RpcError),
}

/// Membership, routing and fault hooks of one node.
pub struct ClusterNode {
    pub membership: Arc<Membership>,
    /// `None` on a single node.
    pub routing: Option<Arc<ClusterRouting>>,
    /// Present only with `--enable-fault-injection`.
    pub faults: Option<Arc<BlockList>>,
    secret: Option<ClusterSecret>,
    rpc_addr: Option<SocketAddr>,
    rpc_server: parking_lot::Mutex<Option<RpcServer>>,
}

impl ClusterNode {
    /// A node alone: its view is itself, ready.
    pub fn single(http_addr: SocketAddr) -> ClusterNode {
        ClusterNode {
            membership: Arc::new(Membership::single_node(
                "local",
                crate::cluster::membership::generation_now(),
                Some(http_addr),
            )),
            routing: None,
            faults: None,
            secret: None,
            rpc_addr: None,
            rpc_server: parking_lot::Mutex::new(None),
        }
    }

    /// Starts gossip (as `joining`) and the routing state. The RPC server
    /// starts with [`ClusterNode::serve_rpc`], once the node can answer.
    pub async fn start(cfg: &ClusterConfig, listen: SocketAddr) -> Result<ClusterNode, ClusterStartError> {
        let missing = |flag: &str| ClusterStartError::Config(format!("{flag} is required"));
        let secret = ClusterSecret::new(
            cfg.cluster_secret
                .as_deref()
                .ok_or_else(|| missing("--cluster-secret"))?,
        )?;
        let node_id = cfg.node_id.clone().ok_or_else(|| missing("--node-id"))?;
        let gossip_addr = cfg.gossip_addr.ok_or_else(|| missing("--gossip-addr"))?;
        let rpc_addr = cfg.rpc_addr.ok_or_else(|| missing("--rpc-addr"))?;
        let faults = cfg.enable_fault_injection.then(|| Arc::new(BlockList::default()));
        let filter = faults.clone().map(|f| f as Arc<dyn PeerFilter>);
        let membership = Membership::start(MembershipConfig {
            cluster_id: "tollgate".to_string(),
            node_id: node_id.clone(),
            generation: crate::cluster::membership::generation_now(),
            gossip_listen_addr: gossip_addr,
            gossip_advertise_addr: None,
            seeds: cfg.seeds.clone(),
            secret: secret.clone(),
            http_addr: cfg.advertise_http.unwrap_or(listen),
            rpc_addr,
            tuning: GossipTuning::default(),
            filter: filter.clone(),
        })
        .await?;
        let pool = PeerPool::new(
            &secret,
            CONNECTIONS_PER_PEER,
            ClientConfig {
                filter,
                ..ClientConfig::default()
            },
        );
        let routing = Arc::new(ClusterRouting::new(NodeId::new(node_id), membership.view(), pool));
        Ok(ClusterNode {
            membership: Arc::new(membership),
            routing: Some(routing),
            faults,
            secret: Some(secret),
            rpc_addr: Some(rpc_addr),
            rpc_server: parking_lot::Mutex::new(None),
        })
    }

    /// Starts answering peers.
    pub async fn serve_rpc(&self, handler: PeerHandler) -> Result<(), ClusterStartError> {
        let (Some(secret), Some(addr)) = (&self.secret, self.rpc_addr) else {
            return Ok(());
        };
        let server = RpcServer::bind(addr, secret, Arc::new(handler)).await?;
        *self.rpc_server.lock() = Some(server);
        Ok(())
    }

    /// Gossips the resident entity count every second, until aborted.
    pub fn spawn_entity_count(&self, local: Arc<LocalEntities>) -> Option<tokio::task::JoinHandle<()>> {
        self.routing.as_ref()?;
        let membership = self.membership.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ENTITY_COUNT_EVERY);
            loop {
                tick.tick().await;
                membership.set_key("entities", &local.resident().to_string()).await;
            }
        }))
    }

    /// The node serves: it may own entities from now on.
    pub async fn ready(&self) {
        self.membership.set_status(NodeStatus::Ready).await;
    }

    /// Members this node sees, by status: joining, ready, leaving, and
    /// dead (any status, but the failure detector gave up on it).
    pub fn members_by_status(&self) -> [(&'static str, usize); 4] {
        let view = self.membership.current();
        let mut counts = [("joining", 0), ("ready", 0), ("leaving", 0), ("dead", 0)];
        for node in &view.nodes {
            let i = match (node.live, node.status) {
                (false, _) => 3,
                (true, NodeStatus::Joining) => 0,
                (true, NodeStatus::Ready) => 1,
                (true, NodeStatus::Leaving) => 2,
            };
            counts[i].1 += 1;
        }
        counts
    }

    /// Is this node ready (not joining, not leaving)?
    pub fn is_ready(&self) -> bool {
        self.membership
            .current()
            .self_node()
            .is_some_and(|n| n.status == NodeStatus::Ready)
    }

    /// Graceful leave: publish `leaving`, let peers notice, then have each
    /// resident entity's new owner take it over (the new owner pulls the
    /// live state from here). Entities nobody took are flushed at shutdown
    /// like any other.
    pub async fn leave(&self, local: &LocalEntities) {
        let Some(routing) = &self.routing else { return };
        self.membership.set_status(NodeStatus::Leaving).await;
        tracing::info!("leaving the cluster: handing entities over");
        tokio::time::sleep(LEAVE_PROPAGATION).await;
        let mut by_owner: HashMap<SocketAddr, Vec<crate::entity::EntityKey>> = HashMap::new();
        for key in local.resident_keys() {
            if let Target::Remote { rpc, .. } = routing.target(&key) {
                by_owner.entry(rpc).or_default().push(key);
            }
        }
        let total: usize = by_owner.values().map(Vec::len).sum();
        let calls = by_owner.into_iter().flat_map(|(rpc, keys)| {
            keys.chunks(ADOPT_BATCH)
                .map(|chunk| (rpc, chunk.to_vec()))
                .collect::<Vec<_>>()
        });
        let results = futures_util::future::join_all(calls.map(|(rpc, keys)| async move {
            let req = PeerRequest::Adopt { keys };
            routing.call_with_timeout(rpc, &req, ADOPT_TIMEOUT).await
        }))
        .await;
        let failed = results.iter().filter(|r| !matches!(r, Ok(PeerResponse::Done))).count();
        tracing::info!(
            entities = total,
            failed_batches = failed,
            left = local.resident(),
            "hand-off done"
        );
    }

    /// Tells every other live node that a cached entry changed in the
    /// store (best effort: a node that misses it still has the store, and
    /// reloads everything when it restarts).
    pub async fn broadcast(&self, invalidation: Invalidation) {
        let Some(routing) = &self.routing else { return };
        let view = self.membership.current();
        let req = PeerRequest::Invalidate(invalidation);
        let calls = view
            .nodes
            .iter()
            .filter(|n| n.live && n.node_id != view.self_id)
            .filter_map(|n| Some((n.node_id.clone(), n.rpc_addr?)))
            .map(|(node, rpc)| {
                let req = &req;
                async move { (node, routing.call(rpc, req).await) }
            });
        for (node, result) in futures_util::future::join_all(calls).await {
            if !matches!(result, Ok(PeerResponse::Done)) {
                metrics::counter!("tollgate_invalidation_failures_total").increment(1);
                tracing::warn!(%node, ?result, "a peer missed a cache invalidation");
            }
        }
    }

    /// Cuts this node off from `node_ids` (gossip and RPC both ways as far
    /// as this node is concerned); an empty list heals. Test hook.
    pub fn isolate_from(&self, node_ids: &[String]) -> Result<Vec<SocketAddr>, String> {
        let Some(faults) = &self.faults else {
            return Err("fault injection is not enabled on this node".into());
        };
        let view = self.membership.current();
        let mut blocked = Vec::new();
        for id in node_ids {
            let node = view
                .node(id)
                .ok_or_else(|| format!("no node {id:?} in this node's view"))?;
            blocked.extend(node.gossip_addr);
            blocked.extend(node.rpc_addr);
        }
        faults.clear();
        for addr in &blocked {
            faults.block(*addr);
        }
        Ok(blocked)
    }

    /// Stops the RPC server (after the HTTP server and the hand-off).
    pub async fn shutdown(&self) {
        let server = self.rpc_server.lock().take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }
}
