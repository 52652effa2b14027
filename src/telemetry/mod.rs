//! What a node tells its operators: Prometheus metrics ([`catalog`] lists
//! every family; [`install`] sets up the process-wide recorder) and logs
//! ([`logging`]: text or JSON, written off the request path).
//!
//! Per-request telemetry (request ids, the access log, HTTP metrics) is an
//! HTTP layer: `http/request_layer.rs`.

pub mod catalog;
pub mod gauges;
pub mod logging;
pub mod usage;

use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide Prometheus recorder, installed on first use, with
/// every family described (HELP lines) and every histogram given its
/// buckets.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for m in catalog::METRICS {
            if let catalog::Kind::Histogram(buckets) = m.kind
                && !buckets.is_empty()
            {
                // Fails only for an empty bucket list, excluded above.
                let Ok(with) = builder.set_buckets_for_metric(Matcher::Full(m.name.to_string()), buckets) else {
                    unreachable!("non-empty buckets are accepted")
                };
                builder = with;
            }
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (embedding); then
        // our /metrics shows nothing, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        for m in catalog::METRICS {
            match m.kind {
                catalog::Kind::Counter => metrics::describe_counter!(m.name, m.help),
                catalog::Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
                catalog::Kind::Histogram(_) => metrics::describe_histogram!(m.name, m.help),
            }
        }
        metrics::gauge!("tollgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Telemetry flags (flattened into `tollgate serve`).
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// Access log: every error (4xx but 429, 5xx) and one in this many
    /// other requests (1: all, 0: errors only).
    #[arg(long, env = "TOLLGATE_ACCESS_LOG_SAMPLE", default_value_t = 1)]
    pub access_log_sample: u64,

    /// A usage event costing more than this (USD) counts in
    /// `tollgate_high_cost_events_total`.
    #[arg(long, env = "TOLLGATE_HIGH_COST_THRESHOLD_USD", default_value = "1.00")]
    pub high_cost_threshold_usd: rust_decimal::Decimal,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            access_log_sample: 1,
            high_cost_threshold_usd: rust_decimal::Decimal::ONE,
        }
    }
}
