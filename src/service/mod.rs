//! The operations a request performs, independent of HTTP: a check across
//! entities, recording usage, releasing a reservation.

pub mod check;
pub mod new_entities;
pub mod reservation;
pub mod tenancy;
pub mod usage;
