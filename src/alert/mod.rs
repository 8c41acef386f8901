//! Alerts: each round judged against its check's conditions (`judge`), the per-alert state
//! machine with hysteresis, keep-firing and flapping (`rule`), the pure engine that ties
//! them to reachability and maintenance and says what to record and send (`engine`), the
//! words of its messages (`message`) and what it shows (`view`).

pub mod engine;
pub mod judge;
mod message;
pub mod rule;
pub mod view;

pub use engine::{AlertKey, Effects, Engine, IncidentIds, Round, Step};
pub use view::{AlertView, AlertsSnapshot};

#[cfg(test)]
mod tests;
