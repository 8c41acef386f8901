//! Hourly aggregates: deltas added to each check's hour, pruned after `reports.keep`, and
//! read back with the incidents of a period for `iocwatch report` and `/api/v1/report`.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{Store, StoreError, FILE};
use crate::model::hourly::{CheckPlace, HourDelta, HourStats, Sketch};

/// Adds each delta to its check's hour (one row per check and hour).
pub(super) fn add(conn: &Connection, deltas: &[HourDelta]) -> rusqlite::Result<()> {
    // A check's place rarely changes (a reload that moves or renames it): the row is written
    // only then, and otherwise just looked up. `RETURNING` gives no row when the update's
    // `WHERE` leaves the row as it was.
    let mut place = conn.prepare_cached(
        "INSERT INTO report_checks (check_key, target, target_name, kind, areas, system, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (check_key) DO UPDATE SET target = excluded.target,
           target_name = excluded.target_name, kind = excluded.kind, areas = excluded.areas,
           system = excluded.system, owner = excluded.owner
         WHERE (target, target_name, kind, areas, system, owner) IS NOT
           (excluded.target, excluded.target_name, excluded.kind, excluded.areas,
            excluded.system, excluded.owner)
         RETURNING id",
    )?;
    let mut place_id = conn.prepare_cached("SELECT id FROM report_checks WHERE check_key = ?1")?;
    let mut sketch =
        conn.prepare_cached("SELECT sketch FROM hourly WHERE check_id = ?1 AND hour = ?2")?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO hourly (check_id, hour, rounds, failures, observed_ms, down_ms, maintenance_ms,
           maintenance_down_ms, latency_sum, latency_count, sketch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (check_id, hour) DO UPDATE SET rounds = rounds + excluded.rounds,
           failures = failures + excluded.failures, observed_ms = observed_ms + excluded.observed_ms,
           down_ms = down_ms + excluded.down_ms, maintenance_ms = maintenance_ms + excluded.maintenance_ms,
           maintenance_down_ms = maintenance_down_ms + excluded.maintenance_down_ms,
           latency_sum = latency_sum + excluded.latency_sum,
           latency_count = latency_count + excluded.latency_count, sketch = excluded.sketch",
    )?;
    for delta in deltas {
        let p = &delta.place;
        let areas = serde_json::to_string(&p.areas).unwrap_or_else(|_| "[]".into());
        let written: Option<i64> = place
            .query_row(
                params![
                    p.check_key,
                    p.target,
                    p.target_name,
                    p.kind,
                    areas,
                    p.system,
                    p.owner
                ],
                |r| r.get(0),
            )
            .optional()?;
        let id: i64 = match written {
            Some(id) => id,
            None => place_id.query_row(params![p.check_key], |r| r.get(0))?,
        };
        let mut merged: Sketch = sketch
            .query_row(params![id, delta.hour], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
            .map(|bytes| Sketch::from_bytes(&bytes))
            .unwrap_or_default();
        merged.merge(&delta.stats.sketch);
        let s = &delta.stats;
        upsert.execute(params![
            id,
            delta.hour,
            s.rounds,
            s.failures,
            s.observed_ms,
            s.down_ms,
            s.maintenance_ms,
            s.maintenance_down_ms,
            s.latency_sum,
            s.latency_count,
            merged.to_bytes(),
        ])?;
    }
    Ok(())
}

pub(super) fn prune(conn: &Connection, before: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM hourly WHERE hour < ?1", [before])?;
    conn.execute(
        "DELETE FROM report_checks WHERE id NOT IN (SELECT DISTINCT check_id FROM hourly)",
        [],
    )?;
    Ok(())
}

/// An incident as a report sees it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSpan {
    pub target: String,
    pub alertname: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The maintenance window it fell in, if any: planned, so not counted as an incident.
    pub maintenance: Option<String>,
}

/// What a report of a period is made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Each check that ran in the period, with its hours summed.
    pub checks: Vec<(CheckPlace, HourStats)>,
    /// Incidents that were open at some time in the period.
    pub incidents: Vec<IncidentSpan>,
}

