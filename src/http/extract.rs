//! Extractors that turn every malformed input into a JSON 4xx naming the
//! problem: bodies (JSON, ≤ 64 KiB), query strings and the caller.

use super::AppState;
use super::error::ApiError;
use crate::identity::{Access, Principal};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Errors name the field path (`estimate.input_tokens: …`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out entirely (then `T::default()`).
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body must be at most {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
        }
    })
}

/// For `Option<Option<T>>` fields: absent is `None` (with
/// `#[serde(default)]`), `null` is `Some(None)`, a value `Some(Some(v))`.
pub fn explicit_null<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Parses JSON, reporting the path of the first bad field. Valid bodies
/// take the plain parser; only a failure is parsed again with path tracking
/// to name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is a JSON object. serde would also read a struct from an
    // array of its fields in order (`[null, null]`), which no client means.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "body: invalid type: a request body must be a JSON object",
        ));
    }
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    // JSON (and JSON Schema's `integer`) does not tell `3.0` from `3`;
    // serde does. A body refused only for an integral float is read again
    // with those numbers as integers.
    if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(bytes)
        && integral_floats_to_integers(&mut json)
        && let Ok(value) = serde_json::from_value(json)
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("body: {e}")))?;
    Ok(value)
}

/// Rewrites every float with no fractional part (`417.0`, `1e3`) that fits
/// an `i64` or `u64` as that integer; true if it rewrote any.
fn integral_floats_to_integers(json: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match json {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            // Exactly representable integers only: both bounds are powers
            // of two, so the casts below are exact.
            let integer = if f.fract() != 0.0 {
                None
            } else if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                Some(serde_json::Number::from(f as u64))
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                Some(serde_json::Number::from(f as i64))
            } else {
                None
            };
            match integer {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| integral_floats_to_integers(v) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| integral_floats_to_integers(v) | any),
        _ => false,
    }
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| ApiError::invalid(&format!("query {}", err.path()), err.into_inner()))
    }
}

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let principal = state.auth.authenticate(&parts.headers, peer).await?;
        if let Some(slot) = parts.extensions.get::<super::request_layer::CallerSlot>() {
            slot.set(principal.kind());
        }
        Ok(Caller(principal))
    }
}

/// A caller with the admin role (admin token, admin key, or admin JWT).
pub struct AdminCaller;

impl FromRequestParts<Arc<AppState>> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        Access::new(&caller, &state.directory)
            .admin_only()
            .map(|()| AdminCaller)
            .map_err(|denied| {
                ApiError::denied(
                    denied,
                    "not found",
                    "this route needs the admin token (or an admin API key or JWT) in `Authorization: Bearer <token>`",
                )
            })
    }
}

/// Marks a request that arrived on `--ops-listen` (set by that listener's
/// app only; a client cannot add it).
#[derive(Debug, Clone, Copy)]
pub struct OpsListener;

/// A caller of an operators' route (`/metrics`, `/v1/cluster*`): anyone on
/// `--ops-listen`, which is bound to a private address, and only the admin
/// on the public listener: those routes list internal addresses and load.
pub struct OpsCaller;

impl FromRequestParts<Arc<AppState>> for OpsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        if parts.extensions.get::<OpsListener>().is_some() {
            return Ok(OpsCaller);
        }
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        Access::new(&caller, &state.directory)
            .admin_only()
            .map(|()| OpsCaller)
            .map_err(|denied| {
                ApiError::denied(
                    denied,
                    "not found",
                    "this route needs the admin token (or an admin API key or JWT) in `Authorization: Bearer <token>`, or the --ops-listen address",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        n: u32,
        m: Option<i64>,
    }

    #[test]
    fn integral_floats_are_integers() {
        let body: Body = parse_json(br#"{"n": 417.0, "m": -2e0}"#).unwrap();
        assert_eq!(body, Body { n: 417, m: Some(-2) });
    }

    #[test]
    fn fractions_and_non_objects_are_refused() {
        let fraction = parse_json::<Body>(br#"{"n": 417.5}"#).unwrap_err();
        assert_eq!(fraction.status, StatusCode::BAD_REQUEST);
        let array = parse_json::<Body>(br#"[1, null]"#).unwrap_err();
        assert_eq!(array.status, StatusCode::BAD_REQUEST);
    }
}
