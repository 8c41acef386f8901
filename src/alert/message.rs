//! What an alert says: the [`Event`] its messages are made of, its labels and annotations
//! for Alertmanager, and the outbox rows for the notifiers it goes to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::judge::Verdict;
use crate::catalog::{Catalog, Check, Target};
use crate::model::record::Queued;
use crate::model::{rfc3339, Condition, Event, EventStatus, Severity};

use super::engine::AlertKey;

/// The firing event of a new alert, as its messages will tell it.
pub(super) fn event(
    catalog: &Catalog,
    target: &Target,
    check: &Check,
    condition: &Condition,
    incident: &str,
    started: SystemTime,
    verdict: Option<&Verdict>,
) -> Event {
    let areas = &catalog.areas;
    let mut path: Vec<String> = areas
        .ancestors(target.area)
        .map(|a| areas.get(a).name.clone())
        .collect();
    path.reverse();
    Event {
        id: format!("{incident}-firing"),
        status: EventStatus::Firing,
        alertname: condition.name.as_str().to_owned(),
        severity: condition.severity,
        target: target.id.to_string(),
        target_name: target.name.clone(),
        check: check.key.check.to_string(),
        kind: check.kind.as_str().to_owned(),
        area: areas.get(target.area).code.clone(),
        area_path: path,
        system: target.system.map(|s| catalog.systems[s].name.clone()),
        labels: alert_labels(catalog, target, check)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        started_at: rfc3339(started),
        ended_at: None,
        flapping: false,
        value: verdict.and_then(|v| v.value),
        note: verdict.and_then(|v| v.note.clone()),
        affected_targets: 0,
        affected_areas: Vec::new(),
        affected_systems: Vec::new(),
        status_url: catalog.alerting.external_url.clone(),
        incident: incident.to_owned(),
    }
}

/// The event of an alert whose check left the config: only what its key tells.
pub(super) fn orphan_event(key: &AlertKey, incident: &str, started: SystemTime) -> Event {
    Event {
        id: format!("{incident}-firing"),
        status: EventStatus::Firing,
        alertname: key.name.as_str().to_owned(),
        severity: Severity::Info,
        target: key.check.target.to_string(),
        target_name: None,
        check: key.check.check.to_string(),
        kind: String::new(),
        area: String::new(),
        area_path: Vec::new(),
        system: None,
        labels: BTreeMap::new(),
        started_at: rfc3339(started),
        ended_at: None,
        flapping: false,
        value: None,
        note: Some("removed from the configuration".into()),
        affected_targets: 0,
        affected_areas: Vec::new(),
        affected_systems: Vec::new(),
        status_url: None,
        incident: incident.to_owned(),
    }
}

/// The resolved event that follows `firing`.
pub(super) fn resolved(firing: &Event, at: SystemTime, verdict: Option<&Verdict>) -> Event {
    let mut event = firing.clone();
    event.status = EventStatus::Resolved;
    event.id = format!("{}-resolved", firing.incident);
    event.ended_at = Some(rfc3339(at));
    if let Some(v) = verdict {
        event.value = v.value;
    }
    event
}

/// An alert's labels: the check's series labels and its target's own labels (owner, role,
/// uplink: what Alertmanager routes and inhibits on), those that have a value, as
/// Prometheus leaves empty ones out.
fn alert_labels<'a>(
    catalog: &'a Catalog,
    target: &'a Target,
    check: &'a Check,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    catalog
        .schema
        .names()
        .into_iter()
        .zip(check.label_values.iter().map(|v| &**v))
        .chain(target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .filter(|(_, v)| !v.is_empty())
}

/// The alert's labels for Alertmanager: [`alert_labels`], the alert name and the severity.
pub(super) fn labels(
    catalog: &Catalog,
    target: &Target,
    check: &Check,
    condition: &Condition,
) -> String {
    let mut labels: BTreeMap<&str, &str> = alert_labels(catalog, target, check).collect();
    labels.insert("alertname", condition.name.as_str());
    labels.insert("severity", condition.severity.as_str());
    serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into())
}

pub(super) fn annotations(catalog: &Catalog, event: &Event) -> String {
    let settings = &catalog.alerting;
    let message = crate::model::text::render(event, settings.language, false);
    let mut a: BTreeMap<&str, String> = BTreeMap::new();
    a.insert("summary", message.title);
    a.insert("description", message.body);
    if event.affected_targets > 0 {
        a.insert("affected_targets", event.affected_targets.to_string());
        a.insert("affected_areas", event.affected_areas.join(", "));
    }
    if event.flapping {
        a.insert("flapping", "true".into());
    }
    if let Some(url) = &event.status_url {
        a.insert("status_url", url.clone());
    }
    serde_json::to_string(&a).unwrap_or_else(|_| "{}".into())
}

/// Outbox rows for the notifiers an alert goes to: those named by the check's `notify`, or
/// all of them (Alertmanager reads the alerts table instead).
pub(super) fn queue(catalog: &Catalog, notify: Option<&[Arc<str>]>, event: &Event) -> Vec<Queued> {
    let Ok(payload) = serde_json::to_string(event) else {
        return Vec::new();
    };
    catalog
        .alerting
        .notifiers
        .iter()
        .filter(|n| n.outbox)
        .filter(|n| notify.is_none_or(|names| names.contains(&n.name)))
        .map(|n| Queued {
            notifier: n.name.to_string(),
            event_id: event.id.clone(),
            payload: payload.clone(),
            max_queue: n.max_queue,
        })
        .collect()
}
