//! Slack incoming-webhook deliveries: a message a person reads at a glance.

use super::address_policy::AddressPolicy;
use super::delivery::{Attempt, classify_status, classify_transport};
use super::outbox::DeliveryJob;
use super::payload::slack_message;

/// POSTs `{"text": …}` to the channel's incoming-webhook URL. The URL is
/// the credential (Slack puts the secret in the path), so error texts never
/// include it.
pub async fn send(client: &reqwest::Client, policy: AddressPolicy, job: &DeliveryJob) -> Attempt {
    let url = match policy.check_url(&job.channel.target) {
        Ok(url) => url,
        Err(refused) => return Attempt::Dead(refused.to_string()),
    };
    match client.post(url).json(&slack_message(&job.alert)).send().await {
        Ok(response) => classify_status(response.status().as_u16()),
        Err(e) => classify_transport(e),
    }
}
