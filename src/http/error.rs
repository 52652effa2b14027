//! Every error the API returns, mapped once: `{"error": code, "message": text}`.

use crate::identity::{AuthError, Denied};
use crate::ledger::LedgerError;
use crate::router::RouteError;
use crate::service::tenancy::TenancyError;
use crate::service::usage::UsageError;
use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The message of every 503, with `Retry-After: 1`.
pub const UNAVAILABLE_MESSAGE: &str = "temporarily unavailable, retry";

/// An API error: a status, a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` on a 429 (a 503 always says 1).
    pub retry_after_s: Option<u64>,
}

/// The body of every error: a stable machine code and a message for
/// people that names the offending field.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// A stable machine code, e.g. `invalid_request`, `invalid_json`,
    /// `unauthorized`, `invalid_token`, `forbidden`, `not_found`,
    /// `body_too_large`, `store_unavailable`, `timeout`.
    #[schema(value_type = String, example = "invalid_request")]
    error: &'a str,
    /// What went wrong, for people; names the field.
    #[schema(value_type = String, example = "requests: must be between 1 and 1000")]
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 429 `rate_limited`: too much, too fast; retry after `retry_after_s`.
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 400 with a message naming the offending field.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {problem}"),
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// An authorisation refusal. `hidden` is the 404 message (the same
    /// as for something that does not exist); `unauthenticated` the 401's.
    pub fn denied(denied: Denied, hidden: &str, unauthenticated: &str) -> Self {
        match denied {
            Denied::Unauthenticated => {
                crate::identity::count_missing_credential();
                Self::unauthorized(unauthenticated)
            }
            Denied::Forbidden(why) => Self::forbidden(why),
            Denied::Hidden => Self::not_found("not_found", hidden),
        }
    }

    /// A 503. Its message is always [`UNAVAILABLE_MESSAGE`]: what failed
    /// inside (a database error, a peer's address) is for the log, never
    /// for the caller. The code says which dependency, coarsely.
    pub fn unavailable(code: &'static str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, UNAVAILABLE_MESSAGE)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.code,
            message: &self.message,
        });
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::MalformedAuthorization | AuthError::InvalidToken | AuthError::InvalidApiKey => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", err.to_string())
            }
            AuthError::KeysUnavailable => {
                tracing::warn!(error = %err, "authentication unavailable");
                Self::unavailable("auth_unavailable")
            }
            AuthError::Guest(g) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", g.to_string()),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> Self {
        match err {
            // An entity that cannot load its state: the database is slow
            // or down (logged by the store's health, not per request).
            RouteError::Load(_) => Self::unavailable("store_unavailable"),
            other => {
                tracing::warn!(error = %other, "entity unavailable");
                Self::unavailable("entity_unavailable")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        // Failing fast is the expected answer during an outage: the
        // store's health logs the outage once, not once per request.
        if !matches!(err, StoreError::Unavailable) {
            tracing::warn!(error = %err, "store error");
        }
        Self::unavailable("store_unavailable")
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::Store(store) if matches!(*store, StoreError::Unavailable) => {}
            err => tracing::warn!(error = %err, "ledger error"),
        }
        Self::unavailable("store_unavailable")
    }
}

impl From<TenancyError> for ApiError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::Store(e) => e.into(),
            TenancyError::Route(e) => e.into(),
        }
    }
}

impl From<UsageError> for ApiError {
    fn from(err: UsageError) -> Self {
        match err {
            UsageError::Ledger(e) => e.into(),
            UsageError::Route(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path to a 503 says the same fixed words, whatever failed
    /// inside, and carries `Retry-After`.
    #[test]
    fn every_503_hides_the_internal_error() {
        let secret = "connection to 10.0.0.7:5432 refused: password authentication failed";
        let errors = [
            ApiError::from(StoreError::Database(sqlx::Error::Protocol(secret.into()))),
            ApiError::from(RouteError::Peer(secret.into())),
            ApiError::from(RouteError::Load(secret.into())),
            ApiError::from(AuthError::KeysUnavailable),
            ApiError::unavailable("timeout"),
        ];
        for error in errors {
            assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error.message, UNAVAILABLE_MESSAGE);
            let response = error.into_response();
            assert_eq!(
                response
                    .headers()
                    .get(axum::http::header::RETRY_AFTER)
                    .map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
        }
    }
}
