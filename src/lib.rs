//! Tollgate: per-entity rate limits, budgets and a usage ledger for chat APIs.
//!
//! The request path, by module: [`http`] (axum edge) → [`identity`] (who is
//! calling) → [`service`] (a check across entities, usage) → [`router`]
//! (which actor owns an entity) → [`actor`] (one supervised actor per
//! entity, around the pure [`limits`] logic) → [`store`] (SQLite or
//! Postgres), with [`ledger`] group-committing usage.

pub mod actor;
pub mod alerts;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod entity;
pub mod http;
pub mod identity;
pub mod ledger;
pub mod limits;
pub mod money;
pub mod node;
pub mod router;
pub mod service;
pub mod store;
pub mod telemetry;
