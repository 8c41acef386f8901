//! What the engine writes into the outbox for one alert transition: everything a message
//! needs, so a notifier never looks back at the catalog (which a reload may have changed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across restarts and re-deliveries: receivers deduplicate on it.
    pub id: String,
    pub status: EventStatus,
    pub alertname: String,
    pub severity: Severity,
    pub target: String,
    pub target_name: Option<String>,
    pub check: String,
    pub kind: String,
    pub area: String,
    /// Names from the province down to the target's area, with diacritics.
    pub area_path: Vec<String>,
    pub system: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub flapping: bool,
    /// The measured value behind the alert (loss ratio, latency in seconds, days left).
    pub value: Option<f64>,
    /// What the probe saw (failure reason, changed lines, open ports).
    pub note: Option<String>,
    /// Targets behind this one that are unreachable because of it.
    pub affected_targets: u32,
    pub affected_areas: Vec<String>,
    pub affected_systems: Vec<String>,
    pub status_url: Option<String>,
    /// Unique across restarts and agents; event ids are built from it.
    pub incident: String,
}

impl Event {
    pub fn area_name(&self) -> &str {
        self.area_path.last().map_or(&self.area, String::as_str)
    }
}
