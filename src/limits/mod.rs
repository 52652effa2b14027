//! Pure limit logic: no async, no IO, property-tested. Actors are thin
//! shells around these types.

pub mod alerts;
pub mod budget;
pub mod calendar;
pub mod entity;
pub mod gcra;
pub mod new_entities;
pub mod pricing;
pub mod tier;
pub mod window;
