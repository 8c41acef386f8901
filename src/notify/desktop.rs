//! Desktop notifications for operator workstations (cargo feature `desktop`): notify-rust
//! over zbus on the session D-Bus. Without a session bus the attempt fails at once; the
//! worker counts it and retries with backoff, and nothing else waits for it.

use notify_rust::{Notification, Timeout, Urgency};

use super::outbox::DeliveryError;
use super::DesktopConfig;
use crate::model::text::Message;
use crate::model::Severity;
use crate::model::{Event, EventStatus};

/// Whether a session bus is configured at all; checked once at start for a clear warning.
pub fn session_bus_configured() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| std::path::Path::new(&dir).join("bus").exists())
}

pub async fn deliver(
    config: &DesktopConfig,
    event: &Event,
    message: &Message,
) -> Result<(), DeliveryError> {
    let urgency = match (event.status, event.severity) {
        (EventStatus::Firing, Severity::Critical) => Urgency::Critical,
        (EventStatus::Firing, _) => Urgency::Normal,
        (EventStatus::Resolved, _) => Urgency::Low,
    };
    let mut notification = Notification::new();
    notification
        .appname("iocwatch")
        .summary(&message.title)
        .body(&message.body)
        .urgency(urgency)
        .hint(notify_rust::Hint::Category("network".into()));
    if let Some(ms) = config.expire_ms {
        notification.timeout(Timeout::Milliseconds(ms));
    }
    notification
        .show_async()
        .await
        .map(|_| ())
        .map_err(|e| DeliveryError::Retry(format!("desktop notification: {e}")))
}
