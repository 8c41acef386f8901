//! The schema, as migrations run in order at open. `PRAGMA user_version` counts how many
//! have run; a database with a higher count was written by a newer iocwatch and is refused.

use rusqlite::Connection;

/// Migrations, in order; `user_version` is how many have run. Never edit a landed one: add.
const MIGRATIONS: [&str; 4] = [
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
    // Incident ids that never repeat: chosen by the engine from the agent's instance id and
    // a counter (so no two agents, shards or restarts hand out the same one), no longer the
    // table's AUTOINCREMENT, which a database that lost writes would hand out again.
    "ALTER TABLE incidents ADD COLUMN uid TEXT;
    UPDATE incidents SET uid = CAST(id AS TEXT);
    CREATE UNIQUE INDEX incidents_uid ON incidents (uid);
    ALTER TABLE alerts ADD COLUMN incident_uid TEXT;
    UPDATE alerts SET incident_uid = CAST(incident AS TEXT);",
    // Hourly aggregates for availability reports: each check's place (kept when a reload
    // removes the check, so old reports still name it) and its hours (Unix seconds).
    "CREATE TABLE report_checks (
        id          INTEGER PRIMARY KEY,
        check_key   TEXT NOT NULL UNIQUE,
        target      TEXT NOT NULL,
        target_name TEXT,
        kind        TEXT NOT NULL,
        areas       TEXT NOT NULL,
        system      TEXT,
        owner       TEXT
    ) STRICT;
    CREATE TABLE hourly (
        check_id            INTEGER NOT NULL REFERENCES report_checks (id),
        hour                INTEGER NOT NULL,
        rounds              INTEGER NOT NULL,
        failures            INTEGER NOT NULL,
        observed_ms         INTEGER NOT NULL,
        down_ms             INTEGER NOT NULL,
        maintenance_ms      INTEGER NOT NULL,
        maintenance_down_ms INTEGER NOT NULL,
        latency_sum         REAL NOT NULL,
        latency_count       INTEGER NOT NULL,
        sketch              BLOB NOT NULL,
        PRIMARY KEY (check_id, hour)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX hourly_hour ON hourly (hour);
    CREATE INDEX incidents_ended ON incidents (ended_at);",
];

/// The schema version this iocwatch writes and reads.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Runs the migrations the database has not seen, all in one transaction. `Err((found,
/// supported))` for a database from a newer iocwatch.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), (i64, i64)>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Ok(Err((version, supported)));
    }
    let tx = conn.transaction()?;
    for (i, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(Ok(()))
}
