//! The notification outbox: one row per (notifier, event). Rows are written in the same
//! transaction as the alert transition that caused them and marked done only after the
//! receiver accepted them, so a crash in between sends a message again rather than never.

use rusqlite::{params, Transaction};

use super::Store;

/// A message to queue for one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub notifier: String,
    /// Stable: the same event queued twice is one row.
    pub event_id: String,
    pub payload: String,
    /// The most undelivered rows this notifier keeps; beyond it the oldest are dropped.
    pub max_queue: usize,
}

/// A row due for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub payload: String,
    pub attempts: u32,
    pub created_at: i64,
}

/// Adds rows; returns how many older rows were dropped to respect `max_queue`.
pub(super) fn enqueue(tx: &Transaction<'_>, rows: &[Queued], now: i64) -> rusqlite::Result<()> {
    for q in rows {
        tx.execute(
            "INSERT INTO outbox (notifier, event_id, payload, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (notifier, event_id) DO NOTHING",
            params![q.notifier, q.event_id, q.payload, now],
        )?;
        let max = i64::try_from(q.max_queue).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE outbox SET done_at = ?3, result = 'dropped', last_error = 'queue full'
             WHERE id IN (SELECT id FROM outbox WHERE notifier = ?1 AND done_at IS NULL
                          ORDER BY id DESC LIMIT -1 OFFSET ?2)",
            params![q.notifier, max, now],
        )?;
    }
    Ok(())
}

impl Store {
    /// Undelivered rows of `notifier` due at `now`, oldest first.
    pub fn due(&self, notifier: &str, now: i64, limit: u32) -> rusqlite::Result<Vec<OutboxRow>> {
        let conn = self.conn();
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
    }

    /// When the next undelivered row of `notifier` is due, if any.
    pub fn next_due(&self, notifier: &str) -> rusqlite::Result<Option<i64>> {
        self.conn().query_row(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE notifier = ?1 AND done_at IS NULL",
            [notifier],
            |r| r.get(0),
        )
    }

    pub fn pending(&self, notifier: &str) -> rusqlite::Result<u64> {
        self.conn().query_row(
            "SELECT COUNT(*) FROM outbox WHERE notifier = ?1 AND done_at IS NULL",
            [notifier],
            |r| r.get::<_, i64>(0).map(|n| n.unsigned_abs()),
        )
    }

    /// Rows dropped for a full queue since `since`, for the notifications counter.
    pub fn dropped_since(&self, notifier: &str, since: i64) -> rusqlite::Result<u64> {
        self.conn().query_row(
            "SELECT COUNT(*) FROM outbox WHERE notifier = ?1 AND result = 'dropped' AND done_at >= ?2",
            params![notifier, since],
            |r| r.get::<_, i64>(0).map(|n| n.unsigned_abs()),
        )
    }

    /// Delivered (`result` = "sent") or given up (`"failed"`).
    pub fn finish(
        &self,
        id: i64,
        result: &str,
        error: Option<&str>,
        now: i64,
    ) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE outbox SET done_at = ?2, result = ?3, last_error = ?4,
                   attempts = attempts + 1 WHERE id = ?1",
                params![id, now, result, error],
            )
            .map(|_| ())
    }

    /// A failed attempt to try again at `next`.
    pub fn retry_at(&self, id: i64, next: i64, error: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next, error],
            )
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_retries_wait_their_turn() {
        let store = Store::in_memory().expect("db");
        let q = |i: u32| Queued {
            notifier: "sms".into(),
            event_id: format!("{i}-firing"),
            payload: format!("{{\"n\":{i}}}"),
            max_queue: 3,
        };
        let rows: Vec<Queued> = (1..=5).map(q).collect();
        store
            .transaction(|tx| enqueue(tx, &rows, 1_000))
            .expect("enqueue");
        assert_eq!(store.pending("sms").expect("pending"), 3);
        assert_eq!(store.dropped_since("sms", 0).expect("dropped"), 2);
        let due = store.due("sms", 1_000, 10).expect("due");
        let ids: Vec<&str> = due.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(
            ids,
            ["3-firing", "4-firing", "5-firing"],
            "the oldest were dropped"
        );
        store.retry_at(due[0].id, 5_000, "timeout").expect("retry");
        store.finish(due[1].id, "sent", None, 1_100).expect("sent");
        let due = store.due("sms", 2_000, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event_id, "5-firing");
        assert_eq!(store.next_due("sms").expect("next"), Some(1_000));
        store.finish(due[0].id, "sent", None, 2_000).expect("sent");
        assert_eq!(store.next_due("sms").expect("next"), Some(5_000));
        let again = store.due("sms", 5_000, 10).expect("due");
        assert_eq!(again[0].attempts, 1);
    }
}
