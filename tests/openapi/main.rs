//! `GET /openapi.json`: a well-formed OpenAPI 3.1 document that lists every
//! route the router serves, and nothing it does not.
//!
//! Coverage is checked three ways: (1) the source registers routes only
//! through `utoipa_axum`'s `routes!` (which reads path and method from the
//! handler's `#[utoipa::path]`), never with a plain axum `.route(…)`; (2) the
//! live node answers every documented (path, method) with a handler, not the
//! fallback, and every undocumented method on a documented path with 405;
//! (3) the documented set equals the list below, so adding or removing a
//! route is a deliberate change here too.
//!
//! `conformance` then checks real answers against the documented schemas.
//!
//! Set `TOLLGATE_OPENAPI_OUT=path` to also write the served document there
//! (e.g. to run `openapi-spec-validator` on it).

#[path = "../common/mod.rs"]
mod common;
mod conformance;

use common::{Backend, TestDb, TestNode};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every route, as `(METHOD, path)`.
const EXPECTED: &[(&str, &str)] = &[
    ("POST", "/v1/check"),
    ("POST", "/v1/usage"),
    ("DELETE", "/v1/reservations/{id}"),
    ("GET", "/v1/status"),
    ("GET", "/v1/tiers"),
    ("GET", "/v1/tiers/{name}"),
    ("PUT", "/v1/tiers/{name}"),
    ("PUT", "/v1/users/{id}"),
    ("PUT", "/v1/users/{id}/budget"),
    ("DELETE", "/v1/users/{id}/budget"),
    ("GET", "/v1/prices/{model}"),
    ("PUT", "/v1/prices/{model}"),
    ("POST", "/v1/orgs"),
    ("GET", "/v1/orgs/{id}"),
    ("PUT", "/v1/orgs/{id}"),
    ("POST", "/v1/orgs/{id}/members/{user_id}"),
    ("DELETE", "/v1/orgs/{id}/members/{user_id}"),
    ("PUT", "/v1/orgs/{id}/budget"),
    ("DELETE", "/v1/orgs/{id}/budget"),
    ("GET", "/v1/invitations"),
    ("POST", "/v1/invitations/{id}/accept"),
    ("DELETE", "/v1/invitations/{id}/accept"),
    ("GET", "/v1/api-keys"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys/{id}"),
    ("DELETE", "/v1/api-keys/{id}"),
    ("POST", "/v1/api-keys/{id}/rotate"),
    ("GET", "/v1/usage/summary"),
    ("GET", "/v1/alert-channels"),
    ("POST", "/v1/alert-channels"),
    ("DELETE", "/v1/alert-channels/{id}"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/cluster"),
    ("GET", "/v1/cluster/owner"),
    ("PUT", "/v1/cluster/faults"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// Routes a guest (no credential) may call.
const GUEST_ROUTES: &[&str] = &["/v1/check", "/v1/status"];
/// Public routes: no security at all. (`/metrics` and `/v1/cluster*` need
/// the admin credential on the public listener; `--ops-listen` serves them
/// without one, but the document describes the public listener.)
const PUBLIC_ROUTES: &[&str] = &["/healthz", "/readyz", "/openapi.json"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];
/// Methods probed for 405 on every documented path (axum answers HEAD with
/// the GET handler, and OPTIONS is not routed).
const PROBED: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

async fn served(node: &TestNode) -> Value {
    let reply = node.get("/openapi.json", None).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.json.is_object(), "not a JSON object: {}", reply.json);
    reply.json
}

/// `(METHOD, path)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
        }
        None => node,
    }
}

fn walk<'a>(value: &'a Value, at: &str, visit: &mut impl FnMut(&str, &'a Value)) {
    visit(at, value);
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, &format!("{at}/{k}"), visit)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(v, &format!("{at}/{i}"), visit)),
        _ => {}
    }
}

