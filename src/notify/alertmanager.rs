//! Alertmanager API v2, sent the way Prometheus sends: one queue per Alertmanager; every
//! active alert re-sent each `resend_interval` with `endsAt` four intervals ahead (so an
//! agent that dies lets its alerts expire); a resolved alert sent with `endsAt` = the
//! resolution time and re-sent for 15 minutes. Every configured Alertmanager gets every
//! alert. The set comes from the database, so after a restart the same alerts go out again
//! and Alertmanager, which merges equal label sets, shows no duplicate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbox::DeliveryError;
use super::{append_path, parse_url, secret, Shared};
use crate::model::{from_unix_ms, redacted, unix_ms, Event, PromDuration, Secret};
use crate::store::AmAlert;

/// How long a resolved alert keeps being sent.
pub const RESOLVED_RESEND: Duration = Duration::from_secs(15 * 60);
/// Alerts per POST.
const BATCH: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URLs (`http://127.0.0.1:9093`); `/api/v2/alerts` is appended.
    pub urls: Vec<String>,
    #[serde(default)]
    pub resend_interval: Option<PromDuration>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
}

#[derive(Clone, PartialEq)]
pub struct AlertmanagerSpec {
    pub urls: Vec<reqwest::Url>,
    pub resend_interval: Duration,
    pub bearer_token: Option<Secret>,
}

impl std::fmt::Debug for AlertmanagerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redacted(u.as_str())).collect();
        f.debug_struct("AlertmanagerSpec")
            .field("urls", &urls)
            .field("resend_interval", &self.resend_interval)
            .field("bearer_token", &self.bearer_token)
            .finish()
    }
}

impl AlertmanagerConfig {
    pub fn build(self) -> Result<AlertmanagerSpec, String> {
        if self.urls.is_empty() {
            return Err("alertmanager needs at least one URL in `urls`".into());
        }
        let mut urls = Vec::new();
        for url in &self.urls {
            let base = parse_url(url, "alertmanager url")?;
            urls.push(append_path(&base, &["api", "v2", "alerts"])?);
        }
        let bearer_token = if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
            Some(secret(
                self.bearer_token.as_deref(),
                self.bearer_token_file.as_deref(),
                "bearer_token",
            )?)
        } else {
            None
        };
        let resend_interval = self
            .resend_interval
            .map_or(Duration::from_secs(60), |d| d.0);
        if resend_interval < Duration::from_secs(1) {
            return Err("resend_interval must be at least 1s".into());
        }
        Ok(AlertmanagerSpec {
            urls,
            resend_interval,
            bearer_token,
        })
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The body Alertmanager receives for one stored alert.
pub fn payload(alert: &AmAlert, now: SystemTime, resend: Duration) -> Value {
    let labels: Value = serde_json::from_str(&alert.labels).unwrap_or(Value::Null);
    let annotations: Value = serde_json::from_str(&alert.annotations).unwrap_or(Value::Null);
    let ends = match alert.resolved_at {
        Some(at) => from_unix_ms(at),
        None => now + resend * 4,
    };
    let mut body = serde_json::json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(from_unix_ms(alert.started_at)),
        "endsAt": rfc3339(ends),
    });
    if let Some(url) = annotations.get("status_url").and_then(Value::as_str) {
        body["generatorURL"] = Value::String(url.to_owned());
    }
    body
}

/// The agent's own alert as Alertmanager gets it: labels that say which agent, and the
/// same re-send rules as every other alert.
pub fn agent_payload(event: &Event, now: SystemTime, resend: Duration) -> Option<Value> {
    let started = chrono::DateTime::parse_from_rfc3339(&event.started_at).ok()?;
    let ended = match &event.ended_at {
        Some(t) => Some(chrono::DateTime::parse_from_rfc3339(t).ok()?),
        None => None,
    };
    if ended.is_some_and(|e| SystemTime::from(e) + RESOLVED_RESEND < now) {
        return None;
    }
    let ends = ended.map_or(now + resend * 4, SystemTime::from);
    Some(serde_json::json!({
        "labels": {
            "alertname": event.alertname,
            "severity": event.severity.as_str(),
            "target": event.target,
            "check": event.check,
        },
        "annotations": {
            "summary": format!("iocwatch cannot write its database: {}", event.note.as_deref().unwrap_or("")),
        },
        "startsAt": rfc3339(SystemTime::from(started)),
        "endsAt": rfc3339(ends),
    }))
}

