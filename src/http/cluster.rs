//! `GET /v1/cluster`, `GET /v1/cluster/owner` and the test-only
//! `PUT /v1/cluster/faults`.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, OpsCaller};
use crate::entity::EntityKey;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// One node as this node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeJson {
    pub node_id: String,
    pub http_addr: Option<String>,
    pub rpc_addr: Option<String>,
    /// `joining`, `ready` or `leaving`.
    #[schema(value_type = String, example = "ready")]
    pub status: &'static str,
    /// Grows at every start of the node.
    pub generation: u64,
    /// Resident entities (gossiped about once a second).
    pub entities: u64,
    /// False once the failure detector has declared the node dead.
    pub live: bool,
}

/// The cluster as the answering node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterResponse {
    /// The answering node.
    pub node_id: String,
    pub nodes: Vec<NodeJson>,
}

/// Cluster membership
///
/// Every node this node knows, with its addresses, status (`joining`,
/// `ready`, `leaving`), generation and resident entity count. A node
/// started without cluster flags lists itself alone. Admin only on the
/// public listener (it names internal addresses); no credential on
/// `--ops-listen`.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "cluster",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The nodes.", body = ClusterResponse),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
    ),
)]
pub async fn view(_: OpsCaller, State(app): State<Arc<AppState>>) -> Json<ClusterResponse> {
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OwnerQuery {
    /// An entity key: `user:<id>`, `org:<id>`, `ip:<address>`, `fp:<fingerprint>`.
    pub entity: String,
}

/// Which node owns an entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerResponse {
    pub entity: String,
    /// `null` while no node is ready.
    pub node_id: Option<String>,
}

/// Entity owner
///
/// The node that owns an entity (rendezvous hashing over live, ready
/// nodes), as this node sees it. Admin only on the public listener; no
/// credential on `--ops-listen`.
#[utoipa::path(
    get,
    path = "/v1/cluster/owner",
    operation_id = "clusterOwner",
    tag = "ops",
    params(OwnerQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The owner.", body = OwnerResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
    ),
)]
pub async fn owner(
    _: OpsCaller,
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

/// A simulated partition.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultsBody {
    /// Node ids to cut this node off from; `[]` heals.
    pub isolate_from: Vec<String>,
}

/// The partition now in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultsResponse {
    pub isolate_from: Vec<String>,
    pub blocked_addrs: Vec<String>,
}

/// Fault injection (tests only)
///
/// Simulates a network partition: this node drops gossip and internal RPC
/// to and from the named nodes until called again with `[]`. Exists only on
/// nodes started with `--enable-fault-injection` (404 elsewhere); admin on
/// the public listener, no credential on `--ops-listen`.
#[utoipa::path(
    put,
    path = "/v1/cluster/faults",
    operation_id = "clusterFaults",
    tag = "ops",
    request_body = FaultsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The partition now in force.", body = FaultsResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
    ),
)]
pub async fn faults(
    _: OpsCaller,
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
