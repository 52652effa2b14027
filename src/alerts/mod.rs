//! Alert delivery: the durable outbox of fired budget alerts, sent to
//! webhooks (signed), Slack and email by a dispatcher task on every node.
//!
//! Alerts are fired by the ledger transaction itself (`limits/alerts.rs`
//! decides which thresholds a spend change crossed; the store writes the
//! alert and one `alert_deliveries` row per matching channel in the same
//! transaction). This module only delivers: it claims due rows under a
//! lease, sends them, and records delivered / retry-at / dead. Delivery is
//! at least once; the `webhook-id` (the delivery's id) is the same on every
//! retry so receivers can deduplicate. No HTTP handlers live here.

pub mod address_policy;
pub mod backoff;
pub mod delivery;
pub mod dispatcher;
pub mod email;
pub mod outbox;
pub mod payload;
pub mod resolver;
pub mod signature;
pub mod slack;
#[doc(hidden)]
pub mod testing;
pub mod webhook;

pub use address_policy::{AddressPolicy, Refused};
pub use delivery::Attempt;
pub use dispatcher::{Dispatcher, DispatcherHandle};
pub use outbox::{AlertFacts, AlertKind, ChannelKind, ChannelTarget, DeliveryJob, Outbox};

use clap::Args;
use email::{Mailer, MailerError};
pub use resolver::{AlertResolver, HostPin};
use std::sync::Arc;
use std::time::Duration;

/// Alert delivery flags (flattened into `tollgate serve`).
#[derive(Debug, Clone, Args)]
pub struct AlertConfig {
    /// Allow plain-http alert URLs and private, loopback and link-local
    /// destinations (tests and closed networks only: otherwise anyone who
    /// may create a channel can make this node call internal services).
    #[arg(long, env = "TOLLGATE_ALERTS_ALLOW_PRIVATE")]
    pub alerts_allow_private: bool,

    /// Pin a host name to an address for alert deliveries, as
    /// `curl --resolve` does: `host=ip`, repeatable (space-separated in the
    /// environment). For closed networks without DNS; pinned addresses
    /// pass the same private-address rules as looked-up ones.
    #[arg(
        long = "alerts-resolve",
        env = "TOLLGATE_ALERTS_RESOLVE",
        value_delimiter = ' ',
        value_name = "HOST=IP"
    )]
    pub alerts_resolve: Vec<HostPin>,

    /// Connect timeout for webhook and Slack deliveries (ms).
    #[arg(long, env = "TOLLGATE_ALERT_CONNECT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub alert_connect_timeout_ms: u64,

    /// Total time one delivery attempt may take, connect to last byte (ms).
    #[arg(long, env = "TOLLGATE_ALERT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub alert_timeout_ms: u64,

    /// First retry gap (ms); each next one doubles (with jitter) up to an
    /// hour, and a delivery is dead 24 h after it was created.
    #[arg(long, env = "TOLLGATE_ALERT_RETRY_BASE_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub alert_retry_base_ms: u64,

    /// Deliveries in flight at once on this node.
    #[arg(long, env = "TOLLGATE_ALERT_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub alert_concurrency: u64,

    /// How often the outbox is polled when nothing woke the dispatcher
    /// (deliveries created on other nodes, retries that came due) (ms).
    #[arg(long, env = "TOLLGATE_ALERT_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub alert_poll_ms: u64,

    /// SMTP relay for email alerts: `smtp://host:25` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS);
    /// `user:password@host` for AUTH. Unset: email deliveries wait (retry)
    /// until it is configured.
    #[arg(long, env = "TOLLGATE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender address of alert emails.
    #[arg(long, env = "TOLLGATE_SMTP_FROM", default_value = "tollgate@localhost")]
    pub smtp_from: String,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            alerts_allow_private: false,
            alerts_resolve: Vec::new(),
            alert_connect_timeout_ms: 5_000,
            alert_timeout_ms: 10_000,
            alert_retry_base_ms: 1_000,
            alert_concurrency: 64,
            alert_poll_ms: 1_000,
            smtp_url: None,
            smtp_from: "tollgate@localhost".into(),
        }
    }
}

impl AlertConfig {
    pub fn policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private: self.alerts_allow_private,
        }
    }

    /// Name resolution for alert targets: pins, then DNS, under the policy.
    pub fn resolver(&self) -> AlertResolver {
        AlertResolver::new(self.policy(), &self.alerts_resolve)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.alert_connect_timeout_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.alert_timeout_ms)
    }

    /// How long a claim holds a delivery: two full attempts and a margin,
    /// so a lease only expires when its node is gone or stuck, and then
    /// another node (or this one, restarted) takes the delivery over.
    pub fn lease(&self) -> Duration {
        self.timeout() * 2 + Duration::from_secs(1)
    }
}

/// A bad alert flag.
#[derive(Debug, thiserror::Error)]
pub enum AlertConfigError {
    #[error(transparent)]
    Mailer(#[from] MailerError),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// The channel senders of a node.
#[derive(Debug, Clone)]
pub struct Senders {
    http: reqwest::Client,
    policy: AddressPolicy,
    mailer: Option<Mailer>,
}

impl Senders {
    pub fn new(config: &AlertConfig) -> Result<Senders, AlertConfigError> {
        let resolver = config.resolver();
        let policy = resolver.policy;
        let http = reqwest::Client::builder()
            // A redirect could lead anywhere, including inside our network.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past our resolver.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(config.connect_timeout())
            .timeout(config.timeout())
            .user_agent(concat!("tollgate-alerts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertConfigError::Client(e.to_string()))?;
        let mailer = match &config.smtp_url {
            Some(url) => Some(Mailer::new(url, &config.smtp_from, config.timeout())?),
            None => None,
        };
        Ok(Senders { http, policy, mailer })
    }

    /// One attempt of `job` at `now_ms`.
    pub async fn send(&self, job: &DeliveryJob, now_ms: i64) -> Attempt {
        match job.channel.kind {
            ChannelKind::Webhook => webhook::send(&self.http, self.policy, job, now_ms).await,
            ChannelKind::Slack => slack::send(&self.http, self.policy, job).await,
            ChannelKind::Email => match &self.mailer {
                Some(mailer) => mailer.send(job).await,
                None => Attempt::Retry("no SMTP relay configured (--smtp-url)".into()),
            },
        }
    }
}
