//! The notification outbox: one row per (notifier, event). Rows are written in the same
//! commit as the alert transition that caused them and settled only after the receiver
//! accepted them, so a crash in between sends a message again rather than never.

use rusqlite::{params, Connection};

use super::{Store, StoreError};
use crate::model::record::{Delivery, Queued};

/// A row due for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub payload: String,
    pub attempts: u32,
    pub created_at: i64,
}

/// Adds rows; beyond a notifier's `max_queue` undelivered rows the oldest are dropped.
pub(super) fn enqueue(conn: &Connection, rows: &[Queued], now: i64) -> rusqlite::Result<()> {
    for q in rows {
        conn.execute(
            "INSERT INTO outbox (notifier, event_id, payload, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (notifier, event_id) DO NOTHING",
            params![q.notifier, q.event_id, q.payload, now],
        )?;
        let max = i64::try_from(q.max_queue).unwrap_or(i64::MAX);
        conn.execute(
            "UPDATE outbox SET done_at = ?3, result = 'dropped', last_error = 'queue full'
             WHERE id IN (SELECT id FROM outbox WHERE notifier = ?1 AND done_at IS NULL
                          ORDER BY id DESC LIMIT -1 OFFSET ?2)",
            params![q.notifier, max, now],
        )?;
    }
    Ok(())
}

/// Records what became of a delivery attempt.
pub(super) fn settle(
    conn: &Connection,
    id: i64,
    at: i64,
    result: &Delivery,
) -> rusqlite::Result<()> {
    let finish = |result: &str, error: Option<&str>| {
        conn.execute(
            "UPDATE outbox SET done_at = ?2, result = ?3, last_error = ?4,
               attempts = attempts + 1 WHERE id = ?1 AND done_at IS NULL",
            params![id, at, result, error],
        )
    };
    match result {
        Delivery::Sent => finish("sent", None),
        Delivery::Refused(error) => finish("failed", Some(error)),
        Delivery::Expired(error) => finish("expired", Some(error)),
        Delivery::Retry { next, error } => conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
             WHERE id = ?1 AND done_at IS NULL",
            params![id, next, error],
        ),
    }
    .map(|_| ())
}

impl Store {
    /// Undelivered rows of `notifier` due at `now`, oldest first.
    pub async fn due(
        &self,
        notifier: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let notifier = notifier.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, event_id, payload, attempts, created_at FROM outbox
                 WHERE notifier = ?1 AND done_at IS NULL AND next_attempt_at <= ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![notifier, now, limit], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    payload: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// When the next undelivered row of `notifier` is due, if any.
    pub async fn next_due(&self, notifier: &str) -> Result<Option<i64>, StoreError> {
        let notifier = notifier.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE notifier = ?1 AND done_at IS NULL",
                [notifier],
                |r| r.get(0),
            )
        })
        .await
    }

    pub async fn pending(&self, notifier: &str) -> Result<u64, StoreError> {
        let notifier = notifier.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE notifier = ?1 AND done_at IS NULL",
                [notifier],
                |r| r.get::<_, i64>(0).map(|n| n.unsigned_abs()),
            )
        })
        .await
    }

    /// Rows dropped for a full queue since `since`, for the notifications counter.
    pub async fn dropped_since(&self, notifier: &str, since: i64) -> Result<u64, StoreError> {
        let notifier = notifier.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE notifier = ?1 AND result = 'dropped' AND done_at >= ?2",
                params![notifier, since],
                |r| r.get::<_, i64>(0).map(|n| n.unsigned_abs()),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Write;

    #[tokio::test]
    async fn the_queue_is_bounded_and_retries_wait_their_turn() {
        let store = Store::in_memory().await.expect("db");
        let q = |i: u32| Queued {
            notifier: "sms".into(),
            event_id: format!("{i}-firing"),
            payload: format!("{{\"n\":{i}}}"),
            max_queue: 3,
        };
        let notify = Write::Notify {
            key: "k".into(),
            annotations: "{}".into(),
            update: Default::default(),
            queued: (1..=5).map(q).collect(),
            at: 1_000,
        };
        let commit = |writes: Vec<Write>| store.commit(vec![Arc::new(writes)]);
        commit(vec![notify]).await.expect("enqueue");
        assert_eq!(store.pending("sms").await.expect("pending"), 3);
        assert_eq!(store.dropped_since("sms", 0).await.expect("dropped"), 2);
        let due = store.due("sms", 1_000, 10).await.expect("due");
        let ids: Vec<&str> = due.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(
            ids,
            ["3-firing", "4-firing", "5-firing"],
            "the oldest were dropped"
        );
        let settle = |id, at, result| Write::Delivery { id, at, result };
        commit(vec![
            settle(
                due[0].id,
                1_050,
                Delivery::Retry {
                    next: 5_000,
                    error: "timeout".into(),
                },
            ),
            settle(due[1].id, 1_100, Delivery::Sent),
        ])
        .await
        .expect("settle");
        let later = store.due("sms", 2_000, 10).await.expect("due");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].event_id, "5-firing");
        assert_eq!(store.next_due("sms").await.expect("next"), Some(1_000));
        commit(vec![settle(later[0].id, 2_000, Delivery::Sent)])
            .await
            .expect("sent");
        assert_eq!(store.next_due("sms").await.expect("next"), Some(5_000));
        let again = store.due("sms", 5_000, 10).await.expect("due");
        assert_eq!(again[0].attempts, 1);
        // A delivery settled twice (re-sent after a crash) changes nothing the second time.
        commit(vec![settle(due[1].id, 9_000, Delivery::Sent)])
            .await
            .expect("again");
        assert_eq!(store.pending("sms").await.expect("pending"), 1);
    }
}
