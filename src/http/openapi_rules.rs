//! What the server enforces that `#[derive(ToSchema)]` and `IntoParams`
//! cannot say: id patterns and lengths, exclusive fields, the two forms of
//! an estimate.
//!
//! The document must describe exactly what the server accepts: a client
//! (or schemathesis, `.ci/schemathesis`) that builds a request the schema
//! allows must not be refused with 400, and one the schema forbids must
//! not be accepted. The patterns here mirror the validators they name;
//! change both together.
//!
//! Applied once, to the JSON form of the document, by
//! [`super::openapi::document_json`].

use serde_json::{Map, Value, json};

/// One character of an entity id (see [`ENTITY_ID`]).
macro_rules! entity_char {
    () => {
        "[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    };
}

/// Entity ids (users, fingerprints; [`crate::entity::EntityKey`]): 1-256
/// characters, none of them a control character (Unicode `Cc`) or
/// whitespace (Unicode `White_Space`). The server counts 256 *bytes*; JSON
/// Schema can only count characters, so `maxLength` is exact for ASCII ids.
const ENTITY_ID: &str = concat!("^", entity_char!(), "+$");

/// Tier names ([`crate::limits::tier`]).
const TIER_NAME: &str = "^[a-z0-9_-]{1,64}$";

/// Model names ([`crate::limits::pricing::valid_model_name`]).
const MODEL: &str = "^[A-Za-z0-9_.:/@-]{1,128}$";

/// An IPv4 address as Rust's `Ipv4Addr` parses it: four decimal octets,
/// no leading zeros.
const IPV4: &str = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}";

/// An IPv6 address as Rust's `Ipv6Addr` parses it (RFC 4291 text forms,
/// with an embedded IPv4 tail), no zone.
fn ipv6() -> String {
    let h = "[0-9A-Fa-f]{1,4}";
    let ls32 = format!("({h}:{h}|{IPV4})");
    [
        format!("({h}:){{6}}{ls32}"),
        format!("::({h}:){{5}}{ls32}"),
        format!("({h})?::({h}:){{4}}{ls32}"),
        format!("(({h}:){{0,1}}{h})?::({h}:){{3}}{ls32}"),
        format!("(({h}:){{0,2}}{h})?::({h}:){{2}}{ls32}"),
        format!("(({h}:){{0,3}}{h})?::{h}:{ls32}"),
        format!("(({h}:){{0,4}}{h})?::{ls32}"),
        format!("(({h}:){{0,5}}{h})?::{h}"),
        format!("(({h}:){{0,6}}{h})?::"),
    ]
    .join("|")
}

/// An IP address, v4 or v6.
fn ip_pattern() -> String {
    format!("^({IPV4}|{})$", ipv6())
}

/// An entity key `kind:id` ([`crate::entity::EntityKey::parse`]).
fn entity_key() -> Value {
    let id = concat!(entity_char!(), "{1,256}");
    json!({
        "type": "string",
        "pattern": format!("^((user|org|fp):{id}|ip:({IPV4}|{}))$", ipv6()),
        "maxLength": 259,
    })
}

fn entity_id() -> Value {
    json!({"type": "string", "pattern": ENTITY_ID, "minLength": 1, "maxLength": 256})
}

/// A display name ([`super::orgs::validate_name`]): 1-200 characters
/// after trimming, no control characters.
fn display_name() -> Value {
    json!({"type": "string", "pattern": "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,200}$"})
}

/// A billing email as `validate_email` takes it: no whitespace or control
/// characters, a non-empty local part, a `.` in the domain.
fn email() -> Value {
    let c = "[^\\s\\u0000-\\u001F\\u007F-\\u009F";
    json!({"type": "string", "maxLength": 254, "pattern": format!("^{c}@]+@{c}]*\\.{c}]*$")})
}

fn ip() -> Value {
    json!({"type": "string", "pattern": ip_pattern()})
}

