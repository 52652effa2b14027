//! Alert delivery against real receivers on loopback (a webhook receiver
//! and an SMTP sink started by the test), through the real senders and
//! dispatcher, over the in-memory outbox (the store's outbox is exercised
//! end to end in `alerts_e2e.rs`).

mod receivers;

use receivers::{Receiver, Reply, SmtpSink, until};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tollgate::alerts::dispatcher::{DispatchSettings, Dispatcher};
use tollgate::alerts::signature;
use tollgate::alerts::testing::MemoryOutbox;
use tollgate::alerts::{AlertConfig, AlertFacts, AlertKind, ChannelKind, ChannelTarget, DeliveryJob, Senders};
use tollgate::limits::calendar::{Period, now_ms};
use uuid::Uuid;

const RETRY_BASE_MS: u64 = 400;

fn config(smtp: Option<&SmtpSink>) -> AlertConfig {
    AlertConfig {
        alerts_allow_private: true,
        alert_retry_base_ms: RETRY_BASE_MS,
        alert_poll_ms: 200,
        alert_timeout_ms: 3_000,
        alert_connect_timeout_ms: 1_000,
        smtp_url: smtp.map(SmtpSink::url),
        ..AlertConfig::default()
    }
}

fn channel(kind: ChannelKind, target: String) -> ChannelTarget {
    ChannelTarget {
        id: format!("ach_{}", Uuid::new_v4().simple()),
        kind,
        secret: (kind == ChannelKind::Webhook).then(signature::new_secret),
        target,
    }
}

fn job(channel: &ChannelTarget, threshold_pct: u8) -> DeliveryJob {
    let now = now_ms();
    DeliveryJob {
        id: Uuid::new_v4(),
        attempts: 0,
        created_at_ms: now,
        channel: channel.clone(),
        alert: AlertFacts {
            id: Uuid::new_v4(),
            entity: "user:alice".into(),
            kind: AlertKind::Threshold,
            threshold_pct,
            spent_usd: Decimal::from(threshold_pct) / Decimal::from(10),
            limit_usd: Decimal::from(10),
            period: Period::containing(now),
            created_at_ms: now,
        },
    }
}

struct Running {
    outbox: Arc<MemoryOutbox>,
    wake: Arc<Notify>,
    handle: Option<tollgate::alerts::DispatcherHandle>,
}

fn start(config: &AlertConfig) -> Running {
    let outbox = Arc::new(MemoryOutbox::default());
    let wake = Arc::new(Notify::new());
    let dispatcher = Dispatcher::new(
        outbox.clone(),
        Senders::new(config).expect("senders"),
        "test",
        DispatchSettings::from_config(config),
        wake.clone(),
    );
    Running {
        outbox,
        wake,
        handle: Some(dispatcher.spawn()),
    }
}

