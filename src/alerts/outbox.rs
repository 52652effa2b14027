//! The delivery outbox as the dispatcher sees it: claim due deliveries
//! under a lease, then record each outcome. The rows live in
//! `alert_deliveries`, written by the ledger in the same transaction as the
//! spend that fired the alert, so an alert is deliverable exactly when it
//! is durable. `Store` implements it; tests use an in-memory one.

use crate::limits::calendar::Period;
use crate::store::StoreResult;
use async_trait::async_trait;
use rust_decimal::Decimal;
use std::time::Duration;
use uuid::Uuid;

/// Where a channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Webhook,
    Slack,
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<ChannelKind> {
        match text {
            "webhook" => Some(ChannelKind::Webhook),
            "slack" => Some(ChannelKind::Slack),
            "email" => Some(ChannelKind::Email),
            _ => None,
        }
    }
}

/// Which kind of alert fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Spend reached a percentage of the budget.
    Threshold,
    /// Spend went beyond the budget (once per entity and period).
    Overage,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Threshold => "threshold",
            AlertKind::Overage => "overage",
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        match text {
            "threshold" => Some(AlertKind::Threshold),
            "overage" => Some(AlertKind::Overage),
            _ => None,
        }
    }
}

/// The facts of one fired alert, as every channel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFacts {
    /// `usage_alerts.id`: the same for every channel the alert goes to.
    pub id: Uuid,
    /// The entity key, e.g. `user:alice` or `org:acme`.
    pub entity: String,
    pub kind: AlertKind,
    pub threshold_pct: u8,
    /// Spend after the commit that fired it.
    pub spent_usd: Decimal,
    pub limit_usd: Decimal,
    /// The budget period (calendar month, UTC).
    pub period: Period,
    /// When the alert was committed (Unix ms).
    pub created_at_ms: i64,
}

/// A channel's destination, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTarget {
    pub id: String,
    pub kind: ChannelKind,
    /// URL (webhook, Slack) or email address.
    pub target: String,
    /// The webhook signing secret (`whsec_…`); None for Slack and email.
    pub secret: Option<String>,
}

/// One claimed delivery: what to send where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    /// `alert_deliveries.id`: the `webhook-id`, the same on every retry.
    pub id: Uuid,
    /// Attempts including the one this claim starts.
    pub attempts: u32,
    /// When the delivery row was created (Unix ms); the 24 h horizon
    /// counts from here.
    pub created_at_ms: i64,
    pub channel: ChannelTarget,
    pub alert: AlertFacts,
}

/// The outbox operations the dispatcher needs. Every `mark_*` applies only
/// while `owner` still holds the lease (returns false otherwise: the lease
/// expired and another claim took the row over, which then decides).
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Claims up to `limit` pending deliveries whose `next_attempt_at` has
    /// come and whose lease (if any) has expired, for `lease`, counting an
    /// attempt on each.
    async fn claim(&self, owner: &str, lease: Duration, limit: usize) -> StoreResult<Vec<DeliveryJob>>;
    async fn mark_delivered(&self, id: Uuid, owner: &str) -> StoreResult<bool>;
    async fn mark_retry(&self, id: Uuid, owner: &str, next_attempt_at_ms: i64, error: &str) -> StoreResult<bool>;
    async fn mark_dead(&self, id: Uuid, owner: &str, error: &str) -> StoreResult<bool>;
    /// Deliveries still pending (the outbox depth gauge).
    async fn pending(&self) -> StoreResult<u64>;
}
