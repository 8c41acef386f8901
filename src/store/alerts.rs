//! Alerts and incidents. Every transition is one transaction together with the outbox rows
//! it produces, so after `kill -9` the database holds either both or neither: a restart
//! resends what was queued and never queues a transition twice.

use rusqlite::{params, OptionalExtension, Transaction};

use super::outbox::{enqueue, Queued};
use super::Store;

/// One write of the alert engine. The engine collects a second's worth and commits them in
/// one transaction ([`Store::apply`]): a province-wide outage is one commit, not thousands.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Opens incident `incident` and records the alert as firing, not yet notified.
    Fire(Firing),
    /// The alert is to be sent: marked notified, its messages queued.
    Notify {
        key: String,
        annotations: String,
        update: IncidentUpdate,
        queued: Vec<Queued>,
        now: i64,
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
        now: i64,
    },
    /// Resolves the alert, closes its incident, queues the resolved messages.
    Resolve {
        key: String,
        resolved_at: i64,
        annotations: String,
        queued: Vec<Queued>,
    },
}

/// A new firing alert and the incident it opens.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub key: String,
    /// Chosen by the engine (the next of [`Store::next_incident`]), so that the alert's
    /// messages can name it before the batch is written.
    pub incident: i64,
    pub target: String,
    pub alertname: &'static str,
    pub severity: &'static str,
    pub area: String,
    pub started_at: i64,
    pub flapping: bool,
    pub labels: String,
}

/// An alert still open in the database, for the engine to pick up after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub key: String,
    pub incident: i64,
    pub notified: bool,
    pub flapping: bool,
    pub started_at: i64,
}

/// What Alertmanager is sent: notified alerts, firing or recently resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AmAlert {
    pub labels: String,
    pub annotations: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub target: String,
    pub alertname: String,
    pub severity: String,
    pub area: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub root_cause: Option<String>,
    pub affected: i64,
    pub affected_areas: String,
    pub notified: bool,
    pub maintenance: Option<String>,
    pub flapping: bool,
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

impl Store {
    pub(super) fn transaction<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// The id the next incident gets. AUTOINCREMENT's sequence never goes back, even after
    /// old incidents are pruned, so event ids built from it stay unique.
    pub fn next_incident(&self) -> rusqlite::Result<i64> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'incidents'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) + 1)
    }

    /// Writes a batch of the engine's operations in one transaction: all or nothing.
    pub fn apply(&self, ops: &[Op]) -> rusqlite::Result<()> {
        self.transaction(|tx| ops.iter().try_for_each(|op| apply(tx, op)))
    }

    pub fn open_alerts(&self) -> rusqlite::Result<Vec<AlertRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key, incident, notified, flapping, started_at FROM alerts WHERE state = 'firing' ORDER BY key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AlertRow {
                key: r.get(0)?,
                incident: r.get(1)?,
                notified: r.get(2)?,
                flapping: r.get(3)?,
                started_at: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Notified alerts that are firing, or resolved at or after `resolved_since`.
    pub fn am_alerts(&self, resolved_since: i64) -> rusqlite::Result<Vec<AmAlert>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT labels, annotations, started_at, resolved_at FROM alerts
             WHERE notified = 1 AND (state = 'firing' OR resolved_at >= ?1) ORDER BY key",
        )?;
        let rows = stmt.query_map([resolved_since], |r| {
            Ok(AmAlert {
                labels: r.get(0)?,
                annotations: r.get(1)?,
                started_at: r.get(2)?,
                resolved_at: r.get(3)?,
            })
        })?;
        rows.collect()
    }

    /// Incidents that started at or after `since`, newest first.
    pub fn incidents(&self, since: i64, limit: u32) -> rusqlite::Result<Vec<IncidentRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, target, alertname, severity, area, started_at, ended_at, root_cause, affected,
                    affected_areas, notified, maintenance, flapping
             FROM incidents WHERE started_at >= ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit], |r| {
            Ok(IncidentRow {
                id: r.get(0)?,
                target: r.get(1)?,
                alertname: r.get(2)?,
                severity: r.get(3)?,
                area: r.get(4)?,
                started_at: r.get(5)?,
                ended_at: r.get(6)?,
                root_cause: r.get(7)?,
                affected: r.get(8)?,
                affected_areas: r.get(9)?,
                notified: r.get(10)?,
                maintenance: r.get(11)?,
                flapping: r.get(12)?,
            })
        })?;
        rows.collect()
    }

    /// A maintenance window began (`ended_at` NULL) or ended.
    pub fn maintenance_started(&self, window: &str, at: i64) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO maintenance_periods (window_name, started_at) VALUES (?1, ?2)",
                params![window, at],
            )
            .map(|_| ())
    }

    pub fn maintenance_ended(&self, window: &str, at: i64) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE maintenance_periods SET ended_at = ?2 WHERE window_name = ?1 AND ended_at IS NULL",
                params![window, at],
            )
            .map(|_| ())
    }

    /// Periods as (window, start, end), for reports that leave maintenance out.
    pub fn maintenance_periods(&self) -> rusqlite::Result<Vec<(String, i64, Option<i64>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT window_name, started_at, ended_at FROM maintenance_periods ORDER BY started_at",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Deletes history that ended before `before`: incidents, resolved alerts, delivered or
    /// abandoned outbox rows, maintenance periods. Open ones are kept whatever their age.
    pub fn prune(&self, before: i64) -> rusqlite::Result<usize> {
        self.transaction(|tx| {
            let mut n = tx.execute("DELETE FROM incidents WHERE ended_at < ?1", [before])?;
            n += tx.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?1",
                [before],
            )?;
            n += tx.execute("DELETE FROM outbox WHERE done_at < ?1", [before])?;
            n += tx.execute(
                "DELETE FROM maintenance_periods WHERE ended_at < ?1",
                [before],
            )?;
            Ok(n)
        })
    }

    pub fn kv(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    pub fn set_kv(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
    }
}

