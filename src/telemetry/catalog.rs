//! Every metric a node exports, with its HELP text and — for histograms —
//! its buckets. One list, so `/metrics` always carries HELP and TYPE lines,
//! the dashboard and alert rules in `deploy/observability/` have one place
//! to check names against (tests/metrics.rs does), and a histogram is
//! rendered with buckets instead of the exporter's default summary.
//!
//! Names carry their base unit (`_seconds`, `_usd_micros`) and counters end
//! in `_total`. No label ever holds a user id, key id, IP, fingerprint or
//! free-form model name: label values come from closed sets.

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Label names it may carry (documentation; values are closed sets).
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Request latencies: 10 µs to 1 s, so a warm check's p99 (tens to
/// hundreds of µs) falls between fine buckets, and a stalled store shows.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Store and delivery latencies: 100 µs to 30 s.
pub const SLOW_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Rows or events per batch.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 20000.0,
];

/// The cost of one usage event in USD: a tenth of a cent to $10.
pub const COST_BUCKETS: &[f64] = &[0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

macro_rules! metric {
    ($name:literal, $kind:expr, [$($label:literal),*], $help:literal) => {
        Metric { name: $name, kind: $kind, labels: &[$($label),*], help: $help }
    };
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric family, grouped as the seed's monitoring list asks.
pub const METRICS: &[Metric] = &[
    // --- the node --------------------------------------------------------
    metric!(
        "tollgate_build_info",
        Gauge,
        ["version"],
        "Always 1; the version label says which build runs."
    ),
    // --- HTTP and checks (1: response times of rate-limit checks) ----------
    metric!(
        "tollgate_http_requests_total",
        Counter,
        ["route", "method", "status_class"],
        "HTTP requests answered, by matched route (the pattern, never the path), method and status class."
    ),
    metric!(
        "tollgate_http_request_duration_seconds",
        Histogram(LATENCY_BUCKETS),
        ["route", "method", "status_class"],
        "Time from receiving a request's head to its response, server side."
    ),
    metric!(
        "tollgate_check_duration_seconds",
        Histogram(LATENCY_BUCKETS),
        ["outcome", "route"],
        "POST /v1/check handler time, entry to response; route is local (this node owns every entity) or forwarded."
    ),
    metric!(
        "tollgate_checks_total",
        Counter,
        ["outcome"],
        "Checks decided: allowed, rate_limited or budget_exceeded."
    ),
    metric!(
        "tollgate_usage_events_total",
        Counter,
        ["duplicate"],
        "Usage events acknowledged (durable); duplicate=true for a retried event_id."
    ),
    metric!(
        "tollgate_undo_failures_total",
        Counter,
        [],
        "Admissions of a refused multi-entity check that could not be taken back (the entity over-counts by one)."
    ),
    // --- the store (2: database connection pool usage) ---------------------
    metric!(
        "tollgate_store_up",
        Gauge,
        [],
        "1 while the database answers, 0 while it is known unreachable (cold checks and usage fail fast)."
    ),
    metric!(
        "tollgate_store_outages_total",
        Counter,
        [],
        "Times the database was marked unreachable (three unreachable outcomes in a row)."
    ),
    metric!(
        "tollgate_store_fail_fast_total",
        Counter,
        [],
        "Store calls refused at once because the database was known unreachable."
    ),
    metric!(
        "tollgate_store_timeouts_total",
        Counter,
        [],
        "Store calls that passed --db-timeout-ms."
    ),
    metric!(
        "tollgate_db_pool_connections",
        Gauge,
        ["backend", "state"],
        "Database connections of this node's pool: state in_use or idle."
    ),
    metric!(
        "tollgate_db_pool_max_connections",
        Gauge,
        ["backend"],
        "The pool's connection limit."
    ),
    metric!(
        "tollgate_ledger_commit_duration_seconds",
        Histogram(SLOW_BUCKETS),
        [],
        "One ledger group commit: usage rows, spend and alerts in one transaction."
    ),
    metric!(
        "tollgate_ledger_batch_size",
        Histogram(BATCH_BUCKETS),
        [],
        "Usage events per ledger commit."
    ),
    metric!(
        "tollgate_ledger_commit_errors_total",
        Counter,
        [],
        "Ledger commits that failed (their events were not acknowledged)."
    ),
    metric!(
        "tollgate_window_flush_duration_seconds",
        Histogram(SLOW_BUCKETS),
        [],
        "One flush of window count deltas (checks admitted per day, month and minute) to the store."
    ),
    metric!(
        "tollgate_window_flush_rows",
        Histogram(BATCH_BUCKETS),
        [],
        "Window count rows written per flush."
    ),
    metric!(
        "tollgate_window_deltas_flushed_total",
        Counter,
        [],
        "Window count deltas written to the store."
    ),
    metric!(
        "tollgate_window_flush_errors_total",
        Counter,
        [],
        "Window count flushes that failed (the deltas are kept and retried)."
    ),
    metric!(
        "tollgate_window_deltas_pending_entities",
        Gauge,
        [],
        "Entities with window count deltas not yet written (grows while the database is down)."
    ),
    metric!(
        "tollgate_window_deltas_dropped_total",
        Counter,
        [],
        "Window count deltas dropped because the pending backlog reached its cap."
    ),
    // --- the entity cache (3: warm actor vs cold load) ---------------------
    metric!(
        "tollgate_entity_lookups_total",
        Counter,
        ["result"],
        "Entity operations by whether the actor was resident (warm) or had to be loaded from the store (cold)."
    ),
    metric!(
        "tollgate_entity_load_duration_seconds",
        Histogram(SLOW_BUCKETS),
        [],
        "Loading one entity's counters and budget from the store."
    ),
    metric!(
        "tollgate_entities_resident",
        Gauge,
        [],
        "Entity actors in memory on this node."
    ),
    metric!(
        "tollgate_entities_passivated_total",
        Counter,
        ["cause"],
        "Entity actors stopped to free memory: idle, or over --max-entities (capacity)."
    ),
    metric!(
        "tollgate_entity_starts_total",
        Counter,
        [],
        "Entity actors started (each a cold load)."
    ),
    metric!(
        "tollgate_entity_start_errors_total",
        Counter,
        [],
        "Entity actors that failed to start (store errors)."
    ),
    metric!(
        "tollgate_entities_refused_total",
        Counter,
        [],
        "Requests refused because this node holds --max-entities already."
    ),
    metric!(
        "tollgate_new_entities_refused_total",
        Counter,
        [],
        "Requests refused by the per-IP limit on new entities."
    ),
    metric!(
        "tollgate_entity_peeks_total",
        Counter,
        [],
        "Status reads answered from the store without starting an actor."
    ),
    metric!(
        "tollgate_actor_failures_total",
        Counter,
        [],
        "Entity actors that failed and were rebuilt from the store."
    ),
    // --- budgets and spend (4: budget overages) ----------------------------
    metric!(
        "tollgate_spend_usd_micros_total",
        Counter,
        ["tier"],
        "Spend recorded in the ledger, in millionths of a USD, by the subject's tier (guest for guests)."
    ),
    metric!(
        "tollgate_budget_overage_events_total",
        Counter,
        [],
        "Usage events that took an entity's spend past its monthly budget."
    ),
    metric!(
        "tollgate_entities_over_budget",
        Gauge,
        [],
        "Entities whose spend this month has reached their budget (refreshed every 30 s)."
    ),
    metric!(
        "tollgate_alerts_fired_total",
        Counter,
        ["kind"],
        "Budget alerts written: threshold or overage."
    ),
    metric!(
        "tollgate_alert_deliveries_total",
        Counter,
        ["channel_kind", "outcome"],
        "Alert delivery attempts by channel kind and outcome: delivered, retry or dead."
    ),
    metric!(
        "tollgate_alert_deliveries_dead_total",
        Counter,
        [],
        "Alert deliveries given up (refused by the receiver, or still failing after 24 h)."
    ),
    metric!(
        "tollgate_alert_delivery_latency_seconds",
        Histogram(SLOW_BUCKETS),
        [],
        "From the commit that fired an alert to the receiver's 2xx."
    ),
    metric!(
        "tollgate_alert_outbox_depth",
        Gauge,
        [],
        "Alert deliveries pending (all nodes' outbox, as this node last counted it)."
    ),
    // --- authentication (5: failed authentications) ------------------------
    metric!(
        "tollgate_auth_failures_total",
        Counter,
        ["credential", "reason"],
        "Requests whose credential was refused: credential is api_key, jwt, token or none; reason says why (missing, malformed, unknown_key, bad_signature, expired, wrong_issuer, …)."
    ),
    metric!(
        "tollgate_jwks_fetches_total",
        Counter,
        ["result"],
        "JWKS fetches from the issuer: ok or error."
    ),
    // --- costly calls (6: high-cost queries) -------------------------------
    metric!(
        "tollgate_usage_cost_usd",
        Histogram(COST_BUCKETS),
        ["model"],
        "Cost of each usage event in USD, by model (priced models only; other for the rest)."
    ),
    metric!(
        "tollgate_high_cost_events_total",
        Counter,
        ["model"],
        "Usage events costing more than --high-cost-threshold-usd."
    ),
    // --- the cluster -------------------------------------------------------
    metric!(
        "tollgate_cluster_members",
        Gauge,
        ["status"],
        "Cluster members this node sees, by status (joining, ready, leaving, dead)."
    ),
    metric!(
        "tollgate_forwarded_ops_total",
        Counter,
        ["op"],
        "Entity operations forwarded to their owner over the RPC."
    ),
    metric!(
        "tollgate_forward_duration_seconds",
        Histogram(LATENCY_BUCKETS),
        [],
        "A forwarded entity operation, sent to answered (retries included)."
    ),
    metric!(
        "tollgate_rpc_errors_total",
        Counter,
        ["kind"],
        "Forwarded calls that failed at the RPC layer, by kind (timeout, connection_lost, unavailable, …)."
    ),
    metric!(
        "tollgate_forward_retries_total",
        Counter,
        ["why"],
        "Forwarded operations retried: not_owner or unreachable."
    ),
    metric!(
        "tollgate_handoffs_total",
        Counter,
        ["direction"],
        "Entities handed between nodes on a membership change: in or out."
    ),
    metric!(
        "tollgate_fenced_entities_total",
        Counter,
        [],
        "Counter flushes refused because another node claimed the entity (fencing)."
    ),
    metric!(
        "tollgate_invalidation_failures_total",
        Counter,
        [],
        "Setting changes that could not be pushed to an entity's owner."
    ),
    metric!(
        "tollgate_gossip_rejected_total",
        Counter,
        ["reason"],
        "Gossip packets dropped (bad signature, wrong cluster, …)."
    ),
    metric!(
        "tollgate_gossip_oversize_total",
        Counter,
        [],
        "Gossip packets dropped for size."
    ),
    metric!(
        "tollgate_rpc_connections_refused_total",
        Counter,
        [],
        "Inbound RPC connections refused (over the connection limit)."
    ),
    metric!(
        "tollgate_rpc_handshake_failures_total",
        Counter,
        ["reason"],
        "Inbound RPC handshakes refused."
    ),
    metric!(
        "tollgate_rpc_client_handshake_failures_total",
        Counter,
        ["reason"],
        "Outbound RPC handshakes that failed."
    ),
    metric!(
        "tollgate_rpc_protocol_errors_total",
        Counter,
        [],
        "RPC connections closed for a protocol error."
    ),
    metric!(
        "tollgate_rpc_handler_panics_total",
        Counter,
        [],
        "RPC requests whose handler panicked (answered with an error)."
    ),
];

/// The family `name` belongs to, if any (histogram series carry
/// `_bucket`, `_sum` and `_count` suffixes).
pub fn family(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            METRICS
                .iter()
                .find(|m| m.name == base && matches!(m.kind, Histogram(_)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("tollgate_"), "{}", m.name);
            assert_eq!(
                m.kind == Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            assert!(
                !m.help.is_empty() && m.help.ends_with('.'),
                "{}: HELP is a sentence",
                m.name
            );
            for forbidden in ["user", "key_id", "ip", "fingerprint", "entity"] {
                assert!(
                    !m.labels.contains(&forbidden),
                    "{}: label {forbidden} would be unbounded",
                    m.name
                );
            }
            if let Histogram(buckets) = m.kind {
                assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{}: buckets ascend", m.name);
            }
        }
    }

    #[test]
    fn histogram_series_find_their_family() {
        assert!(family("tollgate_check_duration_seconds_bucket").is_some());
        assert!(family("tollgate_checks_total").is_some());
        assert!(family("tollgate_checks_total_bucket").is_none());
        assert!(family("tollgate_nothing").is_none());
    }
}
