//! Operational routes: liveness, readiness, metrics, and JSON for unknown
//! routes.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `up`, or `down` while the database is unreachable: warm checks are
    /// still served from memory; cold checks and usage answer 503
    /// `store_unavailable` at once.
    #[schema(example = "up")]
    pub store: &'static str,
    /// Entities (users, organisations, guests) held in memory on this node.
    pub resident_entities: usize,
}

/// Liveness
///
/// The process is up. Public.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "Up.", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness
///
/// The node can serve. Public; for load balancers. Never waits for the
/// database: it reports the store's health as last seen by real queries
/// and a probe every 500 ms. A node whose database is down stays ready
/// (`"store": "down"`) for the warm traffic it still serves, unless it
/// runs with `--unready-when-store-down` (then 503 `store_unavailable`).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    // A node that is joining or leaving the cluster should get no traffic
    // from a load balancer.
    if !app.cluster.is_ready() {
        return ApiError::unavailable("not_ready").into_response();
    }
    let store_up = app.store.health().is_up();
    if !store_up && app.unready_when_store_down {
        return ApiError::unavailable("store_unavailable").into_response();
    }
    Json(Ready {
        status: "ready",
        store: if store_up { "up" } else { "down" },
        resident_entities: app.router.local().resident(),
    })
    .into_response()
}

/// Prometheus metrics
///
/// The node's metrics in the Prometheus text format, every family with
/// HELP text (README.md, "Monitoring", lists them). Admin only on the public listener; no credential on
/// `--ops-listen` (point Prometheus there). 404 when metrics are disabled.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format.", body = String,
            content_type = "text/plain"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
    ),
)]
pub async fn metrics(_: super::extract::OpsCaller, State(app): State<Arc<AppState>>) -> Response {
    match &app.metrics {
        Some(handle) => {
            app.scrape_gauges.refresh(&app.store, &app.cluster).await;
            handle.render().into_response()
        }
        None => ApiError::not_found("not_found", "metrics are disabled").into_response(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see README.md for the API")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