/// Applies every rule to `doc` (the document as JSON).
pub fn apply(doc: &mut Value) {
    for (path, name, schema) in [
        ("/v1/users/{id}", "id", entity_id()),
        ("/v1/users/{id}/budget", "id", entity_id()),
        ("/v1/orgs/{id}/members/{user_id}", "user_id", entity_id()),
        (
            "/v1/tiers/{name}",
            "name",
            json!({"type": "string", "pattern": TIER_NAME}),
        ),
        (
            "/v1/prices/{model}",
            "model",
            json!({"type": "string", "pattern": MODEL}),
        ),
        ("/v1/status", "user_id", entity_id()),
        ("/v1/status", "ip", ip()),
        ("/v1/status", "fingerprint", entity_id()),
        ("/v1/cluster/owner", "entity", entity_key()),
    ] {
        parameter(doc, path, name, schema);
    }

    status_subject(doc);

    let schemas = &mut doc["components"]["schemas"];
    for (schema, field, rule) in [
        ("CheckRequest", "user_id", entity_id()),
        ("UsageRequest", "user_id", entity_id()),
        ("GuestRef", "ip", ip()),
        ("GuestRef", "fingerprint", entity_id()),
        ("CreateOrgBody", "owner_user_id", entity_id()),
        ("CreateOrgBody", "name", display_name()),
        ("CreateOrgBody", "billing_email", email()),
        ("UpdateOrgBody", "name", display_name()),
        ("UpdateOrgBody", "billing_email", email()),
        ("CreateKeyBody", "name", display_name()),
    ] {
        property(&mut schemas[schema], field, rule);
    }
    // Alert thresholds are percentages of the budget (`limits::alerts::Thresholds`).
    if let Some(items) = schemas.pointer_mut("/BudgetBody/properties/alert_thresholds/items") {
        merge(items, json!({"type": "integer", "minimum": 1, "maximum": 100}));
    }
    // A channel's target follows its kind: an e-mail address, or an
    // `https` URL (whose host must also resolve to public addresses, which
    // no schema can say; see .ci/schemathesis.toml).
    merge(
        &mut schemas["CreateChannelBody"],
        json!({
            "if": {"properties": {"kind": {"const": "email"}}},
            "then": {"properties": {"target": {"pattern": "^[^@\\s]+@[^@\\s]+$"}}},
            "else": {"properties": {"target": {"pattern": "^https://"}}}
        }),
    );
    // Sums (spent, held, totals, computed costs) can pass the most a client
    // may send: an answer's amounts are unbounded.
    for (schema, field) in [
        ("BudgetJson", "spent_usd"),
        ("BudgetJson", "held_usd"),
        ("SummaryGroupJson", "cost_usd"),
        ("SummaryResponse", "total_usd"),
        ("ReleaseResponse", "amount_usd"),
        ("UsageResponse", "cost_usd"),
    ] {
        if let Some(property) = schemas.pointer_mut(&format!("/{schema}/properties/{field}")) {
            unbounded(property);
        }
    }
    property(
        &mut schemas["CheckRequest"],
        "model",
        json!({"type": "string", "pattern": MODEL}),
    );
    // A token estimate is priced with `model`: it must be named.
    set(
        &mut schemas["CheckRequest"],
        "if",
        json!({
            "required": ["estimate"],
            "properties": {"estimate": {
                "type": "object",
                "required": ["input_tokens"],
                "properties": {"input_tokens": {"type": "integer"}},
            }},
        }),
    );
    set(
        &mut schemas["CheckRequest"],
        "then",
        json!({"required": ["model"], "properties": {"model": {"type": "string"}}}),
    );
    // The server takes any `local@domain.tld`-shaped address, not only
    // what JSON Schema's `email` format allows: the pattern says it.
    for schema in ["CreateOrgBody", "UpdateOrgBody"] {
        if let Some(Value::Object(property)) = schemas.pointer_mut(&format!("/{schema}/properties/billing_email")) {
            property.remove("format");
        }
    }
    // Absent and `null` are alike here (serde's `Option`).
    for field in ["name", "subscription_tier"] {
        if let Some(property) = schemas.pointer_mut(&format!("/UpdateOrgBody/properties/{field}")) {
            property["type"] = json!(["string", "null"]);
        }
    }
    for schema in ["CheckRequest", "UsageRequest"] {
        // `user_id` and `guest` name the subject: one or the other (a
        // `null` counts as absent).
        set(
            &mut schemas[schema],
            "not",
            json!({
                "required": ["user_id", "guest"],
                "properties": {"user_id": {"type": "string"}, "guest": {"type": "object"}},
            }),
        );
    }
    // Property examples are composed into one request by generators:
    // keep only those that can stand together.
    for (schema, field) in [
        ("CheckRequest", "user_id"),
        ("UsageRequest", "user_id"),
        ("CreateKeyBody", "user_id"),
        ("CreateKeyBody", "scopes"),
    ] {
        if let Some(Value::Object(property)) = schemas.pointer_mut(&format!("/{schema}/properties/{field}")) {
            property.remove("example");
        }
    }
    // Examples that satisfy the rules (generators compose the property
    // examples otherwise, naming both subjects and both estimate forms).
    set(
        &mut schemas["CheckRequest"],
        "example",
        json!({"user_id": "u_123", "model": "claude-sonnet-4", "estimate": {"cost_usd": "0.0123"}, "requests": 1}),
    );
    set(
        &mut schemas["UsageRequest"],
        "example",
        json!({
            "event_id": "0193a1c2-e4f5-7b8c-9d0e-1f2a3b4c5d6e",
            "user_id": "u_123",
            "model": "claude-sonnet-4",
            "input_tokens": 1234,
            "output_tokens": 567,
            "cost_usd": "0.0123",
        }),
    );
    set(&mut schemas["Estimate"], "example", json!({"cost_usd": "0.0123"}));
    // Key scopes: `check` acts as a user, `org_admin` manages an
    // organisation, `admin` belongs to neither.
    let has = |scope: &str| json!({"required": ["scopes"], "properties": {"scopes": {"contains": {"const": scope}}}});
    set(
        &mut schemas["CreateKeyBody"],
        "allOf",
        json!([
            {"if": has("check"), "then": {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}}},
            {"if": has("org_admin"), "then": {"required": ["org_id"], "properties": {"org_id": {"type": "string"}}}},
            {"if": has("admin"), "then": {"properties": {"org_id": {"type": "null"}, "user_id": {"type": "null"}}}},
        ]),
    );
    property(&mut schemas["CreateKeyBody"], "user_id", entity_id());
    set(
        &mut schemas["CreateKeyBody"],
        "example",
        json!({"name": "backend (production)", "scopes": ["service"]}),
    );
    // An estimate is `{"cost_usd"}` or `{"input_tokens", "max_output_tokens"}`.
    set(
        &mut schemas["Estimate"],
        "oneOf",
        json!([
            {
                "required": ["cost_usd"],
                "properties": {
                    "cost_usd": {"$ref": "#/components/schemas/Usd"},
                    "input_tokens": {"type": "null"},
                    "max_output_tokens": {"type": "null"},
                },
            },
            {
                "required": ["input_tokens", "max_output_tokens"],
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "max_output_tokens": {"type": "integer"},
                },
                // No cost beside the tokens (`null` counts as absent).
                "not": {"required": ["cost_usd"], "properties": {"cost_usd": {"$ref": "#/components/schemas/Usd"}}},
            },
        ]),
    );
}

