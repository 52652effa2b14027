//! The HTTP edge: axum routes for API v1. Handlers parse and authorise,
//! call a service, and shape the answer; every error is mapped here once.

pub mod admin;
pub mod api_keys;
pub mod check;
mod check_json;
pub mod cluster;
pub mod error;
pub mod extract;
pub mod ops;
pub mod orgs;
pub mod status;
pub mod subject;
pub mod summary;
pub mod usage;
pub mod views;

use crate::catalog::Catalog;
use crate::identity::api_keys::ApiKeys;
use crate::identity::{Authenticator, Directory};
use crate::ledger::Ledger;
use crate::router::EntityRouter;
use crate::store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub router: EntityRouter,
    /// Membership, routing and fault hooks (a single node: itself alone).
    pub cluster: Arc<crate::node::ClusterNode>,
    pub catalog: Arc<Catalog>,
    pub ledger: Ledger,
    pub store: Store,
    pub auth: Authenticator,
    /// Who belongs to which organisation (in memory).
    pub directory: Arc<Directory>,
    /// API key management (the authenticator reads the same ring).
    pub keys: ApiKeys,
    /// How long an unsettled reservation holds its estimate.
    pub hold_ttl_ms: i64,
    pub metrics: Option<PrometheusHandle>,
    /// Hot-path counters, registered once (a `counter!` per request would
    /// look the metric up in the registry every time).
    pub metrics_counters: HotCounters,
}

/// Counters bumped on every check.
pub struct HotCounters {
    allowed: metrics::Counter,
    rate_limited: metrics::Counter,
    budget_exceeded: metrics::Counter,
}

impl HotCounters {
    /// Registers the counters with the installed recorder.
    pub fn register() -> Self {
        let check = |outcome: &'static str| metrics::counter!("tollgate_checks_total", "outcome" => outcome);
        HotCounters {
            allowed: check("allowed"),
            rate_limited: check("rate_limited"),
            budget_exceeded: check("budget_exceeded"),
        }
    }

    /// The counter for a check's outcome (`None` = allowed).
    pub fn check(&self, refusal_reason: Option<&str>) -> &metrics::Counter {
        match refusal_reason {
            None => &self.allowed,
            Some("budget_exceeded") => &self.budget_exceeded,
            Some(_) => &self.rate_limited,
        }
    }
}

/// All routes.
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/check", post(check::check))
        .route("/v1/usage", post(usage::record))
        .route("/v1/reservations/{id}", delete(usage::release))
        .route("/v1/status", get(status::status))
        .route("/v1/tiers", get(admin::list_tiers))
        .route("/v1/tiers/{name}", get(admin::get_tier).put(admin::put_tier))
        .route("/v1/users/{id}", put(admin::put_user))
        .route(
            "/v1/users/{id}/budget",
            put(admin::put_user_budget).delete(admin::delete_user_budget),
        )
        .route("/v1/prices/{model}", get(admin::get_price).put(admin::put_price))
        .route("/v1/orgs", post(orgs::create))
        .route("/v1/orgs/{id}", get(orgs::get).put(orgs::update))
        .route(
            "/v1/orgs/{id}/members/{user_id}",
            post(orgs::put_member).delete(orgs::delete_member),
        )
        .route(
            "/v1/orgs/{id}/budget",
            put(orgs::put_budget).delete(orgs::delete_budget),
        )
        .route("/v1/api-keys", post(api_keys::create))
        .route("/v1/api-keys/{id}", get(api_keys::get).delete(api_keys::revoke))
        .route("/v1/api-keys/{id}/rotate", post(api_keys::rotate))
        .route("/v1/usage/summary", get(summary::summary))
        .route("/v1/cluster", get(cluster::view))
        .route("/v1/cluster/owner", get(cluster::owner))
        .route("/v1/cluster/faults", put(cluster::faults))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::error!("a request handler panicked");
    error::ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; nothing was recorded",
    )
    .into_response()
}
