//! The alert engine's view as metrics: alerts by state and severity, one series per alert
//! that is not inactive, and which maintenance windows are on.

use std::collections::{HashMap, HashSet};

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::alert::AlertsSnapshot;
use crate::model::Severity;

const STATES: [&str; 4] = ["pending", "firing", "suppressed", "maintenance"];

pub struct AlertMetrics {
    alerts: IntGaugeVec,
    active: IntGaugeVec,
    active_series: HashSet<[String; 5]>,
    maintenance: IntGaugeVec,
    windows: HashSet<String>,
}

impl AlertMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<AlertMetrics> {
        let alerts = IntGaugeVec::new(
            Opts::new(
                "iocwatch_alerts",
                "Alerts by state (pending, firing, suppressed, maintenance) and severity.",
            ),
            &["state", "severity"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "iocwatch_alert_active",
                "1 for each alert that is not inactive, with its state.",
            ),
            &["target", "check", "alertname", "severity", "state"],
        )?;
        let maintenance = IntGaugeVec::new(
            Opts::new(
                "iocwatch_maintenance_window_active",
                "1 while a maintenance window is on.",
            ),
            &["window"],
        )?;
        for m in [&alerts, &active, &maintenance] {
            registry.register(Box::new(m.clone()))?;
        }
        Ok(AlertMetrics {
            alerts,
            active,
            active_series: HashSet::new(),
            maintenance,
            windows: HashSet::new(),
        })
    }

    pub fn show(&mut self, view: &AlertsSnapshot) {
        let mut counts: HashMap<(&str, Severity), i64> = HashMap::new();
        let mut series = HashSet::new();
        for a in &view.alerts {
            *counts.entry((a.state, a.severity)).or_default() += 1;
            series.insert([
                a.target.clone(),
                a.check.clone(),
                a.alertname.to_owned(),
                a.severity.as_str().to_owned(),
                a.state.to_owned(),
            ]);
        }
        for state in STATES {
            for severity in Severity::ALL {
                self.alerts
                    .with_label_values(&[state, severity.as_str()])
                    .set(counts.get(&(state, severity)).copied().unwrap_or(0));
            }
        }
        for gone in self.active_series.difference(&series) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self.active.remove_label_values(&labels);
        }
        for labels in &series {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.active.with_label_values(&labels).set(1);
        }
        self.active_series = series;
        let names: HashSet<String> = view.windows.iter().map(|w| w.name.clone()).collect();
        for gone in self.windows.difference(&names) {
            let _ = self.maintenance.remove_label_values(&[gone]);
        }
        for w in &view.windows {
            self.maintenance
                .with_label_values(&[&w.name])
                .set(i64::from(w.active));
        }
        self.windows = names;
    }
}
