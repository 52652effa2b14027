//! Alert channels: where budget alerts go (signed webhooks, Slack, email).
//!
//! Who may call: a platform admin manages channels without `org_id` (they
//! hear every alert) and any organisation's; an organisation's managers
//! (owners, admins, its `org_admin` keys) only their own organisation's;
//! another tenant's channel is a 404, as everywhere. The worst a hostile
//! manager can do is point their own organisation's alerts somewhere: the
//! target must be `https` and resolve only to public addresses (checked
//! here and again at every delivery), so a channel cannot make a node call
//! internal services; at most [`MAX_CHANNELS`] per organisation, so one
//! alert cannot fan out into a flood. A webhook's signing secret is shown
//! once, in the creation answer, and never again.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller};
use super::openapi::{BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::alerts::address_policy::check_email;
use crate::alerts::signature::new_secret;
use crate::identity::alert_access::AlertReach;
use crate::identity::{Access, Denied, Principal};
use crate::limits::calendar::rfc3339;
use crate::store::{ChannelKind, ChannelRecord, ChannelScope, NewChannel};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

const NO_SUCH_CHANNEL: &str = "no such alert channel";
const NEEDS_SIGN_IN: &str = "alert channels are managed with a credential in Authorization";

/// Live channels one scope (an organisation, or the platform) may have:
/// every alert becomes one delivery per channel, so this bounds the fan-out.
pub const MAX_CHANNELS: u32 = 20;
/// Longest target accepted (a URL or an address).
pub const MAX_TARGET_CHARS: usize = 2048;
/// Most channels one page lists.
pub const MAX_PAGE: u32 = 1000;
/// Channels per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;

fn refused(denied: Denied) -> ApiError {
    ApiError::denied(denied, NO_SUCH_CHANNEL, NEEDS_SIGN_IN)
}

/// How a channel delivers.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKindJson {
    /// `POST` of the alert JSON, signed (Standard Webhooks).
    Webhook,
    /// A Slack incoming-webhook URL (`https://hooks.slack.com/…`).
    Slack,
    /// A plain-text email over the node's SMTP relay.
    Email,
}

impl From<ChannelKindJson> for ChannelKind {
    fn from(kind: ChannelKindJson) -> Self {
        match kind {
            ChannelKindJson::Webhook => ChannelKind::Webhook,
            ChannelKindJson::Slack => ChannelKind::Slack,
            ChannelKindJson::Email => ChannelKind::Email,
        }
    }
}

impl From<ChannelKind> for ChannelKindJson {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Webhook => ChannelKindJson::Webhook,
            ChannelKind::Slack => ChannelKindJson::Slack,
            ChannelKind::Email => ChannelKindJson::Email,
        }
    }
}

/// A new channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelBody {
    pub kind: ChannelKindJson,
    /// An `https` URL (webhook, slack) whose host resolves only to public
    /// addresses, or an email address (email). At most 2048 characters.
    #[schema(max_length = 2048, example = "https://hooks.example.com/tollgate")]
    pub target: String,
    /// The organisation whose alerts (its own and its members') the
    /// channel receives. Omitted: a platform channel, which receives every
    /// alert (platform admins only).
    #[serde(default)]
    pub org_id: Option<String>,
}

/// A channel (never its secret, except once in `secret`; after creation a
/// URL target shows only its scheme and host, since the URL may itself be
/// the credential).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelResponse {
    /// `ach_…`.
    #[schema(example = "ach_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")]
    pub id: String,
    pub kind: ChannelKindJson,
    #[schema(example = "https://hooks.example.com/tollgate")]
    pub target: String,
    /// Null: a platform channel (every alert).
    #[schema(required = true)]
    pub org_id: Option<String>,
    #[schema(format = DateTime, example = "2026-11-28T06:54:10Z")]
    pub created_at: String,
    /// Webhooks only, and only in the answer that created the channel:
    /// the signing secret (`whsec_` + base64 of 32 bytes). Verify each
    /// delivery's `webhook-signature` with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: Option<String>,
}

