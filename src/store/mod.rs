//! The embedded database under `--storage.path`: SQLite (bundled) in WAL mode with
//! `synchronous=FULL`, so a committed row survives `kill -9` and power loss. It keeps the
//! baselines of DNS, TLS and page checks, alerts and incident history, maintenance periods
//! and the notification outbox.
//!
//! Nothing here runs on the async workers: the database has two connections, each on a
//! thread of its own (tokio-rusqlite), one that writes and one that reads, so a slow disk
//! stalls only the journal's commit, never a probe, the state or an HTTP answer. Only the
//! journal writes ([`Store::commit`]); everyone else reads.
//!
//! The schema is versioned with `PRAGMA user_version`; migrations run in order at open, and a
//! database written by a newer iocwatch is refused rather than misread. The database and its
//! WAL are readable by the agent's user only (0600), whatever the umask.

mod alerts;
mod commit;
mod hourly;
mod outbox;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

pub use alerts::{AmAlert, IncidentRow, MaintenancePeriod};
pub use commit::Committed;
pub use hourly::{open_read_only, read_history, read_history_of, History, IncidentSpan};
pub use outbox::OutboxRow;

use crate::model::Write;

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
    #[error(
        "database {path} has schema version {found}, older than this iocwatch reads ({supported}): \
         start the agent once to bring it up to date"
    )]
    OlderSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database {path}: its connection thread has stopped")]
    Closed { path: PathBuf },
}

impl StoreError {
    /// Errors that can go away by themselves (a full disk, a read-only file system, a lock
    /// held by another process, an I/O error): what failed to commit is tried again later.
    /// Anything else is a write the database will never take.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => commit::is_transient(source),
            StoreError::Closed { .. } | StoreError::Directory { .. } => true,
            StoreError::NewerSchema { .. } | StoreError::OlderSchema { .. } => false,
        }
    }
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    path: Arc<Path>,
    writer: tokio_rusqlite::Connection,
    reader: tokio_rusqlite::Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The file of the database in its directory.
pub const FILE: &str = "iocwatch.db";

impl Store {
    /// Opens (or creates) `dir/iocwatch.db` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE);
        private_files(dir, &path)?;
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let writer = tokio_rusqlite::Connection::open(&path)
            .await
            .map_err(sqlite)?;
        let migrated = writer
            .call_raw(|conn| -> Result<Result<(), (i64, i64)>, rusqlite::Error> {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                schema::migrate(conn)
            })
            .await
            .map_err(|_| StoreError::Closed { path: path.clone() })?
            .map_err(sqlite)?;
        if let Err((found, supported)) = migrated {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported,
            });
        }
        // The WAL and its index now exist; they get the database file's mode from SQLite,
        // but an older database may have been created under a looser umask.
        private_files(dir, &path)?;
        let reader = tokio_rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .await
        .map_err(sqlite)?;
        reader
            .call_raw(|conn| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .await
            .map_err(|_| StoreError::Closed { path: path.clone() })?
            .map_err(sqlite)?;
        Ok(Store {
            path: Arc::from(path.as_path()),
            writer,
            reader,
        })
    }

    /// A database in memory, for an agent run without `--storage.path`: the same code and
    /// schema, nothing kept across restarts. One connection both writes and reads.
    pub async fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = tokio_rusqlite::Connection::open_in_memory()
            .await
            .map_err(sqlite)?;
        conn.call_raw(schema::migrate)
            .await
            .map_err(|_| StoreError::Closed { path: path.clone() })?
            .map_err(sqlite)?
            .map_err(|(found, supported)| StoreError::NewerSchema {
                path: path.clone(),
                found,
                supported,
            })?;
        Ok(Store {
            path: Arc::from(path.as_path()),
            writer: conn.clone(),
            reader: conn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits batches of writes, in order, in one transaction. A write the database refuses
    /// for good (a constraint it breaks) is left out and reported in [`Committed`]; any other
    /// failure rolls the whole transaction back and is returned, so the caller can keep the
    /// writes and try again.
    pub async fn commit(&self, batches: Vec<Arc<Vec<Write>>>) -> Result<Committed, StoreError> {
        let done = self
            .writer
            .call_raw(move |conn| commit::commit(conn, &batches))
            .await;
        self.result(done)
    }

    /// Runs a read on the reading connection's thread.
    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let done = self.reader.call_raw(move |conn| read(conn)).await;
        self.result(done)
    }

    fn result<R>(
        &self,
        done: tokio_rusqlite::Result<rusqlite::Result<R>>,
    ) -> Result<R, StoreError> {
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(StoreError::Sqlite {
                path: self.path.to_path_buf(),
                source,
            }),
            Err(_) => Err(StoreError::Closed {
                path: self.path.to_path_buf(),
            }),
        }
    }

    /// Every stored baseline, by `target/check`.
    pub async fn baselines(&self) -> Result<HashMap<String, String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT check_key, value FROM baselines")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    pub async fn kv(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| {
            use rusqlite::OptionalExtension;
            conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// The raw connection of the writer, for tests that need to look under the hood.
    #[cfg(test)]
    pub(crate) async fn with_writer<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let done = self.writer.call_raw(f).await;
        self.result(done)
    }
}

/// The storage directory is the agent's alone (0700 when we create it) and the database
/// file 0600, created so before SQLite opens it: SQLite gives its WAL and shared-memory
/// files the database file's mode.
fn private_files(dir: &Path, db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |path: &Path, source| StoreError::Directory {
        path: path.to_owned(),
        source,
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .map_err(|e| io(db, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io(&file, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Write;

    #[tokio::test]
    async fn baselines_survive_reopening_and_the_files_are_private() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let store = Store::open(&data).await.expect("open");
        assert!(store.baselines().await.expect("read").is_empty());
        let set = |value: &str| Write::BaselineSet {
            key: "dns-tinh/dns".into(),
            value: value.into(),
            at: 1,
        };
        store
            .commit(vec![Arc::new(vec![set("127.0.10.1"), set("127.0.10.2")])])
            .await
            .expect("write");
        drop(store);
        let store = Store::open(&data).await.expect("reopen");
        assert_eq!(
            store.baselines().await.expect("read")["dns-tinh/dns"],
            "127.0.10.2"
        );
        let (mode, sync) = store
            .with_writer(|c| {
                let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                let sync: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0))?;
                Ok((mode, sync))
            })
            .await
            .expect("pragmas");
        assert_eq!((mode.as_str(), sync), ("wal", 2), "WAL, synchronous=FULL");
        use std::os::unix::fs::PermissionsExt;
        for file in [FILE, "iocwatch.db-wal", "iocwatch.db-shm"] {
            let mode = std::fs::metadata(data.join(file))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let dir_mode = std::fs::metadata(&data).expect("dir").permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        drop(Store::open(dir.path()).await.expect("open"));
        let conn = Connection::open(dir.path().join(FILE)).expect("raw open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let error = Store::open(dir.path()).await.expect_err("newer schema");
        assert!(matches!(error, StoreError::NewerSchema { found: 99, .. }));
        assert!(
            error.to_string().contains("newer than this iocwatch knows"),
            "{error}"
        );
    }
}
