//! A thin HTTP client for one node: the API v1 calls the scenarios make,
//! and the cluster endpoints (`/v1/cluster`, `/v1/cluster/owner`,
//! `/v1/cluster/faults`).
//!
//! Nothing here panics on what a node answers: bodies that are not JSON
//! become a JSON string, shapes that break the contract become
//! [`HarnessError::Answer`].

use crate::error::{HarnessError, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// One node's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The body as JSON, or the raw text as a JSON string.
    pub json: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `reason` of a refused check.
    pub fn reason(&self) -> Option<&str> {
        self.json.get("reason").and_then(Value::as_str)
    }

    /// An error unless the status is 2xx.
    pub fn ok_or_answer(self, what: &str) -> Result<Reply> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(HarnessError::Answer(format!("{what}: {} {}", self.status, self.json)))
        }
    }
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterView {
    pub node_id: String,
    pub nodes: Vec<NodeView>,
}

/// One member as a node sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeView {
    pub node_id: String,
    #[serde(default)]
    pub http_addr: String,
    #[serde(default)]
    pub rpc_addr: String,
    pub status: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub generation: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub entities: u64,
    /// The failure detector's verdict; a dead node may still be listed
    /// with its last status.
    #[serde(default = "alive")]
    pub live: bool,
}

fn alive() -> bool {
    true
}

impl ClusterView {
    /// Ids of the members this node sees as live and `ready` (the ones
    /// that own entities), sorted.
    pub fn ready(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.status == "ready" && n.live)
            .map(|n| n.node_id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn member(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// `node-1:ready node-2:joining …`, for messages.
    pub fn summary(&self) -> String {
        let members: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}:{}", n.node_id, n.status))
            .collect();
        format!("{} sees [{}]", self.node_id, members.join(" "))
    }
}

/// A number, or a string holding one (64-bit values are sometimes sent as
/// strings to survive JavaScript).
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().ok_or_else(|| serde::de::Error::custom("not a u64")),
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    admin: String,
}

/// A client suited to many short loopback calls.
pub fn http_client(request_timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(request_timeout)
        // Below the node's --keep-alive-timeout-s (5 s): a pooled connection
        // the node is closing just as a request goes out fails that request.
        .pool_idle_timeout(Duration::from_secs(3))
        .build()?)
}

impl Api {
    /// `base` is `http://host:port`; `admin` the admin token.
    pub fn new(http: reqwest::Client, base: impl Into<String>, admin: impl Into<String>) -> Self {
        Api {
            http,
            base: base.into(),
            admin: admin.into(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Any request; `admin` adds the admin bearer token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        admin: bool,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if admin {
            req = req.bearer_auth(&self.admin);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, json })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, reqwest::Error> {
        self.send(reqwest::Method::GET, path, None, true).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(reqwest::Method::POST, path, Some(body), true).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(reqwest::Method::PUT, path, Some(body), true).await
    }

    /// `POST /v1/check` as the service credential.
    pub async fn check(&self, body: &Value) -> Result<Reply, reqwest::Error> {
        self.post("/v1/check", body).await
    }

    /// `POST /v1/usage` as the service credential.
    pub async fn usage(&self, body: &Value) -> Result<Reply, reqwest::Error> {
        self.post("/v1/usage", body).await
    }

    /// An admin `PUT` that must succeed.
    pub async fn admin_put(&self, path: &str, body: &Value) -> Result<Value> {
        Ok(self.put(path, body).await?.ok_or_answer(&format!("PUT {path}"))?.json)
    }

    /// Whether `path` answers 200 right now (false on any error).
    pub async fn answers_200(&self, path: &str) -> bool {
        matches!(self.get(path).await, Ok(r) if r.status == 200)
    }

    /// `GET /v1/cluster`.
    pub async fn cluster_view(&self) -> Result<ClusterView> {
        let reply = self.get("/v1/cluster").await?.ok_or_answer("GET /v1/cluster")?;
        serde_json::from_value(reply.json.clone())
            .map_err(|e| HarnessError::Answer(format!("GET /v1/cluster: {e}: {}", reply.json)))
    }

    /// `GET /v1/cluster/owner?entity=…`: the owner's node id.
    pub async fn owner(&self, entity: &str) -> Result<String> {
        let path = format!("/v1/cluster/owner?entity={}", encode_query(entity));
        let reply = self.get(&path).await?.ok_or_answer(&format!("GET {path}"))?;
        match reply.json.get("node_id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_string()),
            None => Err(HarnessError::Answer(format!(
                "GET {path}: no node_id in {}",
                reply.json
            ))),
        }
    }

    /// `PUT /v1/cluster/faults`: drop gossip and RPC to and from `isolate_from`.
    pub async fn set_faults(&self, isolate_from: &[String]) -> Result<()> {
        self.put("/v1/cluster/faults", &json!({ "isolate_from": isolate_from }))
            .await?
            .ok_or_answer("PUT /v1/cluster/faults")?;
        Ok(())
    }

    /// `GET /v1/status?user_id=…`.
    pub async fn user_status(&self, user: &str) -> Result<Reply> {
        Ok(self.get(&format!("/v1/status?user_id={}", encode_query(user))).await?)
    }
}

/// Percent-encodes a query value (entity keys hold `:` and may hold more).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `used` count of one entity's window in a check or status answer.
pub fn used(json: &Value, entity: &str, window: &str) -> Option<u64> {
    json.get("limits")?
        .as_array()?
        .iter()
        .find(|l| l["entity"] == entity && l["window"] == window)?
        .get("used")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_parse_leniently() {
        let view: ClusterView = serde_json::from_value(json!({
            "node_id": "node-1",
            "nodes": [
                {"node_id": "node-1", "http_addr": "127.0.0.1:1", "rpc_addr": "127.0.0.1:2",
                 "status": "ready", "generation": "17", "entities": 3},
                {"node_id": "node-2", "status": "joining", "generation": 2},
            ]
        }))
        .expect("parses");
        assert_eq!(view.ready(), vec!["node-1"]);
        assert_eq!(view.member("node-1").map(|n| n.generation), Some(17));
        assert_eq!(view.summary(), "node-1 sees [node-1:ready node-2:joining]");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("user:u 1"), "user%3Au%201");
        assert_eq!(encode_query("ip:203.0.113.7"), "ip%3A203.0.113.7");
    }

    #[test]
    fn used_reads_a_window() {
        let j = json!({"limits": [{"entity": "user:a", "window": "day", "used": 4}]});
        assert_eq!(used(&j, "user:a", "day"), Some(4));
        assert_eq!(used(&j, "user:a", "month"), None);
    }
}