impl ChannelResponse {
    /// The answer that created the channel: the target as given, and the
    /// webhook's secret once.
    fn created(record: ChannelRecord, secret: Option<String>) -> Self {
        ChannelResponse {
            id: record.id,
            kind: record.kind.into(),
            target: record.target,
            org_id: record.org_id,
            created_at: rfc3339(record.created_at_ms),
            secret,
        }
    }

    /// Every later answer: a URL's path and query are hidden, because for a
    /// Slack incoming webhook (and many webhook receivers) the URL itself is
    /// the credential.
    fn listed(record: ChannelRecord) -> Self {
        let target = redacted_target(record.kind, &record.target);
        ChannelResponse {
            id: record.id,
            kind: record.kind.into(),
            target,
            org_id: record.org_id,
            created_at: rfc3339(record.created_at_ms),
            secret: None,
        }
    }
}

/// `https://hooks.slack.com/services/T0/B0/xyz` → `https://hooks.slack.com/…`;
/// email addresses are shown whole (they are where the alert goes, not a
/// credential).
fn redacted_target(kind: ChannelKind, target: &str) -> String {
    match kind {
        ChannelKind::Email => target.to_string(),
        ChannelKind::Webhook | ChannelKind::Slack => {
            let Some((scheme, rest)) = target.split_once("://") else {
                return "…".to_string();
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            // Credentials in the authority (`user:pass@host`) are hidden too.
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
    }
}

/// Create an alert channel
///
/// Platform admins create channels without `org_id` (every alert) or for
/// any organisation; an organisation's owners, admins and `org_admin` keys
/// for their own organisation. Webhook and Slack targets must be `https`
/// and resolve only to public addresses (unless the node runs with
/// `--alerts-allow-private`); redirects are never followed. A webhook's
/// signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/alert-channels",
    operation_id = "create_alert_channel",
    tag = "alerts",
    request_body = CreateChannelBody,
    responses(
        (status = 201, description = "Created; a webhook's `secret` is shown this once.", body = ChannelResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateChannelBody>,
) -> Result<(StatusCode, Json<ChannelResponse>), ApiError> {
    let access = Access::new(&caller, &app.directory);
    access.may_manage_channel(body.org_id.as_deref()).map_err(refused)?;
    if let Some(org) = &body.org_id
        && app.store.get_org(org).await?.is_none()
    {
        return Err(ApiError::not_found("not_found", "no such organisation"));
    }
    let kind = ChannelKind::from(body.kind);
    let target = body.target.trim();
    if target.is_empty() || target.chars().count() > MAX_TARGET_CHARS {
        return Err(ApiError::invalid(
            "target",
            format!("must be 1-{MAX_TARGET_CHARS} characters"),
        ));
    }
    let target = match kind {
        ChannelKind::Webhook | ChannelKind::Slack => app
            .alert_resolver
            .vet_url(target)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", e.to_string()))?
            .to_string(),
        ChannelKind::Email => check_email(target)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", e.to_string()))?
            .to_string(),
    };
    let scope = match &body.org_id {
        Some(org) => ChannelScope::Org(org.clone()),
        None => ChannelScope::Platform,
    };
    if app.store.channels(&scope, None, MAX_CHANNELS).await?.len() >= MAX_CHANNELS as usize {
        return Err(ApiError::invalid(
            "org_id",
            format!("at most {MAX_CHANNELS} alert channels each; delete one first"),
        ));
    }
    let secret = (kind == ChannelKind::Webhook).then(new_secret);
    let channel = NewChannel {
        id: format!("ach_{}", uuid::Uuid::now_v7().simple()),
        kind,
        target,
        org_id: body.org_id,
        secret: secret.clone(),
        created_by: created_by(&caller),
    };
    app.store.create_channel(&channel).await?;
    let record = app
        .store
        .channel(&channel.id)
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_CHANNEL))?;
    Ok((StatusCode::CREATED, Json(ChannelResponse::created(record, secret))))
}

/// Who created a channel, for the record (never a secret).
fn created_by(caller: &Principal) -> Option<String> {
    match caller {
        Principal::Admin => Some("admin".into()),
        Principal::User { user_id } => Some(format!("user:{user_id}")),
        Principal::Key(grant) => Some(format!("key:{}", grant.id)),
        Principal::Guest(_) => None,
    }
}

/// A page of channels.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelListQuery {
    /// Only this organisation's channels (admins: any; managers: their own).
    pub org_id: Option<String>,
    /// Channels per page, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^ach_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// Channels, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelResponse>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

fn is_channel_id(text: &str) -> bool {
    text.strip_prefix("ach_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// List alert channels
///
/// Never their secrets. Admins see every channel (or one organisation's,
/// with `org_id`); an organisation's managers see their organisation's.
#[utoipa::path(
    get,
    path = "/v1/alert-channels",
    operation_id = "list_alert_channels",
    tag = "alerts",
    params(ChannelListQuery),
    responses(
        (status = 200, description = "A page of channels.", body = ChannelList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ChannelListQuery>,
) -> Result<Json<ChannelList>, ApiError> {
    let reach = Access::new(&caller, &app.directory)
        .channel_listing(q.org_id.as_deref())
        .map_err(refused)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1-{MAX_PAGE}")));
    }
    if let Some(cursor) = &q.cursor
        && !is_channel_id(cursor)
    {
        return Err(ApiError::invalid("cursor", "is not a cursor this route gave out"));
    }
    let scope = match reach {
        AlertReach::All => ChannelScope::All,
        AlertReach::Org(org) => ChannelScope::Org(org.to_string()),
        AlertReach::Entity(_) => return Err(refused(Denied::Hidden)),
    };
    let mut records = app.store.channels(&scope, q.cursor.as_deref(), limit + 1).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = more.then(|| records.last().map(|r| r.id.clone())).flatten();
    let items = records.into_iter().map(ChannelResponse::listed).collect();
    Ok(Json(ChannelList { items, next_cursor }))
}

/// Delete an alert channel
///
/// It receives nothing more; its pending deliveries are dropped (marked
/// dead). Same callers as creating it; another organisation's channel is
/// a 404. Answers with the channel as it was.
#[utoipa::path(
    delete,
    path = "/v1/alert-channels/{id}",
    operation_id = "delete_alert_channel",
    tag = "alerts",
    params(("id" = String, Path, description = "The channel's id.", pattern = "^ach_[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "Deleted; the channel as it was.", body = ChannelResponse),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ChannelResponse>, ApiError> {
    let access = Access::new(&caller, &app.directory);
    access.signed_in().map_err(refused)?;
    let channel = match is_channel_id(&id) {
        true => app.store.channel(&id).await?,
        false => None,
    };
    let Some(channel) = channel else {
        return Err(refused(Denied::Hidden));
    };
    // A platform channel is invisible to anyone but a platform admin.
    if channel.org_id.is_none() && !access.is_admin() {
        return Err(refused(Denied::Hidden));
    }
    access.may_manage_channel(channel.org_id.as_deref()).map_err(refused)?;
    if !app.store.delete_channel(&id).await? {
        return Err(refused(Denied::Hidden));
    }
    Ok(Json(ChannelResponse::listed(channel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_urls_hide_everything_after_the_host() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXX";
        assert_eq!(redacted_target(ChannelKind::Slack, slack), "https://hooks.slack.com/…");
        let hook = "https://user:pw@hooks.example.com:8443/x?token=abc";
        assert_eq!(
            redacted_target(ChannelKind::Webhook, hook),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(redacted_target(ChannelKind::Webhook, "not a url"), "…");
        assert_eq!(
            redacted_target(ChannelKind::Email, "ops@example.com"),
            "ops@example.com"
        );
    }
}