/// The queue of one Alertmanager.
pub struct AmSender {
    pub notifier: Arc<str>,
    pub url: reqwest::Url,
    pub spec: AlertmanagerSpec,
    pub timeout: Duration,
    pub client: reqwest::Client,
    pub wake: Arc<Notify>,
    pub shared: Shared,
}

impl AmSender {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let metrics = self.shared.metrics.clone();
        metrics.init(&self.notifier);
        let mut resend = tokio::time::interval(self.spec.resend_interval);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = resend.tick() => {}
                () = self.wake.notified() => {}
                _ = self.shared.agent_alert.changed() => {}
                () = shutdown.cancelled() => return,
            }
            let now = SystemTime::now();
            let since = unix_ms(now) - i64::try_from(RESOLVED_RESEND.as_millis()).unwrap_or(0);
            let mut body: Vec<Value> = match self.shared.store.am_alerts(since).await {
                Ok(alerts) => alerts
                    .iter()
                    .map(|a| payload(a, now, self.spec.resend_interval))
                    .collect(),
                Err(error) => {
                    // The agent-health alert below still goes out.
                    tracing::error!(%error, "cannot read alerts for Alertmanager");
                    Vec::new()
                }
            };
            let agent = self.shared.agent_alert.borrow_and_update().clone();
            if let Some(event) = agent {
                body.extend(agent_payload(&event, now, self.spec.resend_interval));
            }
            metrics
                .queue
                .with_label_values(&[&self.notifier])
                .set(i64::try_from(body.len()).unwrap_or(i64::MAX));
            for batch in body.chunks(BATCH) {
                let sent = tokio::select! {
                    sent = self.post(batch) => sent,
                    () = shutdown.cancelled() => return,
                };
                // A failed batch is not retried by itself: the next re-send is the retry.
                match sent {
                    Ok(()) => metrics
                        .notifications
                        .with_label_values(&[&self.notifier, "success"])
                        .inc(),
                    Err(error) => {
                        metrics
                            .notifications
                            .with_label_values(&[&self.notifier, "failure"])
                            .inc();
                        tracing::warn!(url = %redacted(self.url.as_str()), %error, alerts = batch.len(), "cannot send alerts to Alertmanager");
                    }
                }
            }
        }
    }

    async fn post(&self, body: &[Value]) -> Result<(), DeliveryError> {
        let mut request = self.client.post(self.url.clone()).json(body);
        if let Some(token) = &self.spec.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        let response = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| DeliveryError::Retry("timed out".into()))?
            .map_err(DeliveryError::http)?;
        DeliveryError::from_status(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_alerts_end_four_intervals_ahead_and_resolved_ones_when_they_resolved() {
        let now = from_unix_ms(1_800_000_000_000);
        let firing = AmAlert {
            labels: r#"{"alertname":"IocwatchTargetDown","target":"gw"}"#.into(),
            annotations: r#"{"summary":"x","status_url":"http://127.0.0.1:10090/"}"#.into(),
            started_at: 1_799_999_940_000,
            resolved_at: None,
        };
        let body = payload(&firing, now, Duration::from_secs(60));
        assert_eq!(body["labels"]["target"], "gw");
        assert_eq!(body["startsAt"], "2027-01-15T07:59:00.000Z");
        assert_eq!(body["endsAt"], "2027-01-15T08:04:00.000Z");
        assert_eq!(body["generatorURL"], "http://127.0.0.1:10090/");
        let resolved = AmAlert {
            resolved_at: Some(1_799_999_990_000),
            ..firing
        };
        assert_eq!(
            payload(&resolved, now, Duration::from_secs(60))["endsAt"],
            "2027-01-15T07:59:50.000Z"
        );
    }

    #[test]
    fn urls_get_the_api_path() {
        let spec = AlertmanagerConfig {
            urls: vec![
                "http://127.0.0.1:9093".into(),
                "http://127.0.0.2:9093/am".into(),
            ],
            resend_interval: None,
            bearer_token: None,
            bearer_token_file: None,
        }
        .build()
        .expect("valid");
        assert_eq!(spec.urls[0].as_str(), "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(
            spec.urls[1].as_str(),
            "http://127.0.0.2:9093/am/api/v2/alerts"
        );
    }
}
