//! Listing API keys: each caller sees the live keys within its reach, a
//! page at a time, never a secret. A user sees every key that acts as
//! them, including those an organisation made, so they can revoke them.

use super::AppState;
use super::api_keys::{KeyResponse, refused};
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};
use crate::identity::Access;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Most keys one page lists.
pub const MAX_PAGE: u32 = 1000;
/// Keys per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;

/// A page of keys.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Keys per page, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^key_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// Keys, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyResponse>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// List API keys
///
/// Live keys within the caller's reach, by id, never their secrets:
/// admins see every key; an organisation's managers (and its `org_admin`
/// keys) its keys; a user, under their own credential, every key that acts
/// as them, including keys an organisation made for them (which they may
/// revoke). Other credentials get 403.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "list_api_keys",
    tag = "api-keys",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of keys.", body = KeyList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let listing = Access::new(&caller, &app.directory).key_listing().map_err(refused)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1-{MAX_PAGE}")));
    }
    if let Some(cursor) = &q.cursor
        && !is_key_id(cursor)
    {
        return Err(ApiError::invalid("cursor", "is not a cursor this route gave out"));
    }
    // One more than asked: whether it exists says if there is a next page.
    let mut records = app
        .store
        .list_api_keys(&listing, q.cursor.as_deref(), limit + 1)
        .await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = more.then(|| records.last().map(|r| r.id.clone())).flatten();
    let items = records.into_iter().map(|r| KeyResponse::new(r, None)).collect();
    Ok(Json(KeyList { items, next_cursor }))
}

/// `key_` and 32 lowercase hex digits, as `ApiKeys::create` makes them.
fn is_key_id(id: &str) -> bool {
    id.strip_prefix("key_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
