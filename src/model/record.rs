//! The durable record, as data: what the alert engine decided (incidents opened, alerts
//! sent, resolved), what the state judged (baselines), what the notifiers delivered. Whoever
//! produces a [`Write`] hands it to a [`Recorder`]; the journal task behind it commits the
//! writes to the store in the order they came, in one transaction per batch, and keeps them
//! until the commit succeeds. Nobody else writes the database.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AlertName, Severity};

/// One change to the durable record. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Opens an incident and records its alert as firing, not yet notified.
    Fire(Firing),
    /// The alert is sent: marked notified, its messages queued.
    Notify {
        key: String,
        annotations: String,
        update: IncidentUpdate,
        queued: Vec<Queued>,
        at: i64,
    },
    /// New annotations (reach, flapping) of an open alert and its incident's root cause,
    /// maintenance and reach; no message.
    Update {
        key: String,
        annotations: String,
        update: IncidentUpdate,
    },
    /// Flapping began on a notified alert: new annotations and one message.
    Flapping {
        key: String,
        annotations: String,
        queued: Vec<Queued>,
        at: i64,
    },
    /// Resolves the alert, closes its incident, queues the resolved messages.
    Resolve {
        key: String,
        resolved_at: i64,
        annotations: String,
        queued: Vec<Queued>,
    },
    MaintenanceStarted {
        window: String,
        at: i64,
    },
    MaintenanceEnded {
        window: String,
        at: i64,
    },
    /// What a DNS, TLS or page check compares against from now on.
    BaselineSet {
        key: String,
        value: String,
        at: i64,
    },
    BaselineCleared {
        key: String,
    },
    /// The outcome of one delivery attempt of an outbox row.
    Delivery {
        id: i64,
        at: i64,
        result: Delivery,
    },
    /// A small value a notifier keeps across restarts (a rotated refresh token).
    Kv {
        key: String,
        value: String,
    },
    /// Deletes history that ended before `before`; what is open is kept whatever its age.
    Prune {
        before: i64,
    },
    /// Rounds to add to checks' hourly aggregates.
    Hourly(Vec<super::hourly::HourDelta>),
    /// Deletes hourly aggregates of hours that began before `before` (Unix seconds).
    PruneHourly {
        before: i64,
    },
}

impl Write {
    /// Whether committing it gives a notifier something new to do (a message queued, an
    /// alert Alertmanager must hear of, a delivery settled).
    pub fn wakes_notifiers(&self) -> bool {
        match self {
            Write::Notify { .. } | Write::Flapping { .. } | Write::Delivery { .. } => true,
            Write::Resolve { queued, .. } => !queued.is_empty(),
            Write::Update { .. } => true,
            _ => false,
        }
    }
}

/// What became of one attempt to deliver an outbox row.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The receiver accepted it.
    Sent,
    /// The receiver refused it for good (a 4xx); retrying would send the same refusal.
    Refused(String),
    /// Undelivered for too long; given up.
    Expired(String),
    /// Failed; try again at `next`.
    Retry { next: i64, error: String },
}

/// A new firing alert and the incident it opens.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The alert's key: target, check and alert name.
    pub key: String,
    /// Unique across restarts and agents (see `alert::engine::IncidentIds`), so that the
    /// event ids built from it never name two incidents.
    pub incident: String,
    pub target: String,
    pub alertname: AlertName,
    pub severity: Severity,
    pub area: String,
    pub started_at: i64,
    pub flapping: bool,
    /// The alert's labels for Alertmanager, as a JSON object.
    pub labels: String,
}

/// An alert the record holds as open: the engine picks it up again after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAlert {
    pub key: String,
    pub incident: String,
    pub notified: bool,
    pub flapping: bool,
    pub started_at: i64,
}

/// Root cause, maintenance and reach of an incident, as the engine last saw them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentUpdate {
    pub root_cause: Option<String>,
    pub maintenance: Option<String>,
    pub affected: u32,
    /// JSON array of area names.
    pub affected_areas: String,
    pub flapping: bool,
}

/// A message to queue for one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub notifier: String,
    /// Stable: the same event queued twice is one row.
    pub event_id: String,
    /// The [`super::Event`] as JSON.
    pub payload: String,
    /// The most undelivered rows this notifier keeps; beyond it the oldest are dropped.
    pub max_queue: usize,
}

/// A batch of writes on its way to the journal, with an optional word back once committed.
#[derive(Debug)]
pub struct Batch {
    pub writes: Vec<Write>,
    pub committed: Option<oneshot::Sender<()>>,
}

/// The mailbox of the journal. Sending never waits: the journal keeps what it cannot commit
/// yet, so a slow or failing disk never holds up the sender.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Batch>,
}

impl Recorder {
    pub fn channel() -> (Recorder, mpsc::UnboundedReceiver<Batch>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, rx)
    }

    /// Hands writes to the journal. Returns false only once the journal has stopped.
    pub fn record(&self, writes: Vec<Write>) -> bool {
        if writes.is_empty() {
            return true;
        }
        self.tx
            .send(Batch {
                writes,
                committed: None,
            })
            .is_ok()
    }

    /// Hands writes to the journal and waits up to `within` for their commit. Whether they
    /// were committed in time or not, they stay queued until they are.
    pub async fn record_and_wait(&self, writes: Vec<Write>, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Batch {
            writes,
            committed: Some(tx),
        });
        sent.is_ok() && matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }
}
