//! Alerts: conditions judged on each round (`condition`), the per-alert state machine with
//! hysteresis and flapping (`rule`), maintenance windows (`maintenance`), the engine that
//! ties them to target states and the durable store (`engine`), and message text (`text`).

pub mod condition;
pub mod engine;
pub mod maintenance;
pub mod rule;

pub use condition::{AlertName, AlertsConfig, Condition, Severity};

#[cfg(test)]
mod tests;
