//! What the nodes see of each other: views, convergence, partitions through
//! the faults endpoint, and whether they agree on owners.

use super::{Cluster, Role};
use crate::api::ClusterView;
use crate::error::{HarnessError, Result};
use crate::process::log_tail;
use std::time::{Duration, Instant};

/// Who each asked node says owns one entity.
#[derive(Debug, Clone)]
pub struct OwnerRow {
    pub entity: String,
    /// (asked node id, its answer or the error).
    pub answers: Vec<(String, Result<String, String>)>,
}

impl OwnerRow {
    /// The owner, if every asked node answered and named the same one.
    pub fn agreed(&self) -> Option<&str> {
        let mut owners = self.answers.iter().map(|(_, a)| a.as_deref().ok());
        let first = owners.next()??;
        owners.all(|o| o == Some(first)).then_some(first)
    }

    /// `user:x: node-1→node-2 node-2→node-2 …`, for messages.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .answers
            .iter()
            .map(|(asked, a)| match a {
                Ok(owner) => format!("{asked}→{owner}"),
                Err(e) => format!("{asked}→error({e})"),
            })
            .collect();
        format!("{}: {}", self.entity, parts.join(" "))
    }
}

impl Cluster {
    /// Node `i`'s `/v1/cluster`.
    pub async fn view(&self, i: usize) -> Result<ClusterView> {
        self.api(i)?.cluster_view().await
    }

    /// Waits until each of `expected` lists exactly `expected` as ready (in
    /// single-node mode: until each answers `/readyz`).
    pub async fn wait_converged(&mut self, expected: &[usize]) -> Result<()> {
        let ids = self.ids(expected);
        let expectations: Vec<(usize, Vec<String>)> = expected.iter().map(|i| (*i, ids.clone())).collect();
        self.wait_views(&expectations).await
    }

    /// Waits until, for each `(node, ids)`, that node lists exactly `ids`
    /// as ready. On timeout the error shows what every node sees.
    pub async fn wait_views(&mut self, expectations: &[(usize, Vec<String>)]) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            let mut pending = Vec::new();
            for (i, want) in expectations {
                if self.pid(*i).is_none() {
                    return Err(HarnessError::Node(format!(
                        "{} is not running while waiting for views; log tail:\n{}",
                        self.id(*i),
                        log_tail(&self.slots[*i].log, 40)
                    )));
                }
                let mut want = want.clone();
                want.sort();
                let seen = if self.opts.cluster {
                    match self.view(*i).await {
                        Ok(v) if v.ready() == want => continue,
                        Ok(v) => v.summary(),
                        Err(e) => format!("{}: {e}", self.id(*i)),
                    }
                } else if self.slots[*i].api.answers_200("/readyz").await {
                    continue;
                } else {
                    format!("{}: not ready", self.id(*i))
                };
                pending.push(format!("{seen} (want ready [{}])", want.join(" ")));
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout(format!(
                    "views did not converge within {:?}:\n  {}",
                    self.opts.ready_timeout,
                    pending.join("\n  ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i` drops gossip and RPC to and from `peers`.
    pub async fn isolate(&self, i: usize, peers: &[usize]) -> Result<()> {
        self.api(i)?.set_faults(&self.ids(peers)).await
    }

    /// Cuts `a` from `b` (both ways) and waits until each side lists only
    /// itself as ready.
    pub async fn partition(&mut self, a: &[usize], b: &[usize]) -> Result<()> {
        for i in a {
            self.isolate(*i, b).await?;
        }
        for i in b {
            self.isolate(*i, a).await?;
        }
        let (ids_a, ids_b) = (self.ids(a), self.ids(b));
        let mut expectations: Vec<(usize, Vec<String>)> = a.iter().map(|i| (*i, ids_a.clone())).collect();
        expectations.extend(b.iter().map(|i| (*i, ids_b.clone())));
        self.wait_views(&expectations).await
    }

    /// Clears every running member's faults and waits until they all list
    /// each other as ready again.
    pub async fn heal(&mut self) -> Result<()> {
        let running = self.running_members();
        for i in &running {
            self.isolate(*i, &[]).await?;
        }
        self.wait_converged(&running).await
    }

    /// Asks each of `asked` who owns each of `entities`.
    pub async fn owners(&self, entities: &[String], asked: &[usize]) -> Result<Vec<OwnerRow>> {
        let mut rows = Vec::with_capacity(entities.len());
        for entity in entities {
            let mut answers = Vec::with_capacity(asked.len());
            for i in asked {
                let answer = self.api(*i)?.owner(entity).await.map_err(|e| e.to_string());
                answers.push((self.id(*i).to_string(), answer));
            }
            rows.push(OwnerRow {
                entity: entity.clone(),
                answers,
            });
        }
        Ok(rows)
    }

    /// The owner of `entity` as every running member agrees; an error names
    /// the disagreement.
    pub async fn owner_of(&mut self, entity: &str) -> Result<String> {
        let running = self.running_members();
        let rows = self.owners(&[entity.to_string()], &running).await?;
        let row = rows
            .first()
            .ok_or_else(|| HarnessError::Answer("no owner row".into()))?;
        row.agreed()
            .map(str::to_string)
            .ok_or_else(|| HarnessError::Answer(format!("owners disagree: {}", row.summary())))
    }

    /// Ids of running outsiders.
    pub fn outsiders(&mut self) -> Vec<usize> {
        self.running(Role::Outsider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(answers: &[Result<&str, &str>]) -> OwnerRow {
        OwnerRow {
            entity: "user:a".into(),
            answers: answers
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("node-{}", i + 1), a.map(str::to_string).map_err(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn agreement_needs_every_answer() {
        assert_eq!(row(&[Ok("node-2"), Ok("node-2")]).agreed(), Some("node-2"));
        assert_eq!(row(&[Ok("node-2"), Ok("node-1")]).agreed(), None);
        assert_eq!(row(&[Ok("node-2"), Err("timeout")]).agreed(), None);
        assert_eq!(row(&[]).agreed(), None);
        assert_eq!(
            row(&[Ok("node-1"), Err("x")]).summary(),
            "user:a: node-1→node-1 node-2→error(x)"
        );
    }
}
