//! Real answers match the document: a scripted session calls every route
//! and checks each body against the schema documented for its (path,
//! method, status), strictly (no undocumented fields). This is what holds
//! the hand-written check JSON (`check_json.rs`) to `CheckResponse`.

use super::common::{ADMIN, Reply, TestDb, TestNode, user_token};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The minimal JSON Schema (2020-12 subset) validator utoipa's output needs.
/// `strict`: an object may carry only documented properties.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, strict: bool) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = doc.pointer(&r[1..]).ok_or_else(|| format!("{at}: bad $ref {r}"))?;
        return validate(doc, target, value, at, strict);
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        let ok = branches
            .iter()
            .filter(|b| validate(doc, b, value, at, strict).is_ok())
            .count();
        return if ok == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {value} matches {ok} of oneOf {branches:?}"))
        };
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            validate(doc, part, value, at, false)?;
        }
        return check_keys(value, &declared(doc, schema), at, strict);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => vec![other.as_str().unwrap_or_default()],
        };
        let is = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(text) = value.as_str() {
        if let Some(pattern) = schema["pattern"].as_str() {
            let re = regex::Regex::new(pattern).map_err(|e| format!("{at}: pattern {pattern}: {e}"))?;
            if !re.is_match(text) {
                return Err(format!("{at}: {text:?} does not match {pattern}"));
            }
        }
        if schema["format"] == "date-time" && OffsetDateTime::parse(text, &Rfc3339).is_err() {
            return Err(format!("{at}: {text:?} is not RFC 3339"));
        }
    }
    let below = |n: f64| schema["minimum"].as_f64().is_some_and(|min| n < min);
    let above = |n: f64| schema["maximum"].as_f64().is_some_and(|max| n > max);
    if let Some(n) = value.as_f64()
        && (below(n) || above(n))
    {
        return Err(format!("{at}: {n} is out of range"));
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"), strict)?;
        }
    }
    if let (Some(props), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: required {name} is missing from {value}"));
            }
        }
        for (name, v) in object {
            if let Some(prop) = props.get(name) {
                validate(doc, prop, v, &format!("{at}.{name}"), true)?;
            }
        }
        check_keys(value, &declared(doc, schema), at, strict)?;
    }
    Ok(())
}

/// Property names a schema declares, through `$ref` and `allOf`.
fn declared(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return doc.pointer(&r[1..]).map(|s| declared(doc, s)).unwrap_or_default();
    }
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(declared(doc, part));
    }
    names
}

fn check_keys(value: &Value, declared: &BTreeSet<String>, at: &str, strict: bool) -> Result<(), String> {
    let extra: Vec<&String> = value
        .as_object()
        .map(|o| o.keys().filter(|k| !declared.contains(*k)).collect())
        .unwrap_or_default();
    if strict && !extra.is_empty() {
        return Err(format!("{at}: undocumented fields {extra:?}"));
    }
    Ok(())
}

