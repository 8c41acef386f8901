//! Alerts: each round judged against its check's conditions (`judge`), the per-alert state
//! machine with hysteresis and flapping (`rule`), maintenance windows (`maintenance`) and the
//! engine that ties them to target states and the durable store (`engine`).

pub mod engine;
pub mod judge;
pub mod rule;

#[cfg(test)]
mod tests;
