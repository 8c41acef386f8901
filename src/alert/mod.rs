//! Alerts: the per-condition state machine (`rule`). The engine that feeds it from probe
//! results, dependencies, maintenance, the durable store and notifiers comes next (issue 3).

pub mod rule;
