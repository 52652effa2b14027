//! `GET /v1/status`: counters and budget without consuming anything.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::subject::{self, GuestRef};
use super::views::{self, BudgetJson, LimitJson};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusResponse<'a> {
    pub tier: String,
    pub limits: Vec<LimitJson<'a>>,
    pub budgets: Vec<BudgetJson<'a>>,
}

pub async fn status(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Response, ApiError> {
    let guest = match (q.ip, q.fingerprint) {
        (Some(ip), fingerprint) => Some(GuestRef { ip, fingerprint }),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "ip",
                "a guest is named by ip (and optionally fingerprint)",
            ));
        }
        (None, None) => None,
    };
    let subject = subject::resolve(&caller, &app.directory, q.user_id.as_deref(), guest.as_ref())?;
    let mut found = Vec::with_capacity(subject.entities.len());
    for key in &subject.entities {
        found.push(app.router.view(key).await?);
    }
    Ok(Json(StatusResponse {
        tier: found.first().map(|v| v.tier.name.clone()).unwrap_or_default(),
        limits: views::limits(&found),
        budgets: views::budgets(&found),
    })
    .into_response())
}
