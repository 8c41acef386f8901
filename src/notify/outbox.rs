//! The delivery loop of one notifier: take due rows from the outbox, deliver each under a
//! timeout, mark it done only after the receiver accepted it, back off on failure. Killed
//! between delivery and marking, the row is delivered again after the restart: at most one
//! duplicate, never a loss.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::text::render;
use super::{NotifierKind, NotifierSpec};
use crate::model::Event;
use crate::store::{unix_ms, Store};

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Network trouble, a timeout, a 5xx, 429: try again later.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused this message (4xx): trying again sends the same refusal.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn retry(e: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Retry(e.to_string())
    }

    pub fn permanent(e: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Permanent(e.to_string())
    }

    pub fn from_status(status: reqwest::StatusCode) -> Result<(), DeliveryError> {
        if status.is_success() {
            Ok(())
        } else if status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::Permanent(format!("HTTP {status}")))
        } else {
            Err(DeliveryError::Retry(format!("HTTP {status}")))
        }
    }
}

/// Counters shared by every notifier.
#[derive(Clone)]
pub struct NotifyMetrics {
    pub notifications: IntCounterVec,
    pub queue: IntGaugeVec,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<NotifyMetrics> {
        let notifications = IntCounterVec::new(
            Opts::new(
                "iocwatch_notifications_total",
                "Notification attempts by notifier and result (success, failure, dropped).",
            ),
            &["notifier", "result"],
        )?;
        let queue = IntGaugeVec::new(
            Opts::new(
                "iocwatch_notification_queue_length",
                "Messages in the outbox not yet delivered, by notifier.",
            ),
            &["notifier"],
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(queue.clone()))?;
        Ok(NotifyMetrics {
            notifications,
            queue,
        })
    }

    /// Makes a notifier's series exist at zero, so rates work from its first failure.
    pub fn init(&self, notifier: &str) {
        for result in ["success", "failure", "dropped"] {
            self.notifications.with_label_values(&[notifier, result]);
        }
        self.queue.with_label_values(&[notifier]);
    }

    fn count(&self, notifier: &str, result: &str) {
        self.notifications
            .with_label_values(&[notifier, result])
            .inc();
    }
}

/// Messages older than this are given up on (counted as dropped): a day-old "link down"
/// helps nobody, and the incident history keeps the record.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// 1 s, 2 s, 4 s, … up to 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

enum Sender {
    Webhook(super::webhook::WebhookSpec),
    Bot(super::bot::BotSpec),
    ZaloOa(Box<super::zalo::OaSender>),
    Email(Box<super::email::EmailSender>),
    #[cfg(feature = "desktop")]
    Desktop(super::DesktopConfig),
}

/// One notifier's delivery task.
pub struct Worker {
    spec: NotifierSpec,
    sender: Sender,
    client: reqwest::Client,
    store: Arc<Store>,
    wake: Arc<Notify>,
    metrics: NotifyMetrics,
}

