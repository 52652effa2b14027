//! Gossip membership on real loopback UDP sockets: convergence, death
//! detection, and an outsider without the secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::cluster::membership::generation_now;
use tollgate::cluster::{
    BlockList, ClusterSecret, ClusterView, GossipTuning, Membership, MembershipConfig, NodeStatus, PeerFilter,
};

const SECRET: &str = "cluster-gossip-test-secret";
/// Bound on every wait; generous, never a performance claim.
const PATIENCE: Duration = Duration::from_secs(20);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(cluster_id: &str, node_id: &str, secret: &str, seeds: Vec<String>) -> MembershipConfig {
    MembershipConfig {
        cluster_id: cluster_id.to_string(),
        node_id: node_id.to_string(),
        generation: generation_now(),
        gossip_listen_addr: loopback(),
        gossip_advertise_addr: None,
        seeds,
        secret: ClusterSecret::new(secret).unwrap(),
        http_addr: "127.0.0.1:8080".parse().unwrap(),
        rpc_addr: "127.0.0.1:9090".parse().unwrap(),
        tuning: GossipTuning::default(),
        filter: None,
    }
}

/// Starts `names` in one cluster, every node seeded with the first one.
async fn start_cluster(cluster_id: &str, names: &[&str]) -> Vec<Membership> {
    let first = Membership::start(config(cluster_id, names[0], SECRET, vec![]))
        .await
        .unwrap();
    let seed = first.gossip_addr().unwrap().to_string();
    let mut nodes = vec![first];
    for name in &names[1..] {
        nodes.push(
            Membership::start(config(cluster_id, name, SECRET, vec![seed.clone()]))
                .await
                .unwrap(),
        );
    }
    nodes
}