/// `GET /v1/status` names its subject like a check: `user_id`, or a guest
/// by `ip` (and `fingerprint`), not both; `fingerprint` only with `ip`.
/// Separate query parameters cannot say that, so the three become one
/// exploded object parameter (the same query string).
fn status_subject(doc: &mut Value) {
    let Some(Value::Array(parameters)) = doc.pointer_mut("/paths/~1v1~1status/get/parameters") else {
        return;
    };
    let names = ["user_id", "ip", "fingerprint"];
    let mut properties = Map::new();
    parameters.retain(|p| {
        let name = p["name"].as_str().unwrap_or_default();
        if p["in"] == "query" && names.contains(&name) {
            let mut schema = p["schema"].clone();
            if let Some(description) = p.get("description") {
                schema["description"] = description.clone();
            }
            properties.insert(name.to_string(), schema);
            false
        } else {
            true
        }
    });
    parameters.insert(
        0,
        json!({
            "name": "subject",
            "in": "query",
            "style": "form",
            "explode": true,
            "required": false,
            "description": "Whose status (see the names below): `user_id`, or `ip` with an optional \
                            `fingerprint`; neither for the caller itself.",
            "schema": {
                "type": "object",
                "properties": properties,
                "additionalProperties": false,
                "dependentRequired": {"fingerprint": ["ip"]},
                "not": {"required": ["user_id", "ip"]},
            },
        }),
    );
}

/// Replaces references to the (bounded) `Usd` schema inside `schema` with
/// an unbounded non-negative decimal string.
fn unbounded(schema: &mut Value) {
    match schema {
        Value::Object(object) if object.get("$ref") == Some(&json!("#/components/schemas/Usd")) => {
            object.remove("$ref");
            object.insert("type".into(), json!("string"));
            object.insert("pattern".into(), json!("^[0-9]+(\\.[0-9]+)?$"));
        }
        Value::Object(object) => object.values_mut().for_each(unbounded),
        Value::Array(items) => items.iter_mut().for_each(unbounded),
        _ => {}
    }
}

/// Sets `key` in an object schema (a no-op on anything else).
fn set(schema: &mut Value, key: &str, value: Value) {
    if let Some(object) = schema.as_object_mut() {
        object.insert(key.to_string(), value);
    }
}

/// Narrows one property of an object schema, keeping its description and
/// whether it may be `null`.
fn property(schema: &mut Value, field: &str, rule: Value) {
    let Some(property) = schema.pointer_mut(&format!("/properties/{field}")) else {
        return;
    };
    let nullable = property["type"]
        .as_array()
        .is_some_and(|types| types.contains(&json!("null")));
    let mut narrowed = rule;
    if nullable {
        narrowed["type"] = json!(["string", "null"]);
    }
    merge(property, narrowed);
}

/// Narrows the schema of parameter `name` on every operation of `path`.
fn parameter(doc: &mut Value, path: &str, name: &str, rule: Value) {
    let Some(Value::Object(item)) = doc.pointer_mut(&format!("/paths/{}", path.replace('/', "~1"))) else {
        return;
    };
    for operation in item.values_mut() {
        let Some(Value::Array(parameters)) = operation.get_mut("parameters") else {
            continue;
        };
        for parameter in parameters.iter_mut().filter(|p| p["name"] == name) {
            let schema = parameter
                .as_object_mut()
                .map(|p| p.entry("schema").or_insert_with(|| Value::Object(Map::new())));
            if let Some(schema) = schema {
                merge(schema, rule.clone());
            }
        }
    }
}

/// Copies every key of `rule` into `schema`.
fn merge(schema: &mut Value, rule: Value) {
    if let (Some(schema), Value::Object(rule)) = (schema.as_object_mut(), rule) {
        schema.extend(rule);
    }
}
