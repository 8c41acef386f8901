//! The delivery loop of one notifier: take due rows from the outbox, deliver each under a
//! timeout, record what became of it (through the journal) only after the receiver
//! answered, back off on failure. Killed between delivery and the commit of its result, the
//! row is delivered again after the restart: at most one duplicate, never a loss. While the
//! database cannot take results, the task remembers them itself and sends nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{NotifierKind, NotifierSpec, Shared};
use crate::model::record::Delivery;
use crate::model::text::render;
use crate::model::{unix_ms, Event, Write};
use crate::store::OutboxRow;

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

    /// A failed HTTP request. reqwest puts the URL in its errors, and Telegram and Zalo
    /// put the bot token in the URL's path: the message is the error and its causes,
    /// without the URL.
    pub fn http(e: reqwest::Error) -> DeliveryError {
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        DeliveryError::Retry(message)
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

    pub(super) fn count(&self, notifier: &str, result: &str) {
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
    shared: Shared,
    wake: Arc<Notify>,
}

/// Rows whose delivery is settled but not yet committed by the journal, with the time
/// until which they must not be tried again (for ever, for a delivered one). Without it a
/// row would be delivered again at every turn while the database cannot take the result.
#[derive(Default)]
struct Settled(HashMap<i64, i64>);

impl Settled {
    /// Forgets rows that the store no longer lists as due (their result is committed) and
    /// rows whose retry time has come.
    fn refresh(&mut self, due: &[OutboxRow], now: i64) {
        let listed: HashSet<i64> = due.iter().map(|r| r.id).collect();
        self.0
            .retain(|id, until| listed.contains(id) && *until > now);
    }

    fn holds(&self, id: i64) -> bool {
        self.0.contains_key(&id)
    }
}

/// Delivery of the agent's own alert, which does not go through the outbox (the outbox is
/// in the database that fails).
#[derive(Default)]
struct AgentAlert {
    delivered: Option<String>,
    next_try: Option<tokio::time::Instant>,
    attempts: u32,
}

impl Worker {
    /// `None` for Alertmanager, which has its own sender.
    pub fn new(
        spec: NotifierSpec,
        client: reqwest::Client,
        shared: Shared,
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
        shared.metrics.init(&spec.name);
        let wake = shared.wakes.handle(&spec.name, None);
        Ok(Some(Worker {
            spec,
            sender,
            client,
            shared,
            wake,
        }))
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.spec.name.clone();
        let store = self.shared.store.clone();
        let mut dropped_seen = unix_ms(SystemTime::now());
        let mut settled = Settled::default();
        let mut agent = AgentAlert::default();
        loop {
            let now = unix_ms(SystemTime::now());
            let due = match store.due(&name, now, 32).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(notifier = %name, %error, "cannot read the outbox");
                    Vec::new()
                }
            };
            settled.refresh(&due, now);
            let todo: Vec<&OutboxRow> = due.iter().filter(|r| !settled.holds(r.id)).collect();
            let attempted = todo.len();
            for row in todo {
                let result = tokio::select! {
                    result = self.attempt(row) => result,
                    // The row stays undelivered on disk and goes out after the restart.
                    () = shutdown.cancelled() => return,
                };
                let until = match &result {
                    Delivery::Retry { next, .. } => *next,
                    _ => i64::MAX,
                };
                settled.0.insert(row.id, until);
                self.shared.recorder.record(vec![Write::Delivery {
                    id: row.id,
                    at: unix_ms(SystemTime::now()),
                    result,
                }]);
            }
            self.agent_alert(&mut agent).await;
            if let Ok(dropped) = store.dropped_since(&name, dropped_seen).await {
                if dropped > 0 {
                    self.shared
                        .metrics
                        .notifications
                        .with_label_values(&[&name, "dropped"])
                        .inc_by(dropped);
                    tracing::warn!(notifier = %name, dropped, "outbox full: oldest messages dropped");
                }
                dropped_seen = now + 1;
            }
            if let Ok(pending) = store.pending(&name).await {
                self.shared
                    .metrics
                    .queue
                    .with_label_values(&[&name])
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
            if attempted > 0 {
                continue;
            }
            // Rows settled but not yet committed are due on disk; their commit wakes us.
            let mut wait = match store.next_due(&name).await {
                Ok(Some(at)) if at > now => {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0).max(10))
                }
                _ => Duration::from_secs(60),
            };
            if let Some(next) = agent.next_try {
                wait = wait.min(next.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::select! {
                () = self.wake.notified() => {}
                _ = self.shared.agent_alert.changed() => {}
                () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Sends the agent's own alert (firing, then resolved) once each, retrying in memory.
    async fn agent_alert(&mut self, state: &mut AgentAlert) {
        let Some(event) = self.shared.agent_alert.borrow_and_update().clone() else {
            return;
        };
        if state.delivered.as_deref() == Some(event.id.as_str())
            || state
                .next_try
                .is_some_and(|t| t > tokio::time::Instant::now())
        {
            return;
        }
        match self.deliver(&event).await {
            Ok(()) => {
                self.shared.metrics.count(&self.spec.name, "success");
                tracing::info!(notifier = %self.spec.name, event = %event.id, "agent-health notification delivered");
                *state = AgentAlert {
                    delivered: Some(event.id.clone()),
                    ..AgentAlert::default()
                };
            }
            Err(error) => {
                self.shared.metrics.count(&self.spec.name, "failure");
                tracing::warn!(notifier = %self.spec.name, event = %event.id, %error, "agent-health notification failed");
                state.next_try = Some(tokio::time::Instant::now() + backoff(state.attempts));
                state.attempts += 1;
            }
        }
    }

    async fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        let message = render(event, self.spec.language, self.spec.strip_diacritics);
        let delivery = async {
            match &self.sender {
                Sender::Webhook(s) => {
                    super::webhook::deliver(s, &self.client, event, &message).await
                }
                Sender::Bot(s) => super::bot::deliver(s, &self.client, &message).await,
                Sender::ZaloOa(s) => s.deliver(&self.client, &self.shared, &message).await,
                Sender::Email(s) => s.deliver(event, &message).await,
                #[cfg(feature = "desktop")]
                Sender::Desktop(c) => super::desktop::deliver(c, event, &message).await,
            }
        };
        match tokio::time::timeout(self.spec.timeout, delivery).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Retry("timed out".into())),
        }
    }

    /// One attempt at one row; what became of it, for the journal.
    async fn attempt(&self, row: &OutboxRow) -> Delivery {
        let name = &*self.spec.name;
        let event: Event = match serde_json::from_str(&row.payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(notifier = name, id = row.id, %error, "unreadable outbox row");
                self.shared.metrics.count(name, "dropped");
                return Delivery::Refused("unreadable".into());
            }
        };
        let at = unix_ms(SystemTime::now());
        match self.deliver(&event).await {
            Ok(()) => {
                self.shared.metrics.count(name, "success");
                tracing::info!(notifier = name, event = %event.id, "notification delivered");
                Delivery::Sent
            }
            Err(DeliveryError::Permanent(error)) => {
                self.shared.metrics.count(name, "failure");
                tracing::warn!(notifier = name, event = %event.id, %error, "notification refused; not retried");
                Delivery::Refused(error)
            }
            Err(DeliveryError::Retry(error)) => {
                self.shared.metrics.count(name, "failure");
                let age = Duration::from_millis(u64::try_from(at - row.created_at).unwrap_or(0));
                if age > MAX_AGE {
                    self.shared.metrics.count(name, "dropped");
                    tracing::warn!(notifier = name, event = %event.id, %error, "notification given up after a day");
                    Delivery::Expired(error)
                } else {
                    let delay = backoff(row.attempts);
                    tracing::warn!(notifier = name, event = %event.id, %error, retry_in = ?delay, "notification failed");
                    Delivery::Retry {
                        next: at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                        error,
                    }
                }
            }
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