fn apply(tx: &Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::Fire(f) => {
            tx.execute(
                "INSERT INTO incidents (id, alert_key, target, alertname, severity, area, started_at, flapping)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![f.incident, f.key, f.target, f.alertname, f.severity, f.area, f.started_at, f.flapping],
            )?;
            tx.execute(
                "INSERT INTO alerts (key, incident, state, notified, flapping, started_at, resolved_at, labels, annotations)
                 VALUES (?1, ?2, 'firing', 0, ?3, ?4, NULL, ?5, '{}')
                 ON CONFLICT (key) DO UPDATE SET incident = excluded.incident, state = 'firing',
                   notified = 0, flapping = excluded.flapping, started_at = excluded.started_at,
                   resolved_at = NULL, labels = excluded.labels, annotations = excluded.annotations",
                params![f.key, f.incident, f.flapping, f.started_at, f.labels],
            )?;
        }
        Op::Notify {
            key,
            annotations,
            update,
            queued,
            now,
        } => {
            let incident: i64 = tx.query_row(
                "UPDATE alerts SET notified = 1, annotations = ?2, flapping = ?3 WHERE key = ?1 RETURNING incident",
                params![key, annotations, update.flapping],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE incidents SET notified = 1 WHERE id = ?1",
                [incident],
            )?;
            update_incident(tx, incident, update)?;
            enqueue(tx, queued, *now)?;
        }
        Op::Update {
            key,
            annotations,
            update,
        } => {
            let incident: Option<i64> = tx
                .query_row(
                    "UPDATE alerts SET annotations = ?2, flapping = ?3 WHERE key = ?1 RETURNING incident",
                    params![key, annotations, update.flapping],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = incident {
                update_incident(tx, incident, update)?;
            }
        }
        Op::Flapping {
            key,
            annotations,
            queued,
            now,
        } => {
            tx.execute(
                "UPDATE alerts SET annotations = ?2, flapping = 1 WHERE key = ?1",
                params![key, annotations],
            )?;
            tx.execute(
                "UPDATE incidents SET flapping = 1 WHERE id = (SELECT incident FROM alerts WHERE key = ?1)",
                [key],
            )?;
            enqueue(tx, queued, *now)?;
        }
        Op::Resolve {
            key,
            resolved_at,
            annotations,
            queued,
        } => {
            let incident: Option<i64> = tx
                .query_row(
                    "UPDATE alerts SET state = 'resolved', resolved_at = ?2, annotations = ?3
                     WHERE key = ?1 AND state = 'firing' RETURNING incident",
                    params![key, resolved_at, annotations],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = incident {
                tx.execute(
                    "UPDATE incidents SET ended_at = ?2 WHERE id = ?1",
                    params![incident, resolved_at],
                )?;
            }
            enqueue(tx, queued, *resolved_at)?;
        }
    }
    Ok(())
}

fn update_incident(
    tx: &Transaction<'_>,
    incident: i64,
    u: &IncidentUpdate,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE incidents SET root_cause = ?2, maintenance = COALESCE(?3, maintenance), affected = ?4,
           affected_areas = ?5, flapping = MAX(flapping, ?6) WHERE id = ?1",
        params![incident, u.root_cause, u.maintenance, u.affected, u.affected_areas, u.flapping],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn fire(store: &Store, key: &str, at: i64) -> i64 {
        let incident = store.next_incident().expect("id");
        store
            .apply(&[Op::Fire(Firing {
                key: key.into(),
                incident,
                target: "gw".into(),
                alertname: "IocwatchTargetDown",
                severity: "critical",
                area: "15".into(),
                started_at: at,
                flapping: false,
                labels: r#"{"alertname":"IocwatchTargetDown"}"#.into(),
            })])
            .expect("fire");
        incident
    }

    fn resolve(key: &str, at: i64, queued: Vec<Queued>) -> Op {
        Op::Resolve {
            key: key.into(),
            resolved_at: at,
            annotations: "{}".into(),
            queued,
        }
    }

    fn queued(event: &str) -> Queued {
        Queued {
            notifier: "ops".into(),
            event_id: event.into(),
            payload: "{}".into(),
            max_queue: 100,
        }
    }

    #[test]
    fn an_alert_lives_fires_notifies_and_resolves_with_its_outbox_rows() {
        let store = Store::in_memory().expect("db");
        let incident = fire(&store, "gw/icmp/down", 1_000);
        assert_eq!(
            store.open_alerts().expect("open"),
            [AlertRow {
                key: "gw/icmp/down".into(),
                incident,
                notified: false,
                flapping: false,
                started_at: 1_000
            }]
        );
        assert!(
            store.am_alerts(0).expect("am").is_empty(),
            "not notified yet"
        );
        let update = IncidentUpdate {
            affected: 3,
            affected_areas: r#"["Xã Bảo Yên"]"#.into(),
            ..Default::default()
        };
        store
            .apply(&[Op::Notify {
                key: "gw/icmp/down".into(),
                annotations: "{}".into(),
                update,
                queued: vec![queued("1-firing")],
                now: 2_000,
            }])
            .expect("notify");
        assert_eq!(store.am_alerts(0).expect("am").len(), 1);
        assert_eq!(store.pending("ops").expect("pending"), 1);
        store
            .apply(&[resolve("gw/icmp/down", 5_000, vec![queued("1-resolved")])])
            .expect("resolve");
        assert!(store.open_alerts().expect("open").is_empty());
        let am = store.am_alerts(4_000).expect("am");
        assert_eq!(
            am[0].resolved_at,
            Some(5_000),
            "resolved alerts are still sent"
        );
        assert!(store.am_alerts(6_000).expect("am").is_empty());
        let incidents = store.incidents(0, 10).expect("incidents");
        assert_eq!(incidents[0].ended_at, Some(5_000));
        assert_eq!(incidents[0].affected, 3);
        assert_eq!(store.pending("ops").expect("pending"), 2);
        // Resolving twice queues nothing new: the event id is the same.
        store
            .apply(&[resolve("gw/icmp/down", 6_000, vec![queued("1-resolved")])])
            .expect("again");
        assert_eq!(store.pending("ops").expect("pending"), 2);
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_incident_ids_never_go_back() {
        let store = Store::in_memory().expect("db");
        let first = fire(&store, "a", 1_000);
        // The second op fails (no such alert to notify): the first is rolled back too.
        let failed = store.apply(&[
            resolve("a", 2_000, vec![queued("1-resolved")]),
            Op::Notify {
                key: "missing".into(),
                annotations: "{}".into(),
                update: IncidentUpdate::default(),
                queued: Vec::new(),
                now: 2_000,
            },
        ]);
        assert!(failed.is_err());
        assert_eq!(store.open_alerts().expect("open").len(), 1);
        assert_eq!(store.pending("ops").expect("pending"), 0);
        store
            .apply(&[resolve("a", 2_000, Vec::new())])
            .expect("resolve");
        store.prune(3_000).expect("prune");
        assert!(store.incidents(0, 10).expect("incidents").is_empty());
        assert_eq!(store.next_incident().expect("id"), first + 1);
    }

    #[test]
    fn pruning_keeps_what_is_open() {
        let store = Store::in_memory().expect("db");
        fire(&store, "a", 1_000);
        fire(&store, "b", 1_000);
        store
            .apply(&[resolve("a", 2_000, Vec::new())])
            .expect("resolve");
        store.maintenance_started("w", 1_000).expect("m");
        store.maintenance_ended("w", 1_500).expect("m");
        assert!(store.prune(3_000).expect("prune") >= 3);
        let left = store.incidents(0, 10).expect("incidents");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].ended_at, None);
        assert!(store.maintenance_periods().expect("m").is_empty());
    }
}
