//! Signed webhook deliveries (Standard Webhooks).

use super::address_policy::AddressPolicy;
use super::delivery::{Attempt, classify_status, classify_transport};
use super::outbox::DeliveryJob;
use super::payload::WebhookPayload;
use super::signature;

/// POSTs the alert's JSON to the channel's URL, signed with its secret.
/// The `webhook-id` is the delivery's id, so every retry carries the same
/// one; the timestamp (and so the signature) is this attempt's.
pub async fn send(client: &reqwest::Client, policy: AddressPolicy, job: &DeliveryJob, now_ms: i64) -> Attempt {
    let url = match policy.check_url(&job.channel.target) {
        Ok(url) => url,
        Err(refused) => return Attempt::Dead(refused.to_string()),
    };
    let Some(secret) = job.channel.secret.as_deref() else {
        return Attempt::Dead("webhook channel has no signing secret".into());
    };
    let body = WebhookPayload::new(&job.alert).to_json();
    let signed = match signature::sign(secret, &job.id.to_string(), now_ms.div_euclid(1000), &body) {
        Ok(s) => s,
        Err(e) => return Attempt::Dead(e.to_string()),
    };
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", signed.id)
        .header("webhook-timestamp", signed.timestamp)
        .header("webhook-signature", signed.signature)
        .body(body);
    match request.send().await {
        Ok(response) => classify_status(response.status().as_u16()),
        Err(e) => classify_transport(e),
    }
}
