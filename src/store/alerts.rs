//! Alerts, incidents and maintenance periods. A transition and the outbox rows it produces
//! are written by the same commit, so after `kill -9` the database holds both or neither: a
//! restart resends what was queued and never queues a transition twice.

use rusqlite::{params, Connection, OptionalExtension};

use super::outbox::enqueue;
use super::{Store, StoreError};
use crate::model::record::{IncidentUpdate, OpenAlert};
use crate::model::Write;

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
    pub id: String,
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

/// A maintenance window that was on from `started_at` to `ended_at` (open while on).
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenancePeriod {
    pub window: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

pub(super) fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Fire(f) => {
            conn.execute(
                "INSERT INTO incidents (uid, alert_key, target, alertname, severity, area, started_at, flapping)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![f.incident, f.key, f.target, f.alertname.as_str(), f.severity.as_str(), f.area, f.started_at, f.flapping],
            )?;
            let row = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO alerts (key, incident, incident_uid, state, notified, flapping, started_at, resolved_at, labels, annotations)
                 VALUES (?1, ?2, ?3, 'firing', 0, ?4, ?5, NULL, ?6, '{}')
                 ON CONFLICT (key) DO UPDATE SET incident = excluded.incident,
                   incident_uid = excluded.incident_uid, state = 'firing', notified = 0,
                   flapping = excluded.flapping, started_at = excluded.started_at,
                   resolved_at = NULL, labels = excluded.labels, annotations = excluded.annotations",
                params![f.key, row, f.incident, f.flapping, f.started_at, f.labels],
            )?;
        }
        Write::Notify {
            key,
            annotations,
            update,
            queued,
            at,
        } => {
            let incident: Option<i64> = conn
                .query_row(
                    "UPDATE alerts SET notified = 1, annotations = ?2, flapping = ?3 WHERE key = ?1 RETURNING incident",
                    params![key, annotations, update.flapping],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = incident {
                conn.execute(
                    "UPDATE incidents SET notified = 1 WHERE id = ?1",
                    [incident],
                )?;
                update_incident(conn, incident, update)?;
            }
            // The message goes out even if its alert's row is missing.
            enqueue(conn, queued, *at)?;
        }
        Write::Update {
            key,
            annotations,
            update,
        } => {
            let incident: Option<i64> = conn
                .query_row(
                    "UPDATE alerts SET annotations = ?2, flapping = ?3 WHERE key = ?1 RETURNING incident",
                    params![key, annotations, update.flapping],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = incident {
                update_incident(conn, incident, update)?;
            }
        }
        Write::Flapping {
            key,
            annotations,
            queued,
            at,
        } => {
            conn.execute(
                "UPDATE alerts SET annotations = ?2, flapping = 1 WHERE key = ?1",
                params![key, annotations],
            )?;
            conn.execute(
                "UPDATE incidents SET flapping = 1 WHERE id = (SELECT incident FROM alerts WHERE key = ?1)",
                [key],
            )?;
            enqueue(conn, queued, *at)?;
        }
        Write::Resolve {
            key,
            resolved_at,
            annotations,
            queued,
        } => {
            let incident: Option<i64> = conn
                .query_row(
                    "UPDATE alerts SET state = 'resolved', resolved_at = ?2, annotations = ?3
                     WHERE key = ?1 AND state = 'firing' RETURNING incident",
                    params![key, resolved_at, annotations],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = incident {
                conn.execute(
                    "UPDATE incidents SET ended_at = ?2 WHERE id = ?1",
                    params![incident, resolved_at],
                )?;
            }
            enqueue(conn, queued, *resolved_at)?;
        }
        Write::MaintenanceStarted { window, at } => {
            conn.execute(
                "INSERT OR IGNORE INTO maintenance_periods (window_name, started_at) VALUES (?1, ?2)",
                params![window, at],
            )?;
        }
        Write::MaintenanceEnded { window, at } => {
            conn.execute(
                "UPDATE maintenance_periods SET ended_at = ?2 WHERE window_name = ?1 AND ended_at IS NULL",
                params![window, at],
            )?;
        }
        Write::Prune { before } => {
            conn.execute("DELETE FROM incidents WHERE ended_at < ?1", [before])?;
            conn.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?1",
                [before],
            )?;
            conn.execute("DELETE FROM outbox WHERE done_at < ?1", [before])?;
            conn.execute(
                "DELETE FROM maintenance_periods WHERE ended_at < ?1",
                [before],
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn update_incident(conn: &Connection, incident: i64, u: &IncidentUpdate) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE incidents SET root_cause = ?2, maintenance = COALESCE(?3, maintenance), affected = ?4,
           affected_areas = ?5, flapping = MAX(flapping, ?6) WHERE id = ?1",
        params![incident, u.root_cause, u.maintenance, u.affected, u.affected_areas, u.flapping],
    )
    .map(|_| ())
}

impl Store {
    pub async fn open_alerts(&self) -> Result<Vec<OpenAlert>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT key, incident_uid, notified, flapping, started_at FROM alerts
                 WHERE state = 'firing' ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OpenAlert {
                    key: r.get(0)?,
                    incident: r.get(1)?,
                    notified: r.get(2)?,
                    flapping: r.get(3)?,
                    started_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Notified alerts that are firing, or resolved at or after `resolved_since`.
    pub async fn am_alerts(&self, resolved_since: i64) -> Result<Vec<AmAlert>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
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
        })
        .await
    }

    /// Incidents that started at or after `since`, newest first.
    pub async fn incidents(&self, since: i64, limit: u32) -> Result<Vec<IncidentRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT uid, target, alertname, severity, area, started_at, ended_at, root_cause, affected,
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
        })
        .await
    }

    /// Maintenance periods, oldest first, for reports that leave maintenance out.
    pub async fn maintenance_periods(&self) -> Result<Vec<MaintenancePeriod>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT window_name, started_at, ended_at FROM maintenance_periods ORDER BY started_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(MaintenancePeriod {
                    window: r.get(0)?,
                    started_at: r.get(1)?,
                    ended_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::record::{Firing, Queued};
    use crate::model::{AlertName, Severity};

    fn fire(key: &str, incident: &str, at: i64) -> Write {
        Write::Fire(Firing {
            key: key.into(),
            incident: incident.into(),
            target: "gw".into(),
            alertname: AlertName::TargetDown,
            severity: Severity::Critical,
            area: "15".into(),
            started_at: at,
            flapping: false,
            labels: r#"{"alertname":"IocwatchTargetDown"}"#.into(),
        })
    }

    fn resolve(key: &str, at: i64, queued: Vec<Queued>) -> Write {
        Write::Resolve {
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

    async fn commit(store: &Store, writes: Vec<Write>) {
        store.commit(vec![Arc::new(writes)]).await.expect("commit");
    }

    #[tokio::test]
    async fn an_alert_fires_notifies_and_resolves_with_its_outbox_rows() {
        let store = Store::in_memory().await.expect("db");
        commit(&store, vec![fire("gw/icmp/down", "a1-1", 1_000)]).await;
        assert_eq!(
            store.open_alerts().await.expect("open"),
            [OpenAlert {
                key: "gw/icmp/down".into(),
                incident: "a1-1".into(),
                notified: false,
                flapping: false,
                started_at: 1_000
            }]
        );
        assert!(
            store.am_alerts(0).await.expect("am").is_empty(),
            "not notified yet"
        );
        let update = IncidentUpdate {
            affected: 3,
            affected_areas: r#"["Xã Bảo Yên"]"#.into(),
            ..Default::default()
        };
        commit(
            &store,
            vec![Write::Notify {
                key: "gw/icmp/down".into(),
                annotations: "{}".into(),
                update,
                queued: vec![queued("a1-1-firing")],
                at: 2_000,
            }],
        )
        .await;
        assert_eq!(store.am_alerts(0).await.expect("am").len(), 1);
        assert_eq!(store.pending("ops").await.expect("pending"), 1);
        commit(
            &store,
            vec![resolve(
                "gw/icmp/down",
                5_000,
                vec![queued("a1-1-resolved")],
            )],
        )
        .await;
        assert!(store.open_alerts().await.expect("open").is_empty());
        let am = store.am_alerts(4_000).await.expect("am");
        assert_eq!(
            am[0].resolved_at,
            Some(5_000),
            "resolved alerts are still sent"
        );
        assert!(store.am_alerts(6_000).await.expect("am").is_empty());
        let incidents = store.incidents(0, 10).await.expect("incidents");
        assert_eq!(incidents[0].id, "a1-1");
        assert_eq!(incidents[0].ended_at, Some(5_000));
        assert_eq!(incidents[0].affected, 3);
        assert_eq!(store.pending("ops").await.expect("pending"), 2);
        // Resolving twice queues nothing new: the event id is the same.
        commit(
            &store,
            vec![resolve(
                "gw/icmp/down",
                6_000,
                vec![queued("a1-1-resolved")],
            )],
        )
        .await;
        assert_eq!(store.pending("ops").await.expect("pending"), 2);
    }

    #[tokio::test]
    async fn a_notification_whose_alert_row_is_missing_still_goes_out() {
        let store = Store::in_memory().await.expect("db");
        commit(
            &store,
            vec![Write::Notify {
                key: "gone".into(),
                annotations: "{}".into(),
                update: IncidentUpdate::default(),
                queued: vec![queued("x-1-firing")],
                at: 1,
            }],
        )
        .await;
        assert_eq!(store.pending("ops").await.expect("pending"), 1);
    }

    #[tokio::test]
    async fn pruning_keeps_what_is_open() {
        let store = Store::in_memory().await.expect("db");
        commit(
            &store,
            vec![
                fire("a", "i-1", 1_000),
                fire("b", "i-2", 1_000),
                resolve("a", 2_000, Vec::new()),
                Write::MaintenanceStarted {
                    window: "w".into(),
                    at: 1_000,
                },
                Write::MaintenanceEnded {
                    window: "w".into(),
                    at: 1_500,
                },
                Write::Prune { before: 3_000 },
            ],
        )
        .await;
        let left = store.incidents(0, 10).await.expect("incidents");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].ended_at, None);
        assert!(store
            .maintenance_periods()
            .await
            .expect("periods")
            .is_empty());
    }
}