/// The `{placeholders}` of a path.
fn placeholders(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "sample-x1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_well_formed() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let node = TestNode::start(&db).await;
    let doc = served(&node).await;
    if let Ok(out) = std::env::var("TOLLGATE_OPENAPI_OUT") {
        std::fs::write(&out, serde_json::to_vec_pretty(&doc).expect("json")).expect("write document");
    }
    assert_eq!(
        serde_json::from_slice::<Value>(tollgate::http::openapi::document_json()).expect("json"),
        doc,
        "the served document is the built one"
    );

    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Tollgate");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["description"].as_str().is_some_and(|d| !d.is_empty()));
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().expect("tag name"))
        .collect();
    let want: BTreeSet<&str> = ["checks", "usage", "admin", "organisations", "api-keys", "alerts", "ops"].into();
    assert_eq!(tags, want);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]["securitySchemes"]
    );

    // Every $ref resolves, within components.
    let mut refs = BTreeSet::new();
    walk(&doc, "", &mut |at, v| {
        if let Some(r) = v.get("$ref") {
            let r = r.as_str().unwrap_or_else(|| panic!("{at}: $ref is not a string"));
            assert!(r.starts_with("#/components/"), "{at}: $ref {r} is outside components");
            resolve(&doc, v);
            refs.insert(r.to_string());
        }
    });
    // ... and every component is used.
    for kind in ["schemas", "responses"] {
        for name in doc["components"][kind].as_object().expect("components").keys() {
            let r = format!("#/components/{kind}/{name}");
            assert!(refs.contains(&r), "{r} is never referenced");
        }
    }

    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} is not unique");
        for field in ["summary", "description"] {
            assert!(
                op[field].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{at}: no {field}"
            );
        }
        let op_tags = op["tags"].as_array().unwrap_or_else(|| panic!("{at}: no tags"));
        assert_eq!(op_tags.len(), 1, "{at}: {op_tags:?}");
        assert!(
            tags.contains(op_tags[0].as_str().unwrap_or_default()),
            "{at}: undeclared tag"
        );

        // Responses: at least one, a 2xx among them, every error in the common shape.
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: no responses"));
        assert!(!responses.is_empty(), "{at}: no responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: no success response"
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(response["description"].is_string(), "{at} {status}: no description");
            let code: u16 = status.parse().unwrap_or_else(|_| panic!("{at}: status {status}"));
            if code >= 400 && !(code == 429 && path == "/v1/check") {
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(schema["$ref"], "#/components/schemas/ErrorBody", "{at} {status}");
            }
            if (200..300).contains(&code) {
                assert!(response["content"].is_object(), "{at} {status}: no body documented");
            }
        }

        // Request bodies are JSON objects, never `null` (optional ones may be left out).
        if let Some(body) = op.get("requestBody") {
            let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
            assert_eq!(schema["type"], "object", "{at}: request body {schema}");
        }

        // Path parameters: exactly the placeholders, all required.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let in_path: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{at}: path parameter {p} is not required");
                p["name"].as_str().expect("name").to_string()
            })
            .collect();
        assert_eq!(in_path, placeholders(&path), "{at}: path parameters");

        // Security: public ops none, guest routes optional bearer, the rest bearer.
        let security = op.get("security").cloned().unwrap_or(Value::Null);
        if PUBLIC_ROUTES.contains(&path.as_str()) {
            assert!(security.is_null(), "{at}: public, but {security}");
        } else {
            let reqs = security.as_array().unwrap_or_else(|| panic!("{at}: no security"));
            assert!(reqs.iter().any(|r| r.get("bearer").is_some()), "{at}: {security}");
            let optional = reqs.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            assert_eq!(
                optional,
                GUEST_ROUTES.contains(&path.as_str()),
                "{at}: guests: {security}"
            );
        }
    }

    // Money is a decimal string everywhere; times are RFC 3339 strings.
    let schemas = &doc["components"]["schemas"];
    for name in ["Usd", "SignedUsd"] {
        assert_eq!(schemas[name]["type"], "string", "{name}");
        let pattern = schemas[name]["pattern"].as_str().expect("pattern");
        let re = regex::Regex::new(pattern).expect("pattern compiles");
        for ok in ["0", "0.0123", "12", "1000000000"] {
            assert!(re.is_match(ok), "{name}: {pattern} refuses {ok}");
        }
        for bad in ["", "1e3", "1.2.3", "0x10", " 1", "1."] {
            assert!(!re.is_match(bad), "{name}: {pattern} takes {bad}");
        }
    }
    // A client may send at most 1000000000 (money::MAX_USD).
    let usd = regex::Regex::new(schemas["Usd"]["pattern"].as_str().expect("pattern")).expect("compiles");
    assert!(!usd.is_match("1000000000.5") && !usd.is_match("1000000001"));
    walk(&doc, "", &mut |at, v| {
        let Some(props) = v.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, prop) in props {
            // A nullable field is `oneOf: [{type: null}, schema]`.
            let mut kinds = vec![prop];
            kinds.extend(prop["oneOf"].as_array().into_iter().flatten());
            let resolved: Vec<&Value> = kinds.into_iter().map(|k| resolve(&doc, k)).collect();
            if name.ends_with("_usd") {
                assert!(
                    resolved
                        .iter()
                        .any(|s| s["type"] == "string" && s["pattern"].is_string()),
                    "{at}/{name}"
                );
                assert!(
                    !resolved.iter().any(|s| s["type"] == "number"),
                    "{at}/{name}: a JSON number"
                );
            }
            let time = [
                "resets_at",
                "period_end",
                "created_at",
                "last_used_at",
                "revoked_at",
                "from",
                "to",
            ];
            if time.contains(&name.as_str()) || name.ends_with("_expires_at") {
                assert!(
                    resolved.iter().any(|s| s["format"] == "date-time"),
                    "{at}/{name}: not a date-time"
                );
            }
        }
    });
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_route_is_documented_and_every_documented_route_served() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let node = TestNode::start(&db).await;
    let doc = served(&node).await;

    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let expected: BTreeSet<(String, String)> = EXPECTED.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not documented: {missing:?}; not expected: {extra:?}"
    );

    // What the router's fallback says, to tell it from a handler's 404.
    let fallback = node.get("/no/such/route", None).await;
    assert_eq!(fallback.status, 404);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = sample_path(path);
        for method in PROBED {
            let reply = node.call(method, &url, None, None).await;
            let at = format!("{method} {url}");
            if documented.contains(&(method.to_string(), path.clone())) {
                assert!(
                    reply.json != fallback.json,
                    "{at}: documented, but the router has no such route"
                );
                assert_ne!(reply.status, 405, "{at}: documented, but not routed: {}", reply.json);
            } else {
                assert_eq!(reply.status, 405, "{at}: served, but not documented: {}", reply.json);
                assert_eq!(reply.json["error"], "method_not_allowed", "{at}");
            }
        }
    }
    node.stop().await;
}

/// `pattern` in `code`, not as the tail of a longer name (`EntityRouter::new(`
/// is not `Router::new(`).
fn contains_token(code: &str, pattern: &str) -> bool {
    code.match_indices(pattern).any(|(at, _)| {
        pattern.starts_with('.')
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Routes are registered only in `src/http/mod.rs`, only through
/// `OpenApiRouter::routes(routes!(…))`: any plain axum routing in `src/`
/// would serve a route the document does not list.
#[test]
fn routes_are_registered_only_through_the_documented_router() {
    const FORBIDDEN: &[&str] = &[
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
        "routing::",
        "MethodRouter",
        "Router::new(",
        "Router::<",
    ];
    let mut found = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("read source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for pattern in FORBIDDEN {
                    if contains_token(code, pattern) {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files > 20, "scanned only {files} files");
    assert!(
        found.is_empty(),
        "routes must be registered with `.routes(routes!(handler))` in src/http/mod.rs:\n{}",
        found.join("\n")
    );
    let mod_rs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).expect("mod.rs");
    let registered = mod_rs.matches(".routes(routes!(").count();
    let paths: BTreeSet<&str> = EXPECTED.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        registered,
        paths.len(),
        "one `routes!` per path, one path per `routes!`"
    );
}
