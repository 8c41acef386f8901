//! Rollups: targets per state for every area (its whole subtree) and every shared system,
//! and the info series that name areas and systems. Recomputed from the reachability
//! snapshot when a state changed; series of areas and systems that left the config go.

use std::collections::HashSet;

use prometheus::{IntGaugeVec, Registry};

use crate::catalog::Catalog;
use crate::metrics::RollupMetrics;
use crate::reach::TargetState;
use crate::status::Counted;

pub struct Rollups {
    metrics: RollupMetrics,
    area_info: HashSet<Vec<String>>,
    system_info: HashSet<Vec<String>>,
    /// (area or system, name, state) of the `*_targets` series set now.
    series: HashSet<(bool, String, &'static str)>,
}

impl Rollups {
    pub fn register(registry: &Registry) -> prometheus::Result<Rollups> {
        Ok(Rollups {
            metrics: RollupMetrics::register(registry)?,
            area_info: HashSet::new(),
            system_info: HashSet::new(),
            series: HashSet::new(),
        })
    }

    /// Counts the owned targets per state (shards' rollups sum to the province's), sets the
    /// rollup series, and returns the counts.
    pub fn count(&mut self, catalog: &Catalog, states: &[TargetState]) -> Counted {
        let mut counted = Counted::default();
        for (i, target) in catalog.owned() {
            let state = states[i];
            for area in catalog.areas.ancestors(target.area) {
                counted.areas.entry(area).or_default().add(state);
            }
            if let Some(system) = target.system {
                counted.systems.entry(system).or_default().add(state);
            }
        }
        let mut series = HashSet::new();
        let mut set =
            |family: &IntGaugeVec, is_area: bool, name: &str, counts: crate::status::Counts| {
                for state in TargetState::ALL {
                    family
                        .with_label_values(&[name, state.as_str()])
                        .set(i64::from(counts.of(state)));
                    series.insert((is_area, name.to_owned(), state.as_str()));
                }
            };
        for (id, area) in catalog.areas.iter() {
            let counts = counted.areas.get(&id).copied().unwrap_or_default();
            set(&self.metrics.area_targets, true, &area.code, counts);
        }
        for (id, system) in catalog.systems.iter().enumerate() {
            let counts = counted.systems.get(&id).copied().unwrap_or_default();
            set(&self.metrics.system_targets, false, &system.id, counts);
        }
        for (is_area, name, state) in self.series.difference(&series) {
            let family = if *is_area {
                &self.metrics.area_targets
            } else {
                &self.metrics.system_targets
            };
            let _ = family.remove_label_values(&[name.as_str(), state]);
        }
        self.series = series;
        counted
    }

    /// The info series of areas and systems, after a new catalog.
    pub fn info(&mut self, catalog: &Catalog) {
        let areas = &catalog.areas;
        let mut info = HashSet::new();
        for (id, area) in areas.iter() {
            let (lat, lon) = area
                .geo
                .map(|(lat, lon)| (lat.to_string(), lon.to_string()))
                .unwrap_or_default();
            info.insert(vec![
                area.code.clone(),
                area.parent
                    .map(|p| areas.get(p).code.clone())
                    .unwrap_or_default(),
                area.name.clone(),
                area.kind.clone().unwrap_or_default(),
                area.level.clone().unwrap_or_default(),
                areas.path(id),
                lat,
                lon,
            ]);
        }
        replace_series(&self.metrics.area_info, &mut self.area_info, info);
        let systems = catalog
            .systems
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.name.clone(),
                    s.owner.clone().unwrap_or_default(),
                ]
            })
            .collect();
        replace_series(&self.metrics.system_info, &mut self.system_info, systems);
    }
}

/// Sets `new` series to 1 and removes those of `old` that are gone.
fn replace_series(family: &IntGaugeVec, old: &mut HashSet<Vec<String>>, new: HashSet<Vec<String>>) {
    for gone in old.difference(&new) {
        let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
        let _ = family.remove_label_values(&labels);
    }
    for series in &new {
        let labels: Vec<&str> = series.iter().map(String::as_str).collect();
        family.with_label_values(&labels).set(1);
    }
    *old = new;
}
