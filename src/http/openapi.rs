//! The OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! Every route is registered in [`super::api_router`] through
//! `utoipa_axum`'s `routes!`, which takes the path and method from the
//! handler's `#[utoipa::path]` annotation: the router and the document are
//! built from the same list, so a route cannot be served undocumented. This
//! module holds the document's root (info, tags, security scheme), the
//! shared error responses and the schemas of types serialised by hand.

use super::error::ErrorBody;
use crate::money::Usd;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::borrow::Cow;
use std::sync::OnceLock;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

const DESCRIPTION: &str = "\
Per-entity rate limits, monthly budgets and a usage ledger for chat APIs.

A backend asks `POST /v1/check` before each message (optionally reserving an \
estimated cost), then reports what the call really cost with `POST /v1/usage`. \
Limits come from tiers (daily, monthly and per-minute request limits); budgets are \
monthly USD amounts per user and per organisation. A user in an organisation is \
limited by both: both must allow, and spend counts against both.

**Money** is always a decimal string such as `\"0.0123\"`, never a JSON number. \
**Times** are RFC 3339 strings in UTC.

**Errors** are `{\"error\": code, \"message\": text}`, with a stable machine code and \
a message naming the offending field. A resource the caller may not see is answered \
404, exactly as one that does not exist.

**Credentials** go in `Authorization: Bearer <token>`: the admin token, an API key \
(`tg_…`), or an Auth0 access token (JWT). Checks, usage, status and reservations \
also accept guests (no credential), identified by their IP and the \
`X-Tollgate-Fingerprint` header.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "checks", description = "May this subject send the next message, and afford it?"),
        (name = "usage", description = "Record what calls cost, release reservations, read spend summaries."),
        (name = "admin", description = "Tiers, users, user budgets and model prices."),
        (name = "organisations", description = "Organisations, their members and pooled budgets."),
        (name = "api-keys", description = "API keys: create, read, rotate, revoke."),
        (name = "alerts", description = "Budget alerts: where they go (channels), what fired and how it was delivered."),
        (name = "ops", description = "Liveness, readiness, metrics, cluster membership and this document. `/metrics` and `/v1/cluster*` need the admin credential here; a node started with `--ops-listen` serves them there without one."),
    ),
    modifiers(&BearerAuth),
    components(
        schemas(ErrorBody, Usd, SignedUsd),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, TooManyRequests, Unavailable),
    )
)]
pub struct ApiDoc;

/// Adds the bearer security scheme the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("admin token, API key (tg_…) or Auth0 JWT")
            .description(Some(
                "`Authorization: Bearer <token>` with one of: the admin token (everything); an API key \
                 `tg_…` whose scopes say what it may do (`check`: its own user's checks and usage; \
                 `service`: may name any subject, within its organisation if it has one; `org_admin`: \
                 manage its organisation; `admin`: everything); or an Auth0 access token (RS256, or \
                 HS256 in development) whose `sub` is the user, an admin if its `permissions` or \
                 `scope` contain `tollgate:admin`. A malformed or unknown credential is refused \
                 with 401 `invalid_token`, never treated as a guest.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document, built once (on first use) from the same route list the
/// server runs.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = super::api_router().into_openapi();
        optional_bodies(&mut document);
        document
    })
}

/// utoipa documents an optional body (`request_body = Option<T>`) as `T`
/// or JSON `null`; these routes take `T` or no body at all, so the `null`
/// goes (the body stays not `required`).
fn optional_bodies(document: &mut utoipa::openapi::OpenApi) {
    let operations = document.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
    });
    for operation in operations.flatten() {
        let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
            continue;
        };
        if body.required == Some(utoipa::openapi::Required::True) {
            continue;
        }
        for content in body.content.values_mut().filter_map(|content| match content {
            RefOr::T(content) => Some(content),
            RefOr::Ref(_) => None,
        }) {
            // utoipa 5 put the `null` first, utoipa 6 puts it last.
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                && let [first, second] = one_of.items.as_slice()
            {
                let is_null = |schema: &RefOr<Schema>| matches!(schema, RefOr::T(Schema::Object(null)) if null.schema_type == Type::Null.into());
                let kept = match (is_null(first), is_null(second)) {
                    (true, false) => second.clone(),
                    (false, true) => first.clone(),
                    _ => continue,
                };
                content.schema = Some(kept);
            }
        }
    }
}

/// The document as served: JSON bytes, rendered once, with
/// [`super::openapi_rules`] applied.
pub fn document_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        // The rules add JSON Schema keywords utoipa's types do not model
        // (`not`, `if`/`then`, `dependentRequired`), so they apply to the
        // JSON, not to [`document`].
        let mut json = serde_json::to_value(document()).unwrap_or_default();
        super::openapi_rules::apply(&mut json);
        serde_json::to_vec(&json).unwrap_or_default()
    })
}

