//! The cluster as one node sees it: [`ClusterView`], published by
//! [`super::Membership`] on a `watch` channel.

use std::net::SocketAddr;

use serde::Serialize;

use super::ownership::{NodeId, owner_index};

/// A node's lifecycle, published in gossip under the key `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Started, not serving owned entities yet.
    Joining,
    /// Owns entities (when also live).
    Ready,
    /// Handing its entities off before exiting; owns nothing.
    Leaving,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Joining => "joining",
            NodeStatus::Ready => "ready",
            NodeStatus::Leaving => "leaving",
        }
    }

    /// Parses a gossiped value; `None` for anything else (a node publishing
    /// an unknown status is treated as not ready).
    pub fn parse(s: &str) -> Option<NodeStatus> {
        match s {
            "joining" => Some(NodeStatus::Joining),
            "ready" => Some(NodeStatus::Ready),
            "leaving" => Some(NodeStatus::Leaving),
            _ => None,
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    /// Grows at every start of the node (Unix ms at start by default).
    pub generation: u64,
    /// `None` when the node has not published one yet, or published garbage.
    pub http_addr: Option<SocketAddr>,
    pub rpc_addr: Option<SocketAddr>,
    /// `None` without gossip (single node).
    pub gossip_addr: Option<SocketAddr>,
    pub status: NodeStatus,
    /// The failure detector's verdict (always true for self).
    pub live: bool,
}

impl NodeInfo {
    /// May own entities: live and `ready`.
    pub fn is_eligible(&self) -> bool {
        self.live && self.status == NodeStatus::Ready
    }
}

/// The cluster as seen by `self_id`: every known node (one entry per node
/// id, the newest generation), sorted by node id, and the eligible owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub self_id: NodeId,
    /// Sorted by node id; one entry per node id.
    pub nodes: Vec<NodeInfo>,
    /// Ids of the eligible nodes (live and ready), sorted, and their index
    /// in `nodes`: what [`ClusterView::owner`] hashes over.
    eligible: Vec<NodeId>,
    eligible_index: Vec<usize>,
}

impl ClusterView {
    /// Builds a view from node entries in any order, possibly with several
    /// generations of one node id: per id, the live entry with the highest
    /// generation wins, else the highest generation (an old generation of a
    /// restarted node is dropped from the view).
    pub fn new(self_id: NodeId, mut nodes: Vec<NodeInfo>) -> ClusterView {
        nodes.sort_by(|a, b| {
            a.node_id
                .cmp(&b.node_id)
                .then(b.live.cmp(&a.live))
                .then(b.generation.cmp(&a.generation))
        });
        nodes.dedup_by(|later, first| later.node_id == first.node_id);
        let (eligible, eligible_index) = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_eligible())
            .map(|(i, n)| (n.node_id.clone(), i))
            .unzip();
        ClusterView {
            self_id,
            nodes,
            eligible,
            eligible_index,
        }
    }

    /// The view of a node without cluster flags: itself alone, live, with
    /// the given status.
    pub fn single(self_id: NodeId, generation: u64, http_addr: Option<SocketAddr>, status: NodeStatus) -> ClusterView {
        let me = NodeInfo {
            node_id: self_id.clone(),
            generation,
            http_addr,
            rpc_addr: None,
            gossip_addr: None,
            status,
            live: true,
        };
        ClusterView::new(self_id, vec![me])
    }

    /// The owner of `entity_key`: rendezvous hashing over the live, ready
    /// nodes. `None` when no node is eligible (e.g. while everyone is still
    /// `joining`).
    pub fn owner(&self, entity_key: &str) -> Option<&NodeInfo> {
        owner_index(entity_key, &self.eligible).map(|i| &self.nodes[self.eligible_index[i]])
    }

    /// True when this node owns `entity_key`.
    pub fn is_self_owner(&self, entity_key: &str) -> bool {
        self.owner(entity_key).is_some_and(|n| n.node_id == self.self_id)
    }

    /// The entry for `node_id`.
    pub fn node(&self, node_id: &str) -> Option<&NodeInfo> {
        self.nodes
            .binary_search_by(|n| n.node_id.as_str().cmp(node_id))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// This node's own entry.
    pub fn self_node(&self) -> Option<&NodeInfo> {
        self.node(self.self_id.as_str())
    }

    /// Ids of the nodes that may own entities (live and ready), sorted.
    pub fn eligible(&self) -> &[NodeId] {
        &self.eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, generation: u64, status: NodeStatus, live: bool) -> NodeInfo {
        NodeInfo {
            node_id: NodeId::new(id),
            generation,
            http_addr: None,
            rpc_addr: None,
            gossip_addr: None,
            status,
            live,
        }
    }

    #[test]
    fn only_live_ready_nodes_own() {
        let view = ClusterView::new(
            NodeId::new("a"),
            vec![
                info("c", 1, NodeStatus::Ready, false),
                info("b", 1, NodeStatus::Joining, true),
                info("a", 1, NodeStatus::Ready, true),
                info("d", 1, NodeStatus::Leaving, true),
            ],
        );
        assert_eq!(view.eligible(), &[NodeId::new("a")]);
        for i in 0..100 {
            assert_eq!(view.owner(&format!("user:{i}")).map(|n| n.node_id.as_str()), Some("a"));
        }
        let ids: Vec<&str> = view.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert!(view.is_self_owner("user:1"));
    }

    #[test]
    fn newest_live_generation_wins() {
        let view = ClusterView::new(
            NodeId::new("a"),
            vec![
                info("a", 1, NodeStatus::Ready, true),
                info("b", 5, NodeStatus::Ready, false),
                info("b", 3, NodeStatus::Ready, true),
                info("b", 1, NodeStatus::Ready, false),
            ],
        );
        assert_eq!(view.nodes.len(), 2);
        let b = view.node("b").unwrap();
        assert_eq!((b.generation, b.live), (3, true));
    }

    #[test]
    fn single_node_view_owns_everything_once_ready() {
        let joining = ClusterView::single(NodeId::new("solo"), 7, None, NodeStatus::Joining);
        assert!(joining.owner("user:u1").is_none());
        let ready = ClusterView::single(NodeId::new("solo"), 7, None, NodeStatus::Ready);
        assert_eq!(ready.owner("user:u1").map(|n| n.generation), Some(7));
        assert_eq!(ready.self_node().map(|n| n.status), Some(NodeStatus::Ready));
    }

    #[test]
    fn status_round_trips() {
        for s in [NodeStatus::Joining, NodeStatus::Ready, NodeStatus::Leaving] {
            assert_eq!(NodeStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(NodeStatus::parse("READY"), None);
    }
}
