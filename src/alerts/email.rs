//! Email deliveries over SMTP (lettre): a plain-text message with the same
//! facts as the webhook.
//!
//! `--smtp-url` is read by lettre's `AsyncSmtpTransport::from_url`:
//! `smtp://host:25` plain, `smtp://host:587?tls=required` STARTTLS,
//! `smtps://host:465` TLS; `user:password@` in the URL for AUTH.

use super::delivery::Attempt;
use super::outbox::DeliveryJob;
use super::payload;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// An SMTP relay and the sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP password: never print it.
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish()
    }
}

/// A bad `--smtp-url` or `--smtp-from`.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("--smtp-url: {0}")]
    Url(String),
    #[error("--smtp-from is not an email address: {0}")]
    From(String),
}

impl Mailer {
    /// A mailer for `url` sending as `from`; each command times out after
    /// `timeout`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Mailer, MailerError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // lettre's error text can echo the URL (and its password).
            .map_err(|e| {
                MailerError::Url(if e.is_client() {
                    "invalid URL".into()
                } else {
                    "unusable".into()
                })
            })?
            .timeout(Some(timeout))
            .build();
        let from = from.parse::<Mailbox>().map_err(|e| MailerError::From(e.to_string()))?;
        Ok(Mailer { transport, from })
    }

    /// Sends the alert to the channel's address. Permanent SMTP replies
    /// (5xx: no such mailbox, relaying denied) are dead; everything else
    /// (4xx, timeouts, connection and TLS errors) is retried.
    pub async fn send(&self, job: &DeliveryJob) -> Attempt {
        let to = match job.channel.target.parse::<Mailbox>() {
            Ok(to) => to,
            Err(_) => return Attempt::Dead("target is not an email address".into()),
        };
        let (subject, body) = payload::email(&job.alert);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            // A stable Message-ID per delivery lets mail systems drop a
            // retry that did arrive the first time.
            .message_id(Some(format!("<{}@tollgate.alerts>", job.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::Dead(format!("could not build the message: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Attempt::Delivered,
            Err(e) if e.is_permanent() => Attempt::Dead(format!("SMTP: {e}")),
            Err(e) => Attempt::Retry(format!("SMTP: {e}")),
        }
    }
}
