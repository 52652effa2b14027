//! Alerts in the store: channels (where alerts go), the alerts fired, and
//! the delivery outbox the dispatcher works through.
//!
//! Alerts and their deliveries are written by the ledger's own
//! transaction (`record_usage`), so an acknowledged usage event that
//! crossed a threshold has its alert and one pending delivery per channel
//! on disk, whatever crashes next. Deliveries are claimed with a lease
//! (Postgres: `FOR UPDATE SKIP LOCKED`), so one node at a time sends each;
//! every outcome is recorded only if the lease is still the caller's.

use super::{Store, StoreResult};
use crate::entity::EntityKey;
use crate::limits::alerts::AlertKind;
use crate::limits::calendar::Period;
use rust_decimal::Decimal;
use uuid::Uuid;

/// How an alert reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// A signed `POST` (Standard Webhooks).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A plain-text email over SMTP.
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

/// A channel to create (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    /// `ach_…`.
    pub id: String,
    pub kind: ChannelKind,
    /// A URL (webhook, Slack) or an email address.
    pub target: String,
    /// None: a platform channel, which receives every alert.
    pub org_id: Option<String>,
    /// The webhook signing secret; None for other kinds.
    pub secret: Option<String>,
    /// Who created it (for the record).
    pub created_by: Option<String>,
}

/// A channel as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: String,
    pub kind: ChannelKind,
    pub target: String,
    pub org_id: Option<String>,
    pub created_at_ms: i64,
}

/// Which channels a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelScope {
    /// Every live channel (platform admins).
    All,
    /// The live channels without an organisation (they hear every alert).
    Platform,
    /// One organisation's live channels.
    Org(String),
}

impl ChannelScope {
    /// The scope as two SQL parameters: a mode and an organisation.
    pub(super) fn params(&self) -> (&'static str, Option<&str>) {
        match self {
            ChannelScope::All => ("all", None),
            ChannelScope::Platform => ("platform", None),
            ChannelScope::Org(org) => ("org", Some(org.as_str())),
        }
    }
}

/// An alert as fired: the facts every channel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFacts {
    /// `usage_alerts.id`, the payload's `id`: the same for every channel
    /// the alert goes to.
    pub id: Uuid,
    /// The entity key, e.g. `user:alice` or `org:acme`.
    pub entity: String,
    pub kind: AlertKind,
    /// The threshold crossed (100 for an overage).
    pub threshold_pct: u8,
    /// Spend when it fired, after the change that crossed it.
    pub spent_usd: Decimal,
    pub limit_usd: Decimal,
    pub period: Period,
    pub created_at_ms: i64,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not yet delivered; retried until delivered or dead.
    Pending,
    /// A 2xx (or an accepted email).
    Delivered,
    /// Refused for good, or retried for 24 h without success.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A channel's destination, as the dispatcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTarget {
    pub id: String,
    pub kind: ChannelKind,
    /// URL (webhook, Slack) or email address.
    pub target: String,
    /// The webhook signing secret (`whsec_…`); None for Slack and email.
    pub secret: Option<String>,
}

/// One claimed delivery: everything the dispatcher needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    /// `alert_deliveries.id`: the `webhook-id`, the same on every attempt.
    pub id: Uuid,
    /// Attempts so far, this one included (1 on the first).
    pub attempts: u32,
    /// When the delivery was created (the alert's commit), Unix ms: the
    /// 24 h retry horizon and the latency metric start here.
    pub created_at_ms: i64,
    pub channel: ChannelTarget,
    pub alert: AlertFacts,
}

/// One delivery of an alert, as `GET /v1/alerts` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// An alert with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub alert: AlertFacts,
    pub deliveries: Vec<DeliveryRecord>,
}

/// Whose alerts a read covers (decided by `identity::access`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertScope {
    /// Every entity's (platform admins).
    All,
    /// One entity's.
    Entity(EntityKey),
    /// An organisation's and its current members'.
    Org(String),
}

/// Longest error text kept on a delivery row: enough to diagnose, and a
/// hostile receiver cannot fill the database through its error bodies.
pub const MAX_ERROR_CHARS: usize = 500;

/// An error text cut to [`MAX_ERROR_CHARS`] characters.
pub(super) fn clip_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

impl Store {
    /// Creates a channel.
    pub async fn create_channel(&self, channel: &NewChannel) -> StoreResult<()> {
        dispatch!(self, s => s.create_channel(channel).await)
    }

    /// A live (not deleted) channel.
    pub async fn channel(&self, id: &str) -> StoreResult<Option<ChannelRecord>> {
        dispatch!(self, s => s.channel(id).await)
    }

    /// Live channels in `scope` with ids after `after` (a page's last
    /// id; channel ids grow with time), in id order, at most `limit`.
    pub async fn channels(
        &self,
        scope: &ChannelScope,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ChannelRecord>> {
        dispatch!(self, s => s.channels(scope, after, limit).await)
    }

    /// Deletes a live channel; its pending deliveries are marked dead
    /// (nobody will send them). Returns whether it existed.
    pub async fn delete_channel(&self, id: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.delete_channel(id).await)
    }

    /// Claims up to `limit` due deliveries for `node` for `lease_ms`: each
    /// is pending, due (`next_attempt_at <= now`) and not leased to anyone
    /// (or its lease ran out). Their `attempts` go up by one. On Postgres
    /// no two nodes ever claim the same delivery while a lease holds.
    pub async fn claim_deliveries(&self, node: &str, limit: u32, lease_ms: i64) -> StoreResult<Vec<DeliveryJob>> {
        dispatch!(self, s => s.claim_deliveries(node, limit, lease_ms).await)
    }

    /// Gives up every lease `node` holds (a node that starts again has
    /// nothing in flight, so its old leases need not run out first).
    pub async fn release_leases(&self, node: &str) -> StoreResult<u64> {
        dispatch!(self, s => s.release_leases(node).await)
    }

    /// Marks a claimed delivery delivered, if `node` still holds its lease.
    pub async fn mark_delivered(&self, id: Uuid, node: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.mark_delivered(id, node).await)
    }

    /// Schedules a claimed delivery's next attempt at `next_attempt_ms`
    /// (Unix ms) and releases the lease, if `node` still holds it.
    pub async fn mark_retry(&self, id: Uuid, node: &str, next_attempt_ms: i64, error: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.mark_retry(id, node, next_attempt_ms, &clip_error(error)).await)
    }

    /// Marks a claimed delivery dead, if `node` still holds its lease.
    pub async fn mark_dead(&self, id: Uuid, node: &str, error: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.mark_dead(id, node, &clip_error(error)).await)
    }

    /// Pending deliveries (the outbox depth).
    pub async fn outbox_depth(&self) -> StoreResult<u64> {
        dispatch!(self, s => s.outbox_depth().await)
    }

    /// Alerts in `scope` created at or after `since_ms`, newest first, at
    /// most `limit`, each with its deliveries.
    pub async fn alerts(&self, scope: &AlertScope, since_ms: i64, limit: u32) -> StoreResult<Vec<AlertRecord>> {
        dispatch!(self, s => s.alerts(scope, since_ms, limit).await)
    }
}
