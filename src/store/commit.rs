//! One commit of the journal: batches of writes, in order, in one transaction, each write
//! inside a savepoint. A failure that can pass (disk full, read-only, locked, I/O) rolls the
//! whole transaction back, so the journal keeps everything and tries again; a write the
//! database refuses for good is rolled back alone and reported, so that one bad write can
//! never block the record behind it.

use std::sync::Arc;

use rusqlite::{params, Connection, ErrorCode};

use super::{alerts, hourly, outbox};
use crate::model::Write;

/// What a commit did.
#[derive(Debug, Default, PartialEq)]
pub struct Committed {
    pub writes: usize,
    /// Writes the database refused for good, described for the log.
    pub refused: Vec<String>,
}

pub(super) fn is_transient(error: &rusqlite::Error) -> bool {
    match error {
        rusqlite::Error::SqliteFailure(e, _) => matches!(
            e.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::DatabaseCorrupt
        ),
        _ => false,
    }
}

pub(super) fn commit(
    conn: &mut Connection,
    batches: &[Arc<Vec<Write>>],
) -> rusqlite::Result<Committed> {
    let mut tx = conn.transaction()?;
    let mut done = Committed::default();
    for write in batches.iter().flat_map(|b| b.iter()) {
        let mut savepoint = tx.savepoint()?;
        match apply(&savepoint, write) {
            Ok(()) => savepoint.commit()?,
            Err(e) if is_transient(&e) => return Err(e),
            Err(e) => {
                savepoint.rollback()?;
                done.refused.push(format!("{}: {e}", describe(write)));
            }
        }
        done.writes += 1;
    }
    tx.commit()?;
    Ok(done)
}

fn describe(write: &Write) -> String {
    match write {
        Write::Fire(f) => format!("fire {} (incident {})", f.key, f.incident),
        Write::Notify { key, .. } => format!("notify {key}"),
        Write::Update { key, .. } => format!("update {key}"),
        Write::Flapping { key, .. } => format!("flapping {key}"),
        Write::Resolve { key, .. } => format!("resolve {key}"),
        Write::MaintenanceStarted { window, .. } => format!("maintenance {window} begins"),
        Write::MaintenanceEnded { window, .. } => format!("maintenance {window} ends"),
        Write::BaselineSet { key, .. } => format!("baseline of {key}"),
        Write::BaselineCleared { key } => format!("baseline of {key} cleared"),
        Write::Delivery { id, .. } => format!("delivery of outbox row {id}"),
        Write::Kv { key, .. } => format!("value {key}"),
        Write::Prune { .. } => "prune".to_owned(),
        Write::Hourly(deltas) => format!("hourly aggregates of {} checks", deltas.len()),
        Write::PruneHourly { .. } => "prune hourly aggregates".to_owned(),
    }
}

fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Fire(_)
        | Write::Notify { .. }
        | Write::Update { .. }
        | Write::Flapping { .. }
        | Write::Resolve { .. }
        | Write::MaintenanceStarted { .. }
        | Write::MaintenanceEnded { .. }
        | Write::Prune { .. } => alerts::apply(conn, write),
        Write::Delivery { id, at, result } => outbox::settle(conn, *id, *at, result),
        Write::Hourly(deltas) => hourly::add(conn, deltas),
        Write::PruneHourly { before } => hourly::prune(conn, *before),
        Write::BaselineSet { key, value, at } => conn
            .execute(
                "INSERT INTO baselines (check_key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (check_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, at / 1000],
            )
            .map(|_| ()),
        Write::BaselineCleared { key } => conn
            .execute("DELETE FROM baselines WHERE check_key = ?1", [key])
            .map(|_| ()),
        Write::Kv { key, value } => conn
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Delivery;
    use crate::store::Store;

    #[tokio::test]
    async fn a_write_refused_for_good_is_left_out_and_the_rest_commits() {
        let store = Store::in_memory().await.expect("db");
        // Two incidents with one id break the unique index: the second is refused alone,
        // the writes around it commit.
        let fire = |uid: &str| {
            Write::Fire(crate::model::record::Firing {
                key: format!("t\tc\t{uid}"),
                incident: "same".into(),
                target: "t".into(),
                alertname: crate::model::AlertName::TargetDown,
                severity: crate::model::Severity::Critical,
                area: "15".into(),
                started_at: 1,
                flapping: false,
                labels: "{}".into(),
            })
        };
        let done = store
            .commit(vec![Arc::new(vec![
                fire("a"),
                fire("b"),
                Write::Kv {
                    key: "k".into(),
                    value: "v".into(),
                },
                Write::Delivery {
                    id: 42,
                    at: 1,
                    result: Delivery::Sent,
                },
            ])])
            .await
            .expect("commit");
        assert_eq!(done.writes, 4);
        assert_eq!(done.refused.len(), 1, "{done:?}");
        assert!(done.refused[0].contains("incident same"), "{done:?}");
        assert_eq!(store.kv("k").await.expect("kv").as_deref(), Some("v"));
        assert_eq!(store.open_alerts().await.expect("alerts").len(), 1);
    }
}