impl Running {
    async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().await;
        }
    }

    fn push(&self, job: DeliveryJob) {
        self.outbox.push(job);
        self.wake.notify_one();
    }

    fn status(&self, id: Uuid) -> (&'static str, u32, Option<String>) {
        let row = self.outbox.rows().into_iter().find(|r| r.job.id == id).expect("row");
        (row.status, row.job.attempts, row.last_error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_threshold_reaches_the_webhook_signed_and_the_mailbox_once() {
    let receiver = Receiver::start(vec![]).await;
    let smtp = SmtpSink::start().await;
    let mut run = start(&config(Some(&smtp)));
    let hook = channel(ChannelKind::Webhook, receiver.url("/hooks/budget"));
    let mail = channel(ChannelKind::Email, "ops@example.com".into());
    let mut jobs = Vec::new();
    for pct in [50, 75, 90, 100] {
        for c in [&hook, &mail] {
            let j = job(c, pct);
            jobs.push(j.clone());
            run.push(j);
        }
    }
    until(20, "4 webhooks and 4 emails", || {
        receiver.received().len() >= 4 && smtp.mails().len() >= 4
    })
    .await;
    until(10, "every delivery recorded", || {
        run.outbox.rows().iter().all(|r| r.status == "delivered")
    })
    .await;
    run.stop().await;

    let got = receiver.received();
    assert_eq!(got.len(), 4, "one webhook per threshold");
    let secret = hook.secret.as_deref().unwrap();
    let mut thresholds: Vec<u64> = Vec::new();
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks/budget");
        assert!(
            signature::verify(
                secret,
                r.header("webhook-id"),
                r.header("webhook-timestamp"),
                &r.body,
                r.header("webhook-signature")
            ),
            "signature of {:?}",
            r.headers
        );
        let sent = jobs
            .iter()
            .find(|j| j.id.to_string() == r.header("webhook-id"))
            .expect("webhook-id is the delivery id");
        let body = r.json();
        assert_eq!(body["type"], "budget.threshold");
        assert_eq!(body["id"], sent.alert.id.to_string());
        assert_eq!(body["entity"], "user:alice");
        assert_eq!(body["limit_usd"], "10");
        assert!(body["spent_usd"].is_string() && body["period_end"].is_string() && body["occurred_at"].is_string());
        thresholds.push(body["threshold_pct"].as_u64().unwrap());
    }
    thresholds.sort();
    assert_eq!(thresholds, vec![50, 75, 90, 100]);

    let mails = smtp.mails();
    assert_eq!(mails.len(), 4, "one email per threshold");
    for pct in [50, 75, 90, 100] {
        let m = mails
            .iter()
            .find(|m| m.data.contains(&format!("Threshold:  {pct} %")))
            .unwrap_or_else(|| panic!("an email for {pct} %"));
        assert_eq!(m.to, vec!["ops@example.com".to_string()]);
        assert_eq!(m.from, "tollgate@localhost");
        assert!(
            m.data.contains("Subject: Budget alert: user alice has used"),
            "{}",
            m.data
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_four_attempts_with_growing_gaps() {
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(503), Reply::Status(500)]).await;
    let mut run = start(&config(None));
    let hook = channel(ChannelKind::Webhook, receiver.url("/flaky"));
    let j = job(&hook, 50);
    run.push(j.clone());
    until(30, "the delivery to succeed", || run.status(j.id).0 == "delivered").await;
    run.stop().await;

    let got = receiver.received();
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 500, 200], "4 attempts, one success");
    assert!(
        got.iter().all(|r| r.header("webhook-id") == j.id.to_string()),
        "same webhook-id on every retry"
    );
    assert_eq!(run.status(j.id).1, 4);
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Each gap is at least half its nominal backoff (base × 2^n; equal
    // jitter), so the third is at least as long as the first could be at most.
    for (n, gap) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(RETRY_BASE_MS << n) / 2;
        assert!(*gap >= floor, "gap {n} = {gap:?} < {floor:?}");
    }
    eprintln!("retry gaps: {gaps:?}");
    assert!(gaps[2] > gaps[0], "gaps grow: {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_receiver_is_dead_after_one_attempt() {
    let receiver = Receiver::start(vec![Reply::Status(404)]).await;
    let mut run = start(&config(None));
    let j = job(&channel(ChannelKind::Webhook, receiver.url("/gone")), 75);
    run.push(j.clone());
    until(20, "the delivery to be dead", || run.status(j.id).0 == "dead").await;
    // A dead row is never claimed again; poll rounds pass meanwhile.
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.stop().await;
    assert_eq!(receiver.received().len(), 1);
    let (_, attempts, error) = run.status(j.id);
    assert_eq!(attempts, 1);
    assert_eq!(error.as_deref(), Some("HTTP 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_never_called_without_the_flag() {
    let receiver = Receiver::start(vec![]).await;
    let strict = AlertConfig {
        alerts_allow_private: false,
        ..config(None)
    };
    let mut run = start(&strict);
    // A literal private address: refused before sending, dead at once.
    let literal = job(
        &channel(ChannelKind::Webhook, format!("https://127.0.0.1:{}/x", receiver.port)),
        50,
    );
    // Plain http: refused.
    let plain = job(&channel(ChannelKind::Slack, receiver.url("/slack")), 50);
    // A name that resolves to loopback: dropped by the resolver at
    // connection time (DNS may change after creation), retried later.
    let named = job(
        &channel(ChannelKind::Webhook, format!("https://localhost:{}/x", receiver.port)),
        50,
    );
    for j in [&literal, &plain, &named] {
        run.push(j.clone());
    }
    until(20, "all three attempted", || {
        run.status(literal.id).0 == "dead" && run.status(plain.id).0 == "dead" && run.status(named.id).2.is_some()
    })
    .await;
    run.stop().await;
    assert!(receiver.received().is_empty(), "never called");
    let (status, _, error) = run.status(named.id);
    assert_eq!(status, "pending", "a resolver refusal is retried");
    let error = error.unwrap();
    assert!(error.contains("not a public unicast address"), "{error}");
    assert!(run.status(literal.id).2.unwrap().contains("127.0.0.1"));
    assert_eq!(run.status(plain.id).2.as_deref(), Some("target must use https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start(vec![Reply::Redirect("/elsewhere"), Reply::Status(404)]).await;
    let mut run = start(&config(None));
    let j = job(&channel(ChannelKind::Webhook, receiver.url("/moved")), 90);
    run.push(j.clone());
    until(20, "the redirect then the 404", || run.status(j.id).0 == "dead").await;
    run.stop().await;
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/moved", "/moved"], "the Location was never fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_readable_message_and_email_rejections_are_dead() {
    let receiver = Receiver::start(vec![]).await;
    let smtp = SmtpSink::start().await;
    let mut run = start(&config(Some(&smtp)));
    let slack = job(&channel(ChannelKind::Slack, receiver.url("/services/T/B/secret")), 90);
    let rejected = job(&channel(ChannelKind::Email, "reject@example.com".into()), 90);
    run.push(slack.clone());
    run.push(rejected.clone());
    until(20, "both settled", || {
        run.status(slack.id).0 == "delivered" && run.status(rejected.id).0 == "dead"
    })
    .await;
    run.stop().await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("user alice has used 90 %"), "{text}");
    assert!(text.contains("$9.00 of $10.00"), "{text}");
    assert!(
        got[0].header("webhook-signature").is_empty(),
        "Slack messages are not signed"
    );
    let (_, attempts, error) = run.status(rejected.id);
    assert_eq!(attempts, 1, "a permanent SMTP refusal is not retried");
    assert!(error.unwrap().contains("550"));
    assert!(smtp.mails().is_empty());
}

/// `--smtp-url` decides the encryption: a relay that offers no STARTTLS
/// (the sink) gets nothing in clear when the URL asks for STARTTLS
/// (`?tls=required`), nor when it asks for TLS from the first byte
/// (`smtps://`); the deliveries wait for a retry with the reason recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_never_sent_in_clear_when_the_url_asks_for_tls() {
    let smtp = SmtpSink::start().await;
    for url in [
        format!("{}?tls=required", smtp.url()),
        smtp.url().replacen("smtp://", "smtps://", 1),
    ] {
        let mut run = start(&AlertConfig {
            smtp_url: Some(url.clone()),
            ..config(None)
        });
        let mail = job(&channel(ChannelKind::Email, "ops@example.com".into()), 75);
        run.push(mail.clone());
        until(20, "the first attempt", || run.status(mail.id).1 >= 1).await;
        run.stop().await;
        let (status, _, error) = run.status(mail.id);
        assert_eq!(status, "pending", "{url}: retried later, not dead and not delivered");
        assert!(error.is_some_and(|e| !e.is_empty()), "{url}: the reason is recorded");
        assert!(smtp.mails().is_empty(), "{url}: nothing was sent in clear");
    }
}
