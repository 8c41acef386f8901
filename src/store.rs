//! The embedded database under `--storage.path`: SQLite (bundled) in WAL mode with
//! `synchronous=FULL`, so a committed row survives `kill -9` and power loss. Today it keeps the
//! baselines that DNS, TLS and page-content checks compare against, the alert engine's
//! alerts and incident history (`alerts.rs`) and the notification outbox (`outbox.rs`).
//!
//! The schema is versioned with `PRAGMA user_version`; migrations run in order at open, and a
//! database written by a newer iocwatch is refused rather than misread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

mod alerts;
mod outbox;

pub use alerts::{AlertRow, AmAlert, Firing, IncidentRow, IncidentUpdate, Op};
pub use outbox::{OutboxRow, Queued};

/// Migrations, in order; `user_version` is how many have run. Never edit a landed one: add.
const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE baselines (
        check_key  TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;",
    // Times are Unix milliseconds.
    "CREATE TABLE alerts (
        key         TEXT PRIMARY KEY,
        incident    INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
        notified    INTEGER NOT NULL,
        flapping    INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        resolved_at INTEGER,
        labels      TEXT NOT NULL,
        annotations TEXT NOT NULL
    ) STRICT;
    CREATE TABLE incidents (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_key      TEXT NOT NULL,
        target         TEXT NOT NULL,
        alertname      TEXT NOT NULL,
        severity       TEXT NOT NULL,
        area           TEXT NOT NULL,
        started_at     INTEGER NOT NULL,
        ended_at       INTEGER,
        root_cause     TEXT,
        affected       INTEGER NOT NULL DEFAULT 0,
        affected_areas TEXT NOT NULL DEFAULT '[]',
        notified       INTEGER NOT NULL DEFAULT 0,
        maintenance    TEXT,
        flapping       INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX incidents_started ON incidents (started_at);
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        notifier        TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        done_at         INTEGER,
        result          TEXT,
        last_error      TEXT,
        UNIQUE (notifier, event_id)
    ) STRICT;
    CREATE INDEX outbox_due ON outbox (notifier, next_attempt_at) WHERE done_at IS NULL;
    CREATE TABLE maintenance_periods (
        window_name TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER,
        PRIMARY KEY (window_name, started_at)
    ) STRICT;
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the storage directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this iocwatch knows ({supported}): \
         upgrade iocwatch, or move the database aside"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

/// The one connection to the database. SQLite serialises writers anyway; a mutex keeps the
/// connection `Sync` and the statements short.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `dir/iocwatch.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("iocwatch.db");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::NewerSchema {
                path,
                found: version,
                supported,
            });
        }
        migrate(&mut conn, version).map_err(sqlite)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// A database in memory, for an agent run without `--storage.path`: the same code and
    /// schema, nothing kept across restarts.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(sqlite)?;
        migrate(&mut conn, 0).map_err(sqlite)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Poisoning needs a panic inside a statement, which rusqlite reports as errors instead.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn baseline(&self, key: &str) -> Result<Option<String>, rusqlite::Error> {
        self.conn()
            .query_row(
                "SELECT value FROM baselines WHERE check_key = ?1",
                [key],
                |row| row.get(0),
            )
            .optional()
    }

    pub fn set_baseline(&self, key: &str, value: &str) -> Result<(), rusqlite::Error> {
        let now = unix_ms(SystemTime::now()) / 1000;
        self.conn()
            .execute(
                "INSERT INTO baselines (check_key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (check_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, now],
            )
            .map(|_| ())
    }

    pub fn clear_baseline(&self, key: &str) -> Result<(), rusqlite::Error> {
        self.conn()
            .execute("DELETE FROM baselines WHERE check_key = ?1", [key])
            .map(|_| ())
    }
}

/// Runs the migrations after `version`, all in one transaction.
fn migrate(conn: &mut Connection, version: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (i, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()
}

/// Milliseconds since the epoch; a clock before 1970 reads as 0.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.baseline("dns-tinh/dns").expect("read"), None);
        store
            .set_baseline("dns-tinh/dns", "127.0.10.1")
            .expect("write");
        store
            .set_baseline("dns-tinh/dns", "127.0.10.2")
            .expect("overwrite");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.baseline("dns-tinh/dns").expect("read").as_deref(),
            Some("127.0.10.2")
        );
        store.clear_baseline("dns-tinh/dns").expect("clear");
        assert_eq!(store.baseline("dns-tinh/dns").expect("read"), None);
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("pragma");
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        drop(Store::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join("iocwatch.db")).expect("raw open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let error = Store::open(dir.path()).expect_err("newer schema");
        assert!(matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                supported: 2,
                ..
            }
        ));
        assert!(
            error.to_string().contains("newer than this iocwatch knows"),
            "{error}"
        );
    }
}
