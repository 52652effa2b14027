//! Bad input never hurts: every malformed request gets a JSON 4xx that
//! names the problem, and nothing is counted, held or spent.

mod common;

use common::{ADMIN, Backend, TestDb, TestNode};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::json;
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::{Period, now_ms};

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<String>,
    status: u16,
    /// A word the error message must contain (the field or the problem).
    mentions: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: &str,
    status: u16,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        token,
        body: (!body.is_empty()).then(|| body.to_string()),
        status,
        mentions,
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    let a = Some(ADMIN);
    let ev = uuid::Uuid::new_v4();
    let usage = |extra: &str| format!(r#"{{"event_id":"{ev}","user_id":"victim","model":"m1",{extra}}}"#);
    let big = format!(r#"{{"user_id":"victim","model":"{}"}}"#, "x".repeat(70 * 1024));
    let mut cases = vec![
        case("malformed json", M::POST, "/v1/check", a, r#"{"user_id": "#, 400, "EOF"),
        case(
            "not an object",
            M::POST,
            "/v1/check",
            a,
            r#"[1,2]"#,
            400,
            "invalid type",
        ),
        case(
            "wrong type user_id",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id": 5}"#,
            400,
            "user_id",
        ),
        case(
            "wrong type requests",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","requests":"two"}"#,
            400,
            "requests",
        ),
        case(
            "zero requests",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","requests":0}"#,
            400,
            "requests",
        ),
        case(
            "too many requests",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","requests":100000}"#,
            400,
            "requests",
        ),
        case(
            "negative requests",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","requests":-1}"#,
            400,
            "requests",
        ),
        case(
            "unknown field",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","bogus":1}"#,
            400,
            "bogus",
        ),
        case(
            "empty user id",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":""}"#,
            400,
            "user_id",
        ),
        case(
            "user id with spaces",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"a b"}"#,
            400,
            "user_id",
        ),
        // Well formed (a user credential may leave the subject out), but a
        // service credential has no subject of its own: 403, not 400, so
        // the OpenAPI document can describe it (schemathesis).
        case("no subject", M::POST, "/v1/check", a, r#"{}"#, 403, "user_id"),
        case(
            "both subjects",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","guest":{"ip":"192.0.2.1"}}"#,
            400,
            "user_id",
        ),
        case(
            "invalid ip",
            M::POST,
            "/v1/check",
            a,
            r#"{"guest":{"ip":"999.1.1.1","fingerprint":"f"}}"#,
            400,
            "guest.ip",
        ),
        case(
            "ip not a string",
            M::POST,
            "/v1/check",
            a,
            r#"{"guest":{"ip":12}}"#,
            400,
            "guest.ip",
        ),
        case(
            "estimate cost not a string",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","estimate":{"cost_usd":0.5}}"#,
            400,
            "estimate.cost_usd",
        ),
        case(
            "estimate cost negative",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","estimate":{"cost_usd":"-1"}}"#,
            400,
            "negative",
        ),
        case(
            "estimate cost not numeric",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","estimate":{"cost_usd":"abc"}}"#,
            400,
            "estimate.cost_usd",
        ),
        case(
            "estimate cost absurd",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","estimate":{"cost_usd":"1e40"}}"#,
            400,
            "estimate.cost_usd",
        ),
        case(
            "estimate both kinds",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","model":"m1","estimate":{"cost_usd":"1","input_tokens":1,"max_output_tokens":1}}"#,
            400,
            "estimate",
        ),
        case(
            "estimate tokens no model",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","estimate":{"input_tokens":1,"max_output_tokens":1}}"#,
            400,
            "model",
        ),
        // A missing price, an unknown reservation or tier is a missing
        // resource (404); the request itself is well formed.
        case(
            "estimate unknown model",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","model":"nope","estimate":{"input_tokens":1,"max_output_tokens":1}}"#,
            404,
            "nope",
        ),
        case(
            "estimate huge tokens",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","model":"m1","estimate":{"input_tokens":1000000000000,"max_output_tokens":1}}"#,
            400,
            "input_tokens",
        ),
        case(
            "estimate tokens overflow u64",
            M::POST,
            "/v1/check",
            a,
            r#"{"user_id":"victim","model":"m1","estimate":{"input_tokens":99999999999999999999999,"max_output_tokens":1}}"#,
            400,
            "input_tokens",
        ),
        case("body over 64 KiB", M::POST, "/v1/check", a, &big, 413, "bytes"),
        case(
            "wrong admin token",
            M::POST,
            "/v1/check",
            Some("nope"),
            r#"{"user_id":"victim"}"#,
            401,
            "token",
        ),
        case(
            "guest names a user",
            M::POST,
            "/v1/check",
            None,
            r#"{"user_id":"victim"}"#,
            401,
            "service credential",
        ),
        case(
            "usage negative tokens",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":-5,"output_tokens":1"#),
            400,
            "input_tokens",
        ),
        case(
            "usage huge tokens",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1,"output_tokens":100000000000"#),
            400,
            "output_tokens",
        ),
        case(
            "usage float tokens",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1.5,"output_tokens":1"#),
            400,
            "input_tokens",
        ),
        case(
            "usage cost not numeric",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1,"output_tokens":1,"cost_usd":"ten"#),
            400,
            "cost_usd",
        ),
        case(
            "usage cost negative",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1,"output_tokens":1,"cost_usd":"-0.01""#),
            400,
            "negative",
        ),
        case(
            "usage cost as number",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1,"output_tokens":1,"cost_usd":0.01"#),
            400,
            "cost_usd",
        ),
        case(
            "usage unknown model",
            M::POST,
            "/v1/usage",
            a,
            &format!(r#"{{"event_id":"{ev}","user_id":"victim","model":"nope","input_tokens":1,"output_tokens":1}}"#),
            404,
            "nope",
        ),
        case(
            "usage missing event id",
            M::POST,
            "/v1/usage",
            a,
            r#"{"user_id":"victim","model":"m1","input_tokens":1,"output_tokens":1}"#,
            400,
            "event_id",
        ),
        case(
            "usage bad event id",
            M::POST,
            "/v1/usage",
            a,
            r#"{"event_id":"nope","user_id":"victim","model":"m1","input_tokens":1,"output_tokens":1}"#,
            400,
            "event_id",
        ),
        case(
            "usage bad reservation",
            M::POST,
            "/v1/usage",
            a,
            &usage(r#""input_tokens":1,"output_tokens":1,"reservation_id":"rsv_garbage""#),
            404,
            "reservation_id",
        ),
        case(
            "usage bad model name",
            M::POST,
            "/v1/usage",
            a,
            &format!(
                r#"{{"event_id":"{ev}","user_id":"victim","model":"a b","input_tokens":1,"output_tokens":1,"cost_usd":"1"}}"#
            ),
            400,
            "model",
        ),
        case(
            "release garbage id",
            M::DELETE,
            "/v1/reservations/garbage",
            a,
            "",
            404,
            "reservation",
        ),
        case("status bad ip", M::GET, "/v1/status?ip=1.2.3", a, "", 400, "guest.ip"),
        case(
            "status unknown param",
            M::GET,
            "/v1/status?user_id=victim&x=1",
            a,
            "",
            400,
            "x",
        ),
        case(
            "unknown tier",
            M::PUT,
            "/v1/users/victim",
            a,
            r#"{"tier":"platinum"}"#,
            404,
            "platinum",
        ),
        case("get unknown tier", M::GET, "/v1/tiers/platinum", a, "", 404, "platinum"),
        case(
            "tier no token",
            M::PUT,
            "/v1/tiers/free",
            None,
            r#"{"daily_limit":1000,"price_monthly_usd":"0"}"#,
            401,
            "admin token",
        ),
        case(
            "tier wrong token",
            M::PUT,
            "/v1/tiers/free",
            Some("wrong"),
            r#"{"daily_limit":1000,"price_monthly_usd":"0"}"#,
            401,
            "token",
        ),
        case(
            "tier malformed auth",
            M::PUT,
            "/v1/tiers/free",
            None,
            "",
            401,
            "admin token",
        ),
        case(
            "tier negative limit",
            M::PUT,
            "/v1/tiers/free",
            a,
            r#"{"daily_limit":-1,"price_monthly_usd":"0"}"#,
            400,
            "daily_limit",
        ),
        case(
            "tier zero rpm",
            M::PUT,
            "/v1/tiers/free",
            a,
            r#"{"daily_limit":1,"rpm":0,"price_monthly_usd":"0"}"#,
            400,
            "rpm",
        ),
        case(
            "tier bad name",
            M::PUT,
            "/v1/tiers/Bad%20Name",
            a,
            r#"{"daily_limit":1,"price_monthly_usd":"0"}"#,
            400,
            "name",
        ),
        case(
            "budget negative",
            M::PUT,
            "/v1/users/victim/budget",
            a,
            r#"{"monthly_budget_usd":"-5"}"#,
            400,
            "negative",
        ),
        case(
            "budget no token",
            M::PUT,
            "/v1/users/victim/budget",
            None,
            r#"{"monthly_budget_usd":"5"}"#,
            401,
            "admin token",
        ),
        case(
            "price not decimal",
            M::PUT,
            "/v1/prices/m2",
            a,
            r#"{"input_per_mtok_usd":"x","output_per_mtok_usd":"1"}"#,
            400,
            "input_per_mtok_usd",
        ),
        case(
            "price no token",
            M::PUT,
            "/v1/prices/m2",
            None,
            r#"{"input_per_mtok_usd":"1","output_per_mtok_usd":"1"}"#,
            401,
            "admin token",
        ),
        case("unknown route", M::GET, "/v1/nope", a, "", 404, "route"),
        case("wrong method", M::DELETE, "/v1/check", a, "", 405, "method"),
    ];
    // A malformed Authorization header.
    cases.push(case("bearer missing", M::GET, "/v1/tiers", Some(""), "", 401, "Bearer"));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_named_4xx_and_changes_nothing() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start(&db).await;
    assert_eq!(
        n.put(
            "/v1/prices/m1",
            json!({"input_per_mtok_usd": "3", "output_per_mtok_usd": "15"})
        )
        .await
        .status,
        200
    );
    let before_tiers = n.get("/v1/tiers", Some(ADMIN)).await.json;
    let all = cases();
    for c in &all {
        let r = n.send(c.method.clone(), c.path, c.token, c.body.clone()).await;
        assert_eq!(r.status.as_u16(), c.status, "{}: {}", c.name, r.json);
        let error = r.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no error code in {}", c.name, r.json));
        let message = r.json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no message in {}", c.name, r.json));
        assert!(!error.is_empty(), "{}", c.name);
        assert!(
            message.contains(c.mentions),
            "{}: message {message:?} does not mention {:?}",
            c.name,
            c.mentions
        );
    }
    // Nothing changed: the victim counted nothing, spent nothing, holds
    // nothing; the tiers are as they were; the node still serves.
    let status = n.user_status("victim").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.used("user:victim", "day"), 0);
    assert_eq!(status.budget("user:victim")["spent_usd"], "0");
    assert_eq!(status.budget("user:victim")["held_usd"], "0");
    assert_eq!(status.json["tier"], "free");
    assert_eq!(n.get("/v1/tiers", Some(ADMIN)).await.json, before_tiers);
    let key = EntityKey::user("victim").unwrap();
    assert_eq!(
        n.state
            .store
            .ledger_sum(&key, Period::containing(now_ms()))
            .await
            .unwrap(),
        Decimal::ZERO
    );
    assert_eq!(n.check(json!({"user_id": "victim"})).await.status, 200);
    eprintln!("{} bad inputs tried, all refused with a named 4xx", all.len());
    n.stop().await;
}