/// Polls until `pred` holds on the node's current view, or panics after
/// [`PATIENCE`]. Returns how long it took.
async fn wait_for(m: &Membership, what: &str, pred: impl Fn(&ClusterView) -> bool) -> Duration {
    let started = Instant::now();
    let mut rx = m.view();
    loop {
        if pred(&rx.borrow_and_update()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{}: not {what} after {PATIENCE:?}: {:?}",
            m.self_id(),
            m.current()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
    }
}

fn all_live_and_ready(view: &ClusterView, names: &[&str]) -> bool {
    names
        .iter()
        .all(|n| view.node(n).is_some_and(|i| i.live && i.status == NodeStatus::Ready))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_agree_on_owners_and_detect_a_dead_one() {
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes = start_cluster("converge", &names).await;
    for m in &nodes {
        assert_eq!(m.current().self_node().map(|n| n.status), Some(NodeStatus::Joining));
        m.set_status(NodeStatus::Ready).await;
    }
    for m in &nodes {
        let took = wait_for(m, "all three live and ready", |v| all_live_and_ready(v, &names)).await;
        eprintln!("{} saw all three ready after {took:?}", m.self_id());
        let view = m.current();
        let me = view.self_node().unwrap();
        assert_eq!(me.rpc_addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(me.http_addr, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(me.gossip_addr, m.gossip_addr());
    }

    // Every node computes the same owner for every entity, and all three own some.
    let views: Vec<Arc<ClusterView>> = nodes.iter().map(|m| m.current()).collect();
    let mut owners_seen = std::collections::HashSet::new();
    for i in 0..300 {
        let key = format!("user:u{i}");
        let owners: Vec<_> = views.iter().map(|v| v.owner(&key).map(|n| n.node_id.clone())).collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{key}: {owners:?}");
        owners_seen.insert(owners[0].clone());
    }
    assert_eq!(owners_seen.len(), 3);

    // `leaving` takes a node out of ownership while it is still live.
    nodes[1].set_status(NodeStatus::Leaving).await;
    wait_for(&nodes[0], "node-b leaving", |v| {
        v.node("node-b")
            .is_some_and(|n| n.live && n.status == NodeStatus::Leaving)
            && v.eligible().len() == 2
    })
    .await;

    for m in &nodes {
        eprintln!(
            "{} failure-detection timeouts: {:?}",
            m.self_id(),
            m.failure_detection_timeouts().await
        );
    }
    // Stop node-c's gossip: the others must declare it dead.
    let c = nodes.pop().unwrap();
    let stopped = Instant::now();
    c.shutdown().await.unwrap();
    for m in &nodes {
        wait_for(m, "node-c dead", |v| v.node("node-c").is_some_and(|n| !n.live)).await;
        let took = stopped.elapsed();
        eprintln!("{} declared node-c dead {took:?} after it stopped", m.self_id());
        assert!(
            m.current()
                .owner("user:u1")
                .is_some_and(|n| n.node_id.as_str() == "node-a")
        );
    }

    // Dropping a membership (no shutdown) stops its gossip as well.
    let b = nodes.pop().unwrap();
    let dropped = Instant::now();
    drop(b);
    wait_for(&nodes[0], "node-b dead", |v| v.node("node-b").is_some_and(|n| !n.live)).await;
    eprintln!(
        "node-a declared node-b dead {:?} after it was dropped",
        dropped.elapsed()
    );
    nodes.pop().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_secret_never_joins() {
    let names = ["good-a", "good-b"];
    let nodes = start_cluster("outsider", &names).await;
    for m in &nodes {
        m.set_status(NodeStatus::Ready).await;
    }
    for m in &nodes {
        wait_for(m, "both ready", |v| all_live_and_ready(v, &names)).await;
    }

    // Same cluster id, knows a seed, publishes keys – but has another secret.
    let seeds: Vec<String> = nodes.iter().map(|m| m.gossip_addr().unwrap().to_string()).collect();
    let mut cfg = config("outsider", "intruder", "a-different-secret-entirely", seeds);
    cfg.rpc_addr = "127.0.0.1:6666".parse().unwrap();
    let intruder = Membership::start(cfg).await.unwrap();
    intruder.set_status(NodeStatus::Ready).await;

    // Watch for 4 s (16 gossip rounds): nobody ever lists it, it learns nobody.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        for m in &nodes {
            let view = m.current();
            assert!(
                view.node("intruder").is_none(),
                "{} lists the intruder: {view:?}",
                m.self_id()
            );
            assert!(
                view.nodes
                    .iter()
                    .all(|n| n.rpc_addr != Some("127.0.0.1:6666".parse().unwrap()))
            );
            assert_eq!(view.nodes.len(), 2);
        }
        let seen_by_intruder = intruder.current();
        assert_eq!(
            seen_by_intruder.nodes.len(),
            1,
            "the intruder learned: {seen_by_intruder:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected: u64 = nodes.iter().map(|m| m.gossip_rejected()).sum();
    assert!(rejected > 0, "the intruder's datagrams were not even received");
    eprintln!("good nodes dropped {rejected} forged datagrams");
    intruder.shutdown().await.unwrap();
    for m in nodes {
        m.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_declared_dead_and_comes_back_after_healing() {
    let names = ["part-a", "part-b", "part-c"];
    let filters: Vec<Arc<BlockList>> = names.iter().map(|_| Arc::new(BlockList::default())).collect();
    let mut nodes: Vec<Membership> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seeds = nodes
            .first()
            .map(|m| vec![m.gossip_addr().unwrap().to_string()])
            .unwrap_or_default();
        let mut cfg = config("partition", name, SECRET, seeds);
        cfg.filter = Some(filters[i].clone() as Arc<dyn PeerFilter>);
        let m = Membership::start(cfg).await.unwrap();
        m.set_status(NodeStatus::Ready).await;
        nodes.push(m);
    }
    for m in &nodes {
        wait_for(m, "all ready", |v| all_live_and_ready(v, &names)).await;
    }
    let addr = |i: usize| nodes[i].gossip_addr().unwrap();

    // Cut part-c off from both others, both ways.
    for other in [0, 1] {
        filters[2].block(addr(other));
        filters[other].block(addr(2));
    }
    for m in &nodes[..2] {
        wait_for(m, "part-c dead", |v| v.node("part-c").is_some_and(|n| !n.live)).await;
        assert_eq!(m.current().eligible().len(), 2);
    }
    // Each side keeps serving with the owners it can see.
    wait_for(&nodes[2], "alone", |v| {
        v.eligible().len() == 1 && v.is_self_owner("user:any")
    })
    .await;

    for f in &filters {
        f.clear();
    }
    for m in &nodes {
        let took = wait_for(m, "all live again", |v| all_live_and_ready(v, &names)).await;
        eprintln!("{} saw the cluster whole again {took:?} after healing", m.self_id());
    }
    for m in nodes {
        m.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn single_node_view_is_itself_ready() {
    let m = Membership::single_node("solo", 42, Some("127.0.0.1:8080".parse().unwrap()));
    let view = m.current();
    assert_eq!(view.nodes.len(), 1);
    assert_eq!(view.owner("user:u1").map(|n| n.node_id.as_str()), Some("solo"));
    assert!(view.is_self_owner("org:o1"));
    assert_eq!(m.gossip_addr(), None);
    m.set_status(NodeStatus::Leaving).await;
    assert!(m.current().owner("user:u1").is_none());
    assert_eq!(
        m.view().borrow().self_node().map(|n| n.status),
        Some(NodeStatus::Leaving)
    );
    m.shutdown().await.unwrap();
}
