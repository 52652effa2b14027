//! The HTTP edge: axum routes for API v1. Handlers parse and authorise,
//! call a service, and shape the answer; every error is mapped here once.

pub mod admin;
pub mod alert_channels;
pub mod alerts;
pub mod api_keys;
pub mod check;
mod check_json;
pub mod cluster;
pub mod error;
pub mod extract;
pub mod invitations;
pub mod key_list;
pub mod openapi;
mod openapi_rules;
pub mod ops;
pub mod org_members;
pub mod orgs;
pub mod request_layer;
pub mod status;
pub mod subject;
pub mod summary;
pub mod timeout;
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
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Which alert destinations are allowed and how their names resolve
    /// (`--alerts-allow-private`, `--alerts-resolve`).
    pub alert_resolver: crate::alerts::AlertResolver,
    /// How long an unsettled reservation holds its estimate.
    pub hold_ttl_ms: i64,
    /// How many new entities each guest client may bring into memory.
    pub new_entities: crate::service::new_entities::NewEntityGate,
    pub metrics: Option<PrometheusHandle>,
    /// Hot-path counters, registered once (a `counter!` per request would
    /// look the metric up in the registry every time).
    pub metrics_counters: HotCounters,
    pub telemetry: crate::telemetry::TelemetryConfig,
    pub scrape_gauges: crate::telemetry::gauges::ScrapeGauges,
    /// `--unready-when-store-down`: `/readyz` answers 503 while the
    /// database is unreachable (by default it stays ready for warm traffic).
    pub unready_when_store_down: bool,
}

/// Metrics touched on every check and every usage event, registered once
/// (a `counter!` per request would look the metric up in the registry
/// every time).
pub struct HotCounters {
    allowed: metrics::Counter,
    rate_limited: metrics::Counter,
    budget_exceeded: metrics::Counter,
    /// `tollgate_check_duration_seconds` by [outcome][local, forwarded].
    durations: [[metrics::Histogram; 2]; 3],
    usage_new: metrics::Counter,
    usage_duplicate: metrics::Counter,
}

const CHECK_OUTCOMES: [&str; 3] = ["allowed", "rate_limited", "budget_exceeded"];

impl HotCounters {
    /// Registers the metrics with the installed recorder.
    pub fn register() -> Self {
        let check = |outcome: &'static str| metrics::counter!("tollgate_checks_total", "outcome" => outcome);
        let duration = |outcome: &'static str| {
            ["local", "forwarded"].map(
                |route| metrics::histogram!("tollgate_check_duration_seconds", "outcome" => outcome, "route" => route),
            )
        };
        HotCounters {
            allowed: check("allowed"),
            rate_limited: check("rate_limited"),
            budget_exceeded: check("budget_exceeded"),
            durations: CHECK_OUTCOMES.map(duration),
            usage_new: metrics::counter!("tollgate_usage_events_total", "duplicate" => "false"),
            usage_duplicate: metrics::counter!("tollgate_usage_events_total", "duplicate" => "true"),
        }
    }

    /// The counter for a recorded usage event.
    pub fn usage(&self, duplicate: bool) -> &metrics::Counter {
        if duplicate {
            &self.usage_duplicate
        } else {
            &self.usage_new
        }
    }

    fn outcome_index(refusal_reason: Option<&str>) -> usize {
        match refusal_reason {
            None => 0,
            Some("budget_exceeded") => 2,
            Some(_) => 1,
        }
    }

    /// The counter for a check's outcome (`None` = allowed).
    pub fn check(&self, refusal_reason: Option<&str>) -> &metrics::Counter {
        match Self::outcome_index(refusal_reason) {
            0 => &self.allowed,
            2 => &self.budget_exceeded,
            _ => &self.rate_limited,
        }
    }

    /// Records how long a check took, handler entry to response.
    pub fn check_duration(&self, refusal_reason: Option<&str>, forwarded: bool, seconds: f64) {
        self.durations[Self::outcome_index(refusal_reason)][usize::from(forwarded)].record(seconds);
    }
}

/// Every route, with its documentation. `routes!` takes each handler's
/// path and method from its `#[utoipa::path]`, so the routes served and the
/// routes in `/openapi.json` are this one list. Register routes only here
/// and only this way: a plain `.route(…)` would serve an undocumented route
/// (tests/openapi.rs refuses one). One `routes!` per path: handlers grouped
/// in one `routes!` are mounted on every path among them.
pub fn api_router() -> OpenApiRouter<Arc<AppState>> {
    ops_api_router(OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()))
        .routes(routes!(check::check))
        .routes(routes!(usage::record))
        .routes(routes!(usage::release))
        .routes(routes!(status::status))
        .routes(routes!(admin::list_tiers))
        .routes(routes!(admin::get_tier, admin::put_tier))
        .routes(routes!(admin::put_user))
        .routes(routes!(admin::put_user_budget, admin::delete_user_budget))
        .routes(routes!(admin::get_price, admin::put_price))
        .routes(routes!(orgs::create))
        .routes(routes!(orgs::get, orgs::update))
        .routes(routes!(org_members::put_member, org_members::delete_member))
        .routes(routes!(orgs::put_budget, orgs::delete_budget))
        .routes(routes!(invitations::list))
        .routes(routes!(invitations::accept, invitations::decline))
        .routes(routes!(api_keys::create, key_list::list))
        .routes(routes!(api_keys::get, api_keys::revoke))
        .routes(routes!(api_keys::rotate))
        .routes(routes!(summary::summary))
        .routes(routes!(alert_channels::create, alert_channels::list))
        .routes(routes!(alert_channels::delete))
        .routes(routes!(alerts::list))
        .routes(routes!(openapi::openapi_json))
}

/// The operators' routes, served on both listeners (see
/// [`extract::OpsCaller`] for who may call them where).
fn ops_api_router(router: OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>> {
    router
        .routes(routes!(cluster::view))
        .routes(routes!(cluster::owner))
        .routes(routes!(cluster::faults))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// All routes, ready to serve. The documentation is compile-time data; the
/// router is the same axum `Router` plain `.route()` calls would build.
pub fn routes(state: Arc<AppState>) -> Router {
    let (router, _document) = api_router().split_for_parts();
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(request_layer::RequestLayer::new(state.telemetry.access_log_sample))
        .with_state(state)
}

/// The `--ops-listen` app: operators' routes only, without a credential
/// (see [`extract::OpsCaller`]). The same handlers as on the public
/// listener, registered the same way; the document is the public one's.
pub fn ops_routes(state: Arc<AppState>) -> Router {
    let (router, _document) = ops_api_router(OpenApiRouter::new()).split_for_parts();
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::Extension(extract::OpsListener))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(request_layer::RequestLayer::new(state.telemetry.access_log_sample))
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