/// Reads the hours that began in `[from, to)` and the incidents open at some time in it
/// (Unix milliseconds).
pub fn read_history(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<History> {
    let mut checks: Vec<(CheckPlace, HourStats)> = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT c.check_key, c.target, c.target_name, c.kind, c.areas, c.system, c.owner,
                h.rounds, h.failures, h.observed_ms, h.down_ms, h.maintenance_ms,
                h.maintenance_down_ms, h.latency_sum, h.latency_count, h.sketch
         FROM hourly h JOIN report_checks c ON c.id = h.check_id
         WHERE h.hour >= ?1 AND h.hour < ?2 ORDER BY c.check_key",
    )?;
    let mut rows = stmt.query(params![from.div_euclid(1000), to.div_euclid(1000)])?;
    while let Some(r) = rows.next()? {
        let key: String = r.get(0)?;
        let hour = HourStats {
            rounds: r.get(7)?,
            failures: r.get(8)?,
            observed_ms: r.get(9)?,
            down_ms: r.get(10)?,
            maintenance_ms: r.get(11)?,
            maintenance_down_ms: r.get(12)?,
            latency_sum: r.get(13)?,
            latency_count: r.get(14)?,
            sketch: Sketch::from_bytes(&r.get::<_, Vec<u8>>(15)?),
        };
        match checks.last_mut() {
            Some((place, sum)) if place.check_key == key => sum.add(&hour),
            _ => {
                let areas: String = r.get(4)?;
                let place = CheckPlace {
                    check_key: key,
                    target: r.get(1)?,
                    target_name: r.get(2)?,
                    kind: r.get(3)?,
                    areas: serde_json::from_str(&areas).unwrap_or_default(),
                    system: r.get(5)?,
                    owner: r.get(6)?,
                };
                checks.push((place, hour));
            }
        }
    }
    let mut stmt = conn.prepare(
        "SELECT target, alertname, started_at, ended_at, maintenance FROM incidents
         WHERE started_at < ?2 AND (ended_at IS NULL OR ended_at > ?1) ORDER BY started_at",
    )?;
    let incidents = stmt
        .query_map(params![from, to], |r| {
            Ok(IncidentSpan {
                target: r.get(0)?,
                alertname: r.get(1)?,
                started_at: r.get(2)?,
                ended_at: r.get(3)?,
                maintenance: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(History { checks, incidents })
}

/// [`read_history`] with the database's error type.
pub fn read_history_of(conn: &Connection, from: i64, to: i64) -> Result<History, StoreError> {
    read_history(conn, from, to).map_err(|source| StoreError::Sqlite {
        path: conn.path().map(Into::into).unwrap_or_default(),
        source,
    })
}

/// Opens the database under `dir` for reading only, beside a running agent (WAL lets a
/// reader and the agent's writer work at once).
pub fn open_read_only(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(FILE);
    let sqlite = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    if !path.is_file() {
        return Err(StoreError::Directory {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no database here: is --storage.path the agent's?",
            ),
        });
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    let supported = super::schema::VERSION;
    if version < supported {
        return Err(StoreError::OlderSchema {
            path,
            found: version,
            supported,
        });
    }
    if version > supported {
        return Err(StoreError::NewerSchema {
            path,
            found: version,
            supported,
        });
    }
    Ok(conn)
}

impl Store {
    /// [`read_history`] on the reading connection.
    pub async fn history(&self, from: i64, to: i64) -> Result<History, StoreError> {
        self.read(move |conn| read_history(conn, from, to)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Write;

    fn delta(place: &Arc<CheckPlace>, hour: i64, failed: bool, latency: f64) -> HourDelta {
        let mut stats = HourStats::default();
        stats.round(60_000, failed, false, Some(latency));
        HourDelta {
            place: Arc::clone(place),
            hour,
            stats,
        }
    }

    #[test]
    fn an_unchanged_place_is_looked_up_not_rewritten() {
        let mut conn = Connection::open_in_memory().expect("database");
        super::super::schema::migrate(&mut conn)
            .expect("schema")
            .expect("version");
        let place = Arc::new(CheckPlace {
            check_key: "gw/icmp".into(),
            target: "gw".into(),
            kind: "icmp".into(),
            areas: vec![("15".into(), "Lào Cai".into())],
            ..CheckPlace::default()
        });
        // Rows each batch changes: the place (when written) and the hour.
        let changed = |deltas: &[HourDelta]| {
            let before = conn.total_changes();
            add(&conn, deltas).expect("add");
            conn.total_changes() - before
        };
        assert_eq!(
            changed(&[delta(&place, 3600, false, 0.01)]),
            2,
            "first: both"
        );
        assert_eq!(
            changed(&[delta(&place, 3600, true, 0.02)]),
            1,
            "same place: the hour"
        );
        let renamed = Arc::new(CheckPlace {
            target_name: Some("Cổng tỉnh".into()),
            ..(*place).clone()
        });
        assert_eq!(
            changed(&[delta(&renamed, 3600, false, 0.01)]),
            2,
            "renamed: both"
        );
        let (rounds, name): (i64, Option<String>) = conn
            .query_row(
                "SELECT h.rounds, c.target_name FROM hourly h JOIN report_checks c ON c.id = h.check_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("one row");
        assert_eq!((rounds, name.as_deref()), (3, Some("Cổng tỉnh")));
    }

    #[tokio::test]
    async fn deltas_add_up_per_hour_and_old_hours_are_pruned() {
        let store = Store::in_memory().await.expect("store");
        let place = Arc::new(CheckPlace {
            check_key: "gw/icmp".into(),
            target: "gw".into(),
            kind: "icmp".into(),
            areas: vec![("15".into(), "Lào Cai".into())],
            ..CheckPlace::default()
        });
        let writes = |deltas| vec![Arc::new(vec![Write::Hourly(deltas)])];
        store
            .commit(writes(vec![
                delta(&place, 3600, false, 0.01),
                delta(&place, 7200, true, 0.02),
            ]))
            .await
            .expect("commit");
        store
            .commit(writes(vec![delta(&place, 3600, true, 0.03)]))
            .await
            .expect("commit");
        let history = store.history(0, 3_600_000 * 3).await.expect("read");
        let (read, sum) = &history.checks[0];
        assert_eq!(read, &*place);
        assert_eq!((sum.rounds, sum.failures, sum.down_ms), (3, 2, 120_000));
        assert_eq!(sum.sketch.count(), 3);
        // The place as last written: a reload that gives the target an owner moves the
        // check's row, hours and all.
        let owned = Arc::new(CheckPlace {
            owner: Some("vnpt".into()),
            ..(*place).clone()
        });
        store
            .commit(writes(vec![delta(&owned, 7200, false, 0.01)]))
            .await
            .expect("commit");
        let history = store.history(0, 3_600_000 * 3).await.expect("read");
        assert_eq!(history.checks.len(), 1);
        let (read, sum) = &history.checks[0];
        assert_eq!(read, &*owned);
        assert_eq!((sum.rounds, sum.failures), (4, 2));
        // Only the first hour.
        let first = store.history(3_600_000, 7_200_000).await.expect("read");
        assert_eq!(first.checks[0].1.rounds, 2);
        store
            .commit(vec![Arc::new(vec![Write::PruneHourly { before: 7200 }])])
            .await
            .expect("prune");
        let left = store.history(0, 3_600_000 * 3).await.expect("read");
        assert_eq!(left.checks[0].1.rounds, 2);
        store
            .commit(vec![Arc::new(vec![Write::PruneHourly { before: 10_800 }])])
            .await
            .expect("prune");
        assert!(store
            .history(0, 3_600_000 * 3)
            .await
            .expect("read")
            .checks
            .is_empty());
    }
}