/// This document
///
/// The OpenAPI 3.1 description of every route this server answers, generated
/// from the code. Public: needs no credential.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        document_json(),
    )
        .into_response()
}

/// The header a guest (a caller without credentials) is also identified by.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct FingerprintHeader {
    /// For guests only: the browser fingerprint. A guest is limited by its IP
    /// and, when given, by this fingerprint too (1-256 bytes, no spaces).
    #[param(rename = "X-Tollgate-Fingerprint", value_type = String, required = false, example = "fp-3c1a9e")]
    pub fingerprint: Option<String>,
}

/// A non-negative amount in USD, as a decimal string: what Tollgate accepts.
impl PartialSchema for Usd {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A non-negative USD amount as a decimal string (never a JSON number), at most 1000000000.",
            ))
            // At most 1000000000 (money::MAX_USD), and at most 28
            // significant digits (what `rust_decimal` holds exactly).
            .pattern(Some(r"^0*([0-9]{1,9}(\.[0-9]{1,19})?|1000000000(\.0{1,19})?)$"))
            .examples([json!("0.0123")])
            .into()
    }
}

impl ToSchema for Usd {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Usd")
    }
}

/// A USD amount that may be negative (remaining budget after an overshoot),
/// as a decimal string. Documents `Decimal` fields serialised with
/// [`crate::money::decimal_as_string`].
pub struct SignedUsd;

impl PartialSchema for SignedUsd {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A USD amount as a decimal string (never a JSON number); negative only for a budget \
                 overshot by usage recorded after the fact.",
            ))
            .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
            .examples([json!("4.9877")])
            .into()
    }
}

impl ToSchema for SignedUsd {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SignedUsd")
    }
}

/// A response whose body is the common error shape.
fn error_response(description: &str, code: &str, message: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .example(Some(json!({"error": code, "message": message})))
            .build(),
    )
}

/// Declares a reusable error response (`#/components/responses/<name>`).
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => ($description:literal, $code:literal, $message:literal);)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::response::Response>) {
                (stringify!($name), finish(stringify!($name), error_response($description, $code, $message)))
            }
        }
    )*};
}

/// Adds what only some error responses carry.
fn finish(name: &str, response: ResponseBuilder) -> RefOr<utoipa::openapi::response::Response> {
    let response = if name == "Unavailable" || name == "TooManyRequests" {
        response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        )
    } else {
        response
    };
    response.build().into()
}

error_responses! {
    /// 400: malformed JSON, a wrong type, an out-of-range number, an unknown field.
    BadRequest => (
        "Bad input: malformed JSON, a wrong type, an unknown field, an out-of-range value. \
         `error` is `invalid_request`, `invalid_json`, `invalid_body` or `unknown_model`; the \
         message names the field. Nothing was changed.",
        "invalid_request", "estimate.input_tokens: must be at most 100000000"
    );
    /// 401: no credential where one is needed, or a bad one.
    Unauthorized => (
        "No credential where this route needs one (`unauthorized`), or a malformed, expired, \
         revoked or unknown one (`invalid_token`).",
        "invalid_token", "the token is not valid"
    );
    /// 403: a valid credential that may not do this.
    Forbidden => (
        "The credential is valid but may not do this (`forbidden`).",
        "forbidden", "this route needs an admin credential"
    );
    /// 404: absent, or not visible to this credential.
    NotFound => (
        "No such resource, or one this credential may not see: the two are answered alike.",
        "not_found", "no such organisation"
    );
    /// 409: the request conflicts with the current state.
    Conflict => (
        "The request conflicts with the current state (`already_in_org`, `owner`).",
        "already_in_org", "the owner already belongs to an organisation (a user belongs to at most one)"
    );
    /// 413: the body is over 64 KiB.
    PayloadTooLarge => (
        "The request body is over 64 KiB (`body_too_large`).",
        "body_too_large", "request body must be at most 65536 bytes"
    );
    /// 429: a guest brings too many new entities into memory per second.
    TooManyRequests => (
        "A guest (no credential) asked about more new guests or fingerprints in one second than \
         `--max-new-entities-per-ip` allows (`rate_limited`); nothing was counted. Retry after \
         `Retry-After` seconds.",
        "rate_limited", "this client is bringing too many new guests or fingerprints into memory per second"
    );
    /// 503: a dependency is briefly unavailable.
    Unavailable => (
        "A dependency is briefly unavailable (`store_unavailable`, `entity_unavailable`, \
         `auth_unavailable`, `timeout`; `not_ready` from `/readyz`). The message is always \
         `temporarily unavailable, retry`. Retry after `Retry-After` seconds (with the same \
         `request_id` where there is one).",
        "store_unavailable", "temporarily unavailable, retry"
    );
}
