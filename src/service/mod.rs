//! The operations a request performs, independent of HTTP: a check across
//! entities, recording usage, releasing a reservation, membership changes.

pub mod check;
pub mod membership;
pub mod new_entities;
pub mod reservation;
pub mod tenancy;
pub mod usage;
