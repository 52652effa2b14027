//! `GET /v1/cluster`, `GET /v1/cluster/owner` and the test-only
//! `PUT /v1/cluster/faults`.

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, ApiJson, ApiQuery};
use crate::entity::EntityKey;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One node as this node sees it.
#[derive(Debug, Serialize)]
pub struct NodeJson {
    pub node_id: String,
    pub http_addr: Option<String>,
    pub rpc_addr: Option<String>,
    /// `joining`, `ready` or `leaving`.
    pub status: &'static str,
    /// Grows at every start of the node.
    pub generation: u64,
    /// Resident entities (gossiped about once a second).
    pub entities: u64,
    /// False once the failure detector has declared the node dead.
    pub live: bool,
}

#[derive(Debug, Serialize)]
pub struct ClusterResponse {
    pub node_id: String,
    pub nodes: Vec<NodeJson>,
}

pub async fn view(State(app): State<Arc<AppState>>) -> Json<ClusterResponse> {
    let membership = &app.cluster.membership;
    let view = membership.current();
    let counts: HashMap<String, u64> = membership
        .key_values("entities")
        .await
        .into_iter()
        .filter_map(|(id, v)| Some((id.to_string(), v.parse().ok()?)))
        .collect();
    let self_id = view.self_id.to_string();
    let nodes = view
        .nodes
        .iter()
        .map(|n| {
            let id = n.node_id.to_string();
            let entities = if id == self_id {
                app.router.local().resident() as u64
            } else {
                counts.get(&id).copied().unwrap_or(0)
            };
            NodeJson {
                http_addr: n.http_addr.map(|a| a.to_string()),
                rpc_addr: n.rpc_addr.map(|a| a.to_string()),
                status: n.status.as_str(),
                generation: n.generation,
                entities,
                live: n.live,
                node_id: id,
            }
        })
        .collect();
    Json(ClusterResponse {
        node_id: self_id,
        nodes,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerQuery {
    /// An entity key: `user:<id>`, `org:<id>`, `ip:<address>`, `fp:<fingerprint>`.
    pub entity: String,
}

#[derive(Debug, Serialize)]
pub struct OwnerResponse {
    pub entity: String,
    /// `null` while no node is ready.
    pub node_id: Option<String>,
}

pub async fn owner(
    State(app): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<OwnerQuery>,
) -> Result<Json<OwnerResponse>, ApiError> {
    let key = EntityKey::parse(&q.entity).map_err(|e| ApiError::invalid("entity", e))?;
    let view = app.cluster.membership.current();
    Ok(Json(OwnerResponse {
        node_id: view.owner(key.as_str()).map(|n| n.node_id.to_string()),
        entity: key.to_string(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsBody {
    /// Node ids to cut this node off from; `[]` heals.
    pub isolate_from: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FaultsResponse {
    pub isolate_from: Vec<String>,
    pub blocked_addrs: Vec<String>,
}

/// Test only (`--enable-fault-injection`): simulates a partition by
/// dropping gossip and RPC between this node and the named nodes.
pub async fn faults(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    ApiJson(body): ApiJson<FaultsBody>,
) -> Result<Json<FaultsResponse>, ApiError> {
    if app.cluster.faults.is_none() {
        return Err(ApiError::not_found(
            "no_route",
            "fault injection is not enabled on this node",
        ));
    }
    let blocked = app
        .cluster
        .isolate_from(&body.isolate_from)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e))?;
    tracing::warn!(isolate_from = ?body.isolate_from, "fault injection: partition changed");
    Ok(Json(FaultsResponse {
        isolate_from: body.isolate_from,
        blocked_addrs: blocked.iter().map(ToString::to_string).collect(),
    }))
}
