//! Serving peers: the internal RPC's request handler.

use super::cluster::{ClusterRouting, Target};
use super::flusher::Flusher;
use super::peer::{Invalidation, PeerRequest, PeerResponse};
use super::{EntityRouter, LocalEntities};
use crate::catalog::Catalog;
use crate::cluster::NodeId;
use crate::cluster::rpc::Handler;
use crate::identity::Directory;
use crate::identity::api_keys::ApiKeys;
use crate::store::OrgRole;
use crate::store::Store;
use std::sync::Arc;

/// How many entities a leaving node's adoption request starts at once.
const ADOPT_CONCURRENCY: usize = 32;

/// Answers other nodes.
pub struct PeerHandler {
    pub router: EntityRouter,
    pub local: Arc<LocalEntities>,
    pub flusher: Arc<Flusher>,
    pub cluster: Arc<ClusterRouting>,
    pub directory: Arc<Directory>,
    pub keys: ApiKeys,
    pub catalog: Arc<Catalog>,
    pub store: Store,
}

#[async_trait::async_trait]
impl Handler<PeerRequest, PeerResponse> for PeerHandler {
    async fn handle(&self, req: PeerRequest) -> Result<PeerResponse, String> {
        Ok(match req {
            PeerRequest::Entity { key, op, .. } => match self.cluster.target(&key) {
                Target::Local => match self.router.run_local(&key, op).await {
                    Ok(reply) => PeerResponse::Op(reply),
                    Err(err) => PeerResponse::Failed(err.to_string()),
                },
                // The sender's view is ahead of or behind ours: it retries.
                _ => PeerResponse::NotOwner,
            },
            PeerRequest::Surrender { key, to } => {
                // Route new requests to the new owner before letting go, so
                // none is served here from what is about to be stale.
                if self.local.is_resident(&key) {
                    self.cluster.note_moved(&key, NodeId::new(to));
                }
                let snapshot = self.local.surrender(&key).await;
                if snapshot.is_some() {
                    metrics::counter!("tollgate_handoffs_total", "direction" => "out").increment(1);
                }
                // Our own deltas go to the store under our epoch before the
                // new owner claims the next one.
                if let Err(err) = self.flusher.flush_entity(&key).await {
                    tracing::warn!(entity = %key, error = %err, "could not write deltas of a surrendered entity");
                }
                PeerResponse::Surrendered(snapshot)
            }
            PeerRequest::Adopt { keys } => {
                use futures_util::StreamExt;
                let adopted = futures_util::stream::iter(keys)
                    .map(|key| async move { self.local.ensure_resident(&key).await.is_ok() })
                    .buffer_unordered(ADOPT_CONCURRENCY)
                    .filter(|ok| std::future::ready(*ok))
                    .count()
                    .await;
                tracing::debug!(adopted, "adopted entities from a leaving node");
                PeerResponse::Done
            }
            PeerRequest::Invalidate(Invalidation::Membership { user_id, org }) => {
                match org {
                    Some((org_id, role)) => {
                        let role: OrgRole = role.parse().map_err(|e| format!("{e}"))?;
                        self.directory.set(&user_id, &org_id, role);
                    }
                    None => self.directory.remove(&user_id),
                }
                PeerResponse::Done
            }
            PeerRequest::Invalidate(Invalidation::Catalog) => {
                self.catalog.reload(&self.store).await.map_err(|e| e.to_string())?;
                PeerResponse::Done
            }
            PeerRequest::Invalidate(Invalidation::ApiKey { key_id }) => {
                self.keys.reload(&key_id).await.map_err(|e| e.to_string())?;
                PeerResponse::Done
            }
        })
    }
}
