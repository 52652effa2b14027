//! Operational routes: liveness, readiness, metrics, and JSON for unknown
//! routes.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The node can serve: its database answers.
pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    // A node that is joining or leaving the cluster should get no traffic
    // from a load balancer.
    if !app.cluster.is_ready() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the node is joining or leaving the cluster",
        )
        .into_response();
    }
    match app.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "resident_entities": app.router.local().resident()})).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is unavailable",
            )
            .into_response()
        }
    }
}

/// Prometheus metrics.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    match &app.metrics {
        Some(handle) => handle.render().into_response(),
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
