//! Fault-injection harness for Tollgate clusters.
//!
//! It starts real `tollgate serve` processes on loopback against a scratch
//! Postgres database ([`Cluster`]), drives load at them ([`load`]), injects
//! faults (`kill -9`, SIGTERM, restart, join, partitions through the nodes'
//! test-only faults endpoint), and checks the invariants afterwards
//! ([`invariants`]):
//!
//! - (a) every acknowledged usage event is in the ledger exactly once, and
//!   every spend row equals its ledger sum;
//! - (b) admitted checks per entity stay within the limit plus the bound the
//!   fault allows;
//! - (c) no 5xx other than retryable 503s (which are counted).
//!
//! The scenarios themselves live in [`scenarios`], shared by the root
//! crate's `tests/cluster_scenarios.rs` (the short set, inside `cargo test`)
//! and the `tollgate-cluster` binary (`scenarios --long`, `up <n>`).
//!
//! The harness never links the `tollgate` library: callers pass the path of
//! the `tollgate` binary.

pub mod api;
pub mod cluster;
pub mod db;
pub mod error;
pub mod invariants;
pub mod load;
pub mod ports;
pub mod process;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod targets;
pub mod webhook_sink;

pub use api::{Api, ClusterView, NodeView, Reply};
pub use cluster::{Cluster, ClusterOpts, DatabaseChoice};
pub use error::{HarnessError, Result};
pub use load::{LoadDriver, LoadReport, LoadSpec};
pub use report::{ScenarioReport, Severity};
pub use scenarios::{Env, Params, Scenario};