impl Worker {
    /// `None` for Alertmanager, which has its own sender.
    pub fn new(
        spec: NotifierSpec,
        client: reqwest::Client,
        store: Arc<Store>,
        wake: Arc<Notify>,
        metrics: NotifyMetrics,
    ) -> Result<Option<Worker>, String> {
        let sender = match &spec.kind {
            NotifierKind::Alertmanager(_) => return Ok(None),
            NotifierKind::Webhook(s) => Sender::Webhook(s.clone()),
            NotifierKind::Telegram(s) | NotifierKind::ZaloBot(s) => Sender::Bot(s.clone()),
            NotifierKind::ZaloOa(s) => {
                Sender::ZaloOa(Box::new(super::zalo::OaSender::new(s.clone(), &spec.name)))
            }
            NotifierKind::Email(s) => Sender::Email(Box::new(super::email::EmailSender::new(
                s.clone(),
                spec.timeout,
            )?)),
            #[cfg(feature = "desktop")]
            NotifierKind::Desktop(c) => {
                if !super::desktop::session_bus_configured() {
                    tracing::warn!(
                        notifier = %spec.name,
                        "no session D-Bus (DBUS_SESSION_BUS_ADDRESS unset): desktop notifications will fail and be retried; other notifiers are not affected"
                    );
                }
                Sender::Desktop(c.clone())
            }
            #[cfg(not(feature = "desktop"))]
            NotifierKind::Desktop(_) => {
                return Err("desktop notifications need the `desktop` feature".into())
            }
        };
        metrics.init(&spec.name);
        Ok(Some(Worker {
            spec,
            sender,
            client,
            store,
            wake,
            metrics,
        }))
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.spec.name.clone();
        let mut dropped_seen = unix_ms(SystemTime::now());
        loop {
            let now = unix_ms(SystemTime::now());
            let due = match self.store.due(&name, now, 32) {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(notifier = %name, %error, "cannot read the outbox");
                    Vec::new()
                }
            };
            for row in &due {
                tokio::select! {
                    () = self.attempt(row) => {}
                    // The row stays undelivered on disk and goes out after the restart.
                    () = shutdown.cancelled() => return,
                }
            }
            if let Ok(dropped) = self.store.dropped_since(&name, dropped_seen) {
                if dropped > 0 {
                    self.metrics
                        .notifications
                        .with_label_values(&[&name, "dropped"])
                        .inc_by(dropped);
                    tracing::warn!(notifier = %name, dropped, "outbox full: oldest messages dropped");
                }
                dropped_seen = now + 1;
            }
            if let Ok(pending) = self.store.pending(&name) {
                self.metrics
                    .queue
                    .with_label_values(&[&name])
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
            if !due.is_empty() {
                continue;
            }
            let wait = match self.store.next_due(&name) {
                Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0).max(10)),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn attempt(&self, row: &crate::store::OutboxRow) {
        let name = &*self.spec.name;
        let now = || unix_ms(SystemTime::now());
        let event: Event = match serde_json::from_str(&row.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(notifier = name, id = row.id, %error, "unreadable outbox row");
                let _ = self
                    .store
                    .finish(row.id, "failed", Some("unreadable"), now());
                self.metrics.count(name, "dropped");
                return;
            }
        };
        let message = render(&event, self.spec.language, self.spec.strip_diacritics);
        let delivery = async {
            match &self.sender {
                Sender::Webhook(s) => {
                    super::webhook::deliver(s, &self.client, &event, &message).await
                }
                Sender::Bot(s) => super::bot::deliver(s, &self.client, &message).await,
                Sender::ZaloOa(s) => s.deliver(&self.client, &self.store, &message).await,
                Sender::Email(s) => s.deliver(&event, &message).await,
                #[cfg(feature = "desktop")]
                Sender::Desktop(c) => super::desktop::deliver(c, &event, &message).await,
            }
        };
        let result = match tokio::time::timeout(self.spec.timeout, delivery).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Retry("timed out".into())),
        };
        let at = now();
        let written = match result {
            Ok(()) => {
                self.metrics.count(name, "success");
                tracing::info!(notifier = name, event = %event.id, "notification delivered");
                self.store.finish(row.id, "sent", None, at)
            }
            Err(DeliveryError::Permanent(error)) => {
                self.metrics.count(name, "failure");
                tracing::warn!(notifier = name, event = %event.id, %error, "notification refused; not retried");
                self.store.finish(row.id, "failed", Some(&error), at)
            }
            Err(DeliveryError::Retry(error)) => {
                self.metrics.count(name, "failure");
                let age = Duration::from_millis(u64::try_from(at - row.created_at).unwrap_or(0));
                if age > MAX_AGE {
                    self.metrics.count(name, "dropped");
                    tracing::warn!(notifier = name, event = %event.id, %error, "notification given up after a day");
                    self.store.finish(row.id, "expired", Some(&error), at)
                } else {
                    let delay = backoff(row.attempts);
                    tracing::warn!(notifier = name, event = %event.id, %error, retry_in = ?delay, "notification failed");
                    let next = at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    self.store.retry_at(row.id, next, &error)
                }
            }
        };
        if let Err(error) = written {
            tracing::error!(notifier = name, %error, "cannot update the outbox");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (0..12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn statuses_decide_whether_to_retry() {
        use reqwest::StatusCode;
        assert!(DeliveryError::from_status(StatusCode::NO_CONTENT).is_ok());
        assert!(matches!(
            DeliveryError::from_status(StatusCode::BAD_REQUEST),
            Err(DeliveryError::Permanent(_))
        ));
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(matches!(
                DeliveryError::from_status(status),
                Err(DeliveryError::Retry(_))
            ));
        }
    }
}
