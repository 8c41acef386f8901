//! What the API, the status page and the alert metrics show of the engine: a snapshot,
//! rebuilt each tick, read by whoever needs it.

use serde::Serialize;

use crate::model::Severity;

/// One alert that is pending, firing, suppressed or held by maintenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub target: String,
    pub check: String,
    pub alertname: &'static str,
    pub severity: Severity,
    /// pending, firing, suppressed or maintenance.
    pub state: &'static str,
    pub flapping: bool,
    /// Firing, but good again: the resolution waits for `resolve_after` and
    /// `keep_firing_for`.
    pub recovering: bool,
    pub since: Option<String>,
    pub value: Option<f64>,
    pub note: Option<String>,
    /// The upstream targets whose failure explains this one, when suppressed.
    pub root_cause: Vec<String>,
    pub affected_targets: u32,
    pub affected_areas: Vec<String>,
    pub affected_systems: Vec<String>,
    pub maintenance: Option<String>,
    pub notified: bool,
    pub incident: Option<String>,
}

/// Whether a maintenance window is on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowState {
    pub name: String,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertsSnapshot {
    pub alerts: Vec<AlertView>,
    #[serde(rename = "maintenance_windows")]
    pub windows: Vec<WindowState>,
}
