//! The nodes load is sent to, shared between a [`crate::Cluster`] and its
//! load drivers. Like a load balancer's pool: a node joins it once ready,
//! leaves it just before a SIGTERM (drain) and just after a SIGKILL (a
//! health check noticing), and comes back after a restart.

use crate::api::Api;
use std::sync::{Arc, RwLock};

/// One node load can be sent to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's index in its cluster.
    pub index: usize,
    pub node_id: String,
    pub api: Api,
}

/// A shared, changing list of targets.
#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<Target>>>);

impl Targets {
    /// The current targets.
    pub fn snapshot(&self) -> Vec<Target> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `n`-th target round-robin, if any is up.
    pub fn pick(&self, n: u64) -> Option<Target> {
        let list = self.0.read().unwrap_or_else(|p| p.into_inner());
        if list.is_empty() {
            return None;
        }
        let i = usize::try_from(n % list.len() as u64).unwrap_or(0);
        list.get(i).cloned()
    }

    /// Adds (or replaces) the target of node `target.index`, keeping index order.
    pub fn insert(&self, target: Target) {
        let mut list = self.0.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|t| t.index != target.index);
        list.push(target);
        list.sort_by_key(|t| t.index);
    }

    /// Removes node `index`.
    pub fn remove(&self, index: usize) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| t.index != index);
    }

    /// A view restricted to some nodes (load on one side of a partition).
    pub fn only(&self, indexes: &[usize]) -> Targets {
        let list = self
            .snapshot()
            .into_iter()
            .filter(|t| indexes.contains(&t.index))
            .collect();
        Targets(Arc::new(RwLock::new(list)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(index: usize) -> Target {
        let http = reqwest::Client::new();
        Target {
            index,
            node_id: format!("node-{}", index + 1),
            api: Api::new(http, "http://127.0.0.1:1", "t"),
        }
    }

    #[test]
    fn round_robin_follows_membership() {
        let t = Targets::default();
        assert!(t.pick(0).is_none());
        t.insert(target(2));
        t.insert(target(0));
        t.insert(target(1));
        let ids: Vec<usize> = (0..4).filter_map(|n| t.pick(n)).map(|x| x.index).collect();
        assert_eq!(ids, vec![0, 1, 2, 0]);
        t.remove(1);
        assert_eq!(t.snapshot().iter().map(|x| x.index).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(t.only(&[2]).snapshot().len(), 1);
    }
}
