//! What an alert says on each channel: the webhook JSON, the Slack text and
//! the email. Money is a decimal string, times are RFC 3339 (UTC).

use super::outbox::{AlertFacts, AlertKind};
use crate::limits::calendar::rfc3339;
use serde::Serialize;

/// The webhook body (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookPayload {
    /// `budget.threshold` or `budget.overage`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The alert's id (the same for every channel it goes to); the
    /// delivery's id is the `webhook-id` header.
    pub id: String,
    pub entity: String,
    pub threshold_pct: u8,
    pub spent_usd: String,
    pub limit_usd: String,
    pub period_start: String,
    pub period_end: String,
    /// When the alert fired (its commit).
    pub occurred_at: String,
}

impl WebhookPayload {
    pub fn new(alert: &AlertFacts) -> WebhookPayload {
        WebhookPayload {
            kind: match alert.kind {
                AlertKind::Threshold => "budget.threshold",
                AlertKind::Overage => "budget.overage",
            },
            id: alert.id.to_string(),
            entity: alert.entity.clone(),
            threshold_pct: alert.threshold_pct,
            spent_usd: alert.spent_usd.normalize().to_string(),
            limit_usd: alert.limit_usd.normalize().to_string(),
            period_start: rfc3339(alert.period.start_ms()),
            period_end: rfc3339(alert.period.end_ms()),
            occurred_at: rfc3339(alert.created_at_ms),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and integers serialises")
    }
}

/// Dollars with two decimals for people (`$7.50`); exact amounts with more
/// digits keep them (`$0.125`).
fn dollars(amount: rust_decimal::Decimal) -> String {
    let scaled = if amount.normalize().scale() <= 2 {
        amount.round_dp(2)
    } else {
        amount.normalize()
    };
    let text = scaled.to_string();
    match text.split_once('.') {
        Some((_, frac)) if frac.len() == 1 => format!("${text}0"),
        Some(_) => format!("${text}"),
        None => format!("${text}.00"),
    }
}

/// Who, for a person: `user alice`, `organisation acme`.
fn who(entity: &str) -> String {
    match entity.split_once(':') {
        Some(("user", id)) => format!("user {id}"),
        Some(("org", id)) => format!("organisation {id}"),
        _ => entity.to_string(),
    }
}

/// The one line a person reads at a glance (Slack text, email subject).
pub fn headline(alert: &AlertFacts) -> String {
    let month = alert.period;
    match alert.kind {
        AlertKind::Threshold => format!(
            "{} has used {} % of its {} budget ({} of {})",
            who(&alert.entity),
            alert.threshold_pct,
            month,
            dollars(alert.spent_usd),
            dollars(alert.limit_usd)
        ),
        AlertKind::Overage => format!(
            "{} is over its {} budget ({} of {})",
            who(&alert.entity),
            month,
            dollars(alert.spent_usd),
            dollars(alert.limit_usd)
        ),
    }
}

/// The Slack incoming-webhook message.
pub fn slack_message(alert: &AlertFacts) -> serde_json::Value {
    let text = format!(
        ":warning: Budget alert: {}. The period ends {}.",
        headline(alert),
        rfc3339(alert.period.end_ms())
    );
    serde_json::json!({ "text": text })
}

/// An email's subject and plain-text body.
pub fn email(alert: &AlertFacts) -> (String, String) {
    let subject = format!("Budget alert: {}", headline(alert));
    let body = format!(
        "{headline}.\n\n\
         Entity:     {entity}\n\
         Alert:      {kind}\n\
         Threshold:  {pct} %\n\
         Spent:      {spent} USD\n\
         Budget:     {limit} USD\n\
         Period:     {start} to {end}\n\
         Fired at:   {at}\n\
         Alert id:   {id}\n",
        headline = headline(alert),
        entity = alert.entity,
        kind = alert.kind.as_str(),
        pct = alert.threshold_pct,
        spent = alert.spent_usd.normalize(),
        limit = alert.limit_usd.normalize(),
        start = rfc3339(alert.period.start_ms()),
        end = rfc3339(alert.period.end_ms()),
        at = rfc3339(alert.created_at_ms),
        id = alert.id,
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::calendar::Period;
    use uuid::Uuid;

    fn alert(kind: AlertKind, spent: &str) -> AlertFacts {
        let period = Period::new(2026, 12).unwrap();
        AlertFacts {
            id: Uuid::nil(),
            entity: "user:alice".into(),
            kind,
            threshold_pct: 75,
            spent_usd: spent.parse().unwrap(),
            limit_usd: "10".parse().unwrap(),
            period,
            created_at_ms: period.start_ms() + 1000,
        }
    }

    #[test]
    fn webhook_body_has_the_documented_fields() {
        let body: serde_json::Value =
            serde_json::from_slice(&WebhookPayload::new(&alert(AlertKind::Threshold, "7.500")).to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "budget.threshold",
                "id": "00000000-0000-0000-0000-000000000000",
                "entity": "user:alice",
                "threshold_pct": 75,
                "spent_usd": "7.5",
                "limit_usd": "10",
                "period_start": "2026-12-01T00:00:00Z",
                "period_end": "2027-01-01T00:00:00Z",
                "occurred_at": "2026-12-01T00:00:01Z",
            })
        );
        let over = WebhookPayload::new(&alert(AlertKind::Overage, "10.40"));
        assert_eq!(over.kind, "budget.overage");
    }

    #[test]
    fn people_read_who_how_much_and_when() {
        let text = slack_message(&alert(AlertKind::Threshold, "7.5"))["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("user alice"), "{text}");
        assert!(text.contains("75 %"), "{text}");
        assert!(text.contains("$7.50 of $10.00"), "{text}");
        assert!(text.contains("2027-01-01"), "{text}");
        let (subject, body) = email(&alert(AlertKind::Overage, "10.125"));
        assert!(
            subject.contains("over its 2026-12 budget ($10.125 of $10.00)"),
            "{subject}"
        );
        assert!(body.contains("Spent:      10.125 USD"), "{body}");
    }
}