/// Checks `reply` against the document; returns the operation it exercised.
fn conforms(doc: &Value, method: &str, template: &str, reply: &Reply) -> (String, String, u16) {
    let status = reply.status.as_u16();
    let at = format!("{method} {template} → {status}");
    let op = &doc["paths"][template][method.to_lowercase()];
    assert!(op.is_object(), "{at}: no such operation in the document");
    let response = &op["responses"][status.to_string()];
    assert!(response.is_object(), "{at}: status not documented: {}", reply.json);
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(&r[1..]).expect("response $ref"),
        None => response,
    };
    let content_type = reply.header("content-type").unwrap_or_default();
    let media = response["content"]
        .as_object()
        .and_then(|c| c.iter().find(|(k, _)| content_type.starts_with(k.as_str())))
        .unwrap_or_else(|| panic!("{at}: content-type {content_type} not documented"));
    if media.0 == "application/json" {
        validate(doc, &media.1["schema"], &reply.json, &at, true).unwrap_or_else(|e| panic!("{e}"));
    }
    (method.to_string(), template.to_string(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented() {
    let db = TestDb::new(super::common::Backend::Sqlite).await.expect("sqlite");
    let n = TestNode::start_with_jwt(&db).await;
    let doc = n.get("/openapi.json", None).await.json;
    let owner = user_token("owner-1");
    let mut seen = BTreeSet::new();
    macro_rules! call {
        ($method:expr, $template:expr, $path:expr, $token:expr, $body:expr) => {{
            let reply = n.call($method, &$path, $token, $body).await;
            seen.insert(conforms(&doc, $method, $template, &reply));
            reply
        }};
    }
    let a = Some(ADMIN);
    let tier = json!({"daily_limit": 1, "monthly_limit": null, "rpm": 5, "price_monthly_usd": "1.50"});
    call!("PUT", "/v1/tiers/{name}", "/v1/tiers/tight", a, Some(tier));
    call!("GET", "/v1/tiers", "/v1/tiers", a, None);
    call!("GET", "/v1/tiers/{name}", "/v1/tiers/tight", a, None);
    call!("GET", "/v1/tiers/{name}", "/v1/tiers/nope", a, None);
    call!("GET", "/v1/tiers", "/v1/tiers", Some(owner.as_str()), None);
    let price = json!({"input_per_mtok_usd": "3", "output_per_mtok_usd": "15"});
    call!("PUT", "/v1/prices/{model}", "/v1/prices/m1", a, Some(price));
    call!("GET", "/v1/prices/{model}", "/v1/prices/m1", a, None);
    call!(
        "PUT",
        "/v1/users/{id}",
        "/v1/users/u1",
        a,
        Some(json!({"tier": "tight"}))
    );
    let budget = json!({"monthly_budget_usd": "5"});
    call!(
        "PUT",
        "/v1/users/{id}/budget",
        "/v1/users/u1/budget",
        a,
        Some(budget.clone())
    );

    let estimate =
        json!({"user_id": "u1", "model": "m1", "estimate": {"input_tokens": 1000, "max_output_tokens": 500}});
    let allowed = call!("POST", "/v1/check", "/v1/check", a, Some(estimate));
    assert_eq!(allowed.status, 200, "{}", allowed.json);
    let refused = call!("POST", "/v1/check", "/v1/check", a, Some(json!({"user_id": "u1"})));
    assert_eq!(refused.status, 429, "{}", refused.json);
    call!(
        "POST",
        "/v1/check",
        "/v1/check",
        a,
        Some(json!({"user_id": "u1", "requests": 0}))
    );
    call!("POST", "/v1/check", "/v1/check", None, Some(json!({})));
    call!("GET", "/v1/status", "/v1/status?user_id=u1", a, None);
    let reservation = allowed.json["reservation_id"].as_str().expect("reservation");
    call!(
        "DELETE",
        "/v1/reservations/{id}",
        format!("/v1/reservations/{reservation}"),
        a,
        None
    );
    call!(
        "DELETE",
        "/v1/reservations/{id}",
        format!("/v1/reservations/{reservation}"),
        a,
        None
    );
    let usage = json!({"event_id": uuid::Uuid::new_v4(), "user_id": "u1", "model": "m1",
                       "input_tokens": 1234, "output_tokens": 567});
    call!("POST", "/v1/usage", "/v1/usage", a, Some(usage));
    call!("DELETE", "/v1/users/{id}/budget", "/v1/users/u1/budget", a, None);

    let org = call!(
        "POST",
        "/v1/orgs",
        "/v1/orgs",
        Some(owner.as_str()),
        Some(json!({"name": "Acme"}))
    );
    assert_eq!(org.status, 201, "{}", org.json);
    let id = org.json["id"].as_str().expect("org id").to_string();
    let org_path = format!("/v1/orgs/{id}");
    call!("GET", "/v1/orgs/{id}", org_path, Some(owner.as_str()), None);
    let rename = json!({"name": "Acme Inc.", "billing_email": "billing@acme.example"});
    call!("PUT", "/v1/orgs/{id}", org_path, Some(owner.as_str()), Some(rename));
    let member = format!("{org_path}/members/u2");
    let invited = call!(
        "POST",
        "/v1/orgs/{id}/members/{user_id}",
        member,
        Some(owner.as_str()),
        None
    );
    assert_eq!(invited.status, 202, "{}", invited.json);
    let invitation = invited.json["invitation_id"].as_str().expect("invitation id");
    let u2 = user_token("u2");
    call!("GET", "/v1/invitations", "/v1/invitations", Some(u2.as_str()), None);
    call!("GET", "/v1/invitations", "/v1/invitations", a, None);
    let accept = format!("/v1/invitations/{invitation}/accept");
    call!(
        "POST",
        "/v1/invitations/{id}/accept",
        accept,
        Some(owner.as_str()),
        None
    );
    let joined = call!("POST", "/v1/invitations/{id}/accept", accept, Some(u2.as_str()), None);
    assert_eq!(joined.status, 200, "{}", joined.json);
    let declined = call!(
        "POST",
        "/v1/orgs/{id}/members/{user_id}",
        format!("{org_path}/members/u3"),
        Some(owner.as_str()),
        None
    );
    let decline = format!(
        "/v1/invitations/{}/accept",
        declined.json["invitation_id"].as_str().expect("invitation id")
    );
    call!(
        "DELETE",
        "/v1/invitations/{id}/accept",
        decline,
        Some(user_token("u3").as_str()),
        None
    );
    call!(
        "DELETE",
        "/v1/invitations/{id}/accept",
        decline,
        Some(user_token("u3").as_str()),
        None
    );
    call!(
        "POST",
        "/v1/orgs/{id}/members/{user_id}",
        format!("{org_path}/members/u4"),
        a,
        None
    );
    let cap = Some(json!({"monthly_budget_usd": "1"}));
    call!(
        "PUT",
        "/v1/users/{id}/budget",
        "/v1/users/u2/budget",
        Some(owner.as_str()),
        cap
    );
    let role = Some(json!({"role": "admin"}));
    call!(
        "POST",
        "/v1/orgs/{id}/members/{user_id}",
        member,
        Some(owner.as_str()),
        role
    );
    call!(
        "DELETE",
        "/v1/orgs/{id}/members/{user_id}",
        member,
        Some(owner.as_str()),
        None
    );
    let owner_leaves = format!("{org_path}/members/owner-1");
    call!(
        "DELETE",
        "/v1/orgs/{id}/members/{user_id}",
        owner_leaves,
        Some(owner.as_str()),
        None
    );
    let org_budget = format!("{org_path}/budget");
    call!(
        "PUT",
        "/v1/orgs/{id}/budget",
        org_budget,
        Some(owner.as_str()),
        Some(budget)
    );
    call!("DELETE", "/v1/orgs/{id}/budget", org_budget, Some(owner.as_str()), None);

    let new_key = json!({"name": "backend", "scopes": ["service"], "org_id": id});
    let key = call!("POST", "/v1/api-keys", "/v1/api-keys", a, Some(new_key));
    assert_eq!(key.status, 201, "{}", key.json);
    let key_path = format!("/v1/api-keys/{}", key.json["id"].as_str().expect("key id"));
    call!("GET", "/v1/api-keys/{id}", key_path, a, None);
    let grace = Some(json!({"grace_period_s": 60}));
    call!(
        "POST",
        "/v1/api-keys/{id}/rotate",
        format!("{key_path}/rotate"),
        a,
        grace
    );
    call!("GET", "/v1/api-keys", "/v1/api-keys?limit=1", a, None);
    call!("GET", "/v1/api-keys", "/v1/api-keys", Some(owner.as_str()), None);
    call!("GET", "/v1/api-keys", "/v1/api-keys?limit=0", a, None);
    call!("GET", "/v1/api-keys", "/v1/api-keys", None, None);
    call!("DELETE", "/v1/api-keys/{id}", key_path, a, None);
    // Alert channels (an IP-literal target: no DNS in tests) and alerts.
    let hook = Some(json!({"kind": "webhook", "target": "https://93.184.215.14/hook"}));
    let channel = call!("POST", "/v1/alert-channels", "/v1/alert-channels", a, hook);
    assert_eq!(channel.status, 201, "{}", channel.json);
    let refused = Some(json!({"kind": "webhook", "target": "http://127.0.0.1/hook"}));
    call!("POST", "/v1/alert-channels", "/v1/alert-channels", a, refused);
    call!("GET", "/v1/alert-channels", "/v1/alert-channels", a, None);
    call!("GET", "/v1/alert-channels", "/v1/alert-channels?limit=0", a, None);
    call!("GET", "/v1/alert-channels", "/v1/alert-channels", None, None);
    let channel_path = format!(
        "/v1/alert-channels/{}",
        channel.json["id"].as_str().expect("channel id")
    );
    call!("DELETE", "/v1/alert-channels/{id}", channel_path, a, None);
    call!("DELETE", "/v1/alert-channels/{id}", channel_path, a, None);
    call!("GET", "/v1/alerts", "/v1/alerts?entity=user:u1", a, None);
    call!("GET", "/v1/alerts", "/v1/alerts?since=yesterday", a, None);
    call!("GET", "/v1/alerts", "/v1/alerts", None, None);
    call!("GET", "/v1/usage/summary", "/v1/usage/summary?group_by=day", a, None);
    call!("GET", "/v1/usage/summary", "/v1/usage/summary?group_by=week", a, None);
    for ops in ["/healthz", "/readyz", "/openapi.json"] {
        call!("GET", ops, ops, None, None);
    }
    // Operators' routes: the admin on the public listener, 401 without.
    for ops in ["/metrics", "/v1/cluster"] {
        call!("GET", ops, ops, a, None);
        call!("GET", ops, ops, None, None);
    }
    call!("GET", "/v1/cluster/owner", "/v1/cluster/owner?entity=user:u1", a, None);
    call!(
        "GET",
        "/v1/cluster/owner",
        "/v1/cluster/owner?entity=user:u1",
        None,
        None
    );
    call!("GET", "/v1/cluster/owner", "/v1/cluster/owner?entity=nope", a, None);
    let partition = Some(json!({"isolate_from": []}));
    call!("PUT", "/v1/cluster/faults", "/v1/cluster/faults", a, partition);

    // Every documented operation answered with a documented success at least once.
    for (method, path, _) in super::operations(&doc) {
        let ok = seen
            .iter()
            .any(|(m, p, s)| *m == method && *p == path && (200..300).contains(s));
        // Metrics are off in tests, and fault injection is off on test
        // nodes: both answer 404 here.
        let fine_without = path == "/metrics" || path == "/v1/cluster/faults";
        assert!(ok || fine_without, "{method} {path} was never answered with success");
    }
    n.stop().await;
}
