//! The validated runtime model: areas, systems, targets and their checks. Built by
//! the config loader, immutable, shared as `Arc<Catalog>` and replaced whole on reload.
//! No serde type reaches past this point.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod maintenance;

use crate::model::{Condition, Language};
use crate::probe::{Kind, Probe};
use maintenance::Window;

/// Labels every per-check series has, before the area levels and the targets' own labels.
pub const FIXED_LABELS: [&str; 6] = ["target", "check", "kind", "area", "area_path", "system"];

/// Label names iocwatch sets itself on some series; config labels may not reuse them.
pub const RESERVED_LABELS: [&str; 12] = [
    "vantage",
    "target",
    "check",
    "kind",
    "area",
    "area_path",
    "system",
    "reason",
    "phase",
    "stat",
    "state",
    "job",
];

#[derive(Debug)]
pub struct Catalog {
    pub settings: Settings,
    pub areas: AreaTree,
    pub systems: Vec<System>,
    pub targets: Vec<Target>,
    pub schema: LabelSchema,
    /// Every file read to build this catalog.
    pub sources: Vec<std::path::PathBuf>,
    /// What a change on disk may alter: the directories to watch and the files that count.
    pub watched: Watched,
    /// Alerting settings, notifiers and maintenance windows.
    pub alerting: Arc<Alerting>,
    /// Looked up for every result, twice: foldhash, not SipHash (the keys are our own ids).
    by_key: KeyMap<(usize, usize)>,
    /// Checks are numbered in catalog order: where each target's first check falls.
    first_check: Vec<usize>,
    /// `depends_on` resolved to target indices once, for the rollups and root causes that
    /// walk the dependency graph every second.
    upstreams: Vec<Vec<usize>>,
}

/// The directories a reload watches, and which changes in them count: a file the config read,
/// or a new file that an `include:` or file_sd glob matches. An editor's swap file or an
/// unrelated `*.yaml` written beside the config reloads nothing.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub dirs: Vec<std::path::PathBuf>,
    pub files: Vec<std::path::PathBuf>,
    pub patterns: Vec<glob::Pattern>,
}

impl Watched {
    pub fn concerns(&self, path: &std::path::Path) -> bool {
        self.files.iter().any(|f| f == path) || self.patterns.iter().any(|p| p.matches_path(path))
    }

    /// A directory made where a watched one will be (`conf.d/` created after start-up).
    pub fn awaits(&self, dir: &std::path::Path) -> bool {
        self.dirs.iter().any(|d| d.starts_with(dir))
    }
}

impl Catalog {
    #[allow(clippy::too_many_arguments)] // one per field, called from the loader and shards
    pub(crate) fn new(
        settings: Settings,
        areas: AreaTree,
        systems: Vec<System>,
        targets: Vec<Target>,
        schema: LabelSchema,
        sources: Vec<std::path::PathBuf>,
        watched: Watched,
        alerting: Arc<Alerting>,
    ) -> Catalog {
        let by_key = targets
            .iter()
            .enumerate()
            .flat_map(|(t, target)| {
                target
                    .checks
                    .iter()
                    .enumerate()
                    .map(move |(c, check)| (check.key.clone(), (t, c)))
            })
            .collect();
        let first_check = targets
            .iter()
            .scan(0, |next, target| {
                let first = *next;
                *next += target.checks.len();
                Some(first)
            })
            .collect();
        let by_id: HashMap<&str, usize> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (&*t.id, i))
            .collect();
        let upstreams = targets
            .iter()
            .map(|t| {
                t.depends_on
                    .iter()
                    .filter_map(|d| by_id.get(&**d).copied())
                    .collect()
            })
            .collect();
        Catalog {
            alerting,
            upstreams,
            settings,
            areas,
            systems,
            targets,
            schema,
            sources,
            watched,
            by_key,
            first_check,
        }
    }

    /// How many checks the catalog holds.
    pub fn check_count(&self) -> usize {
        self.first_check.last().map_or(0, |first| {
            first + self.targets.last().map_or(0, |t| t.checks.len())
        })
    }

    /// The number of check `c` of target `t`, in catalog order (0 ..
    /// [`Catalog::check_count`]).
    pub fn check_number(&self, t: usize, c: usize) -> usize {
        self.first_check[t] + c
    }

    /// The target and check index of check number `n`.
    pub fn check_at(&self, n: usize) -> Option<(usize, usize)> {
        let t = self
            .first_check
            .partition_point(|&first| first <= n)
            .checked_sub(1)?;
        let c = n - self.first_check[t];
        (c < self.targets[t].checks.len()).then_some((t, c))
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.targets.iter().flat_map(|t| t.checks.iter())
    }

    /// Indices of the targets that target `t` depends on directly. A shard holds every
    /// upstream of the targets it owns.
    pub fn upstreams(&self, t: usize) -> &[usize] {
        &self.upstreams[t]
    }

    /// Where a check is: (target index, check index).
    pub fn position(&self, key: &CheckKey) -> Option<(usize, usize)> {
        self.by_key.get(key).copied()
    }

    /// Finds a check and its target by key.
    pub fn check(&self, key: &CheckKey) -> Option<(&Target, &Check)> {
        let &(t, c) = self.by_key.get(key)?;
        let target = &self.targets[t];
        Some((target, &target.checks[c]))
    }

    /// Keeps the targets this shard owns and, not owned, every upstream they depend on
    /// (directly or through other upstreams): a shard probes the gateways in front of its
    /// communes itself, so it tells "unreachable behind a cut gateway" from "down" without
    /// asking another shard. Gateways are few, so probing them on several shards costs little;
    /// only the owner exports and alerts on them. Areas and systems stay whole so that every
    /// shard exports the same area tree and Prometheus sums the rollups across shards.
    pub fn into_shard(self, shard: Shard) -> Catalog {
        let Catalog {
            settings,
            areas,
            systems,
            mut targets,
            schema,
            sources,
            watched,
            alerting,
            upstreams,
            ..
        } = self;
        let mut keep: Vec<bool> = targets.iter().map(|t| shard.owns(&t.id)).collect();
        let mut todo: Vec<usize> = (0..targets.len()).filter(|&i| keep[i]).collect();
        while let Some(i) = todo.pop() {
            for &u in &upstreams[i] {
                if !keep[u] {
                    keep[u] = true;
                    todo.push(u);
                }
            }
        }
        let mut kept = keep.iter();
        targets.retain(|_| kept.next().copied().unwrap_or(false));
        for target in &mut targets {
            target.owned = shard.owns(&target.id);
        }
        Catalog::new(
            settings, areas, systems, targets, schema, sources, watched, alerting,
        )
    }

    /// The targets this agent reports on (see [`Target::owned`]), with their indices.
    pub fn owned(&self) -> impl Iterator<Item = (usize, &Target)> {
        self.targets.iter().enumerate().filter(|(_, t)| t.owned)
    }
}

/// One of `count` agents sharing a config: `--shard.index K --shard.count N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard probes the target. FNV-1a of the id: unlike std's hasher it is the
    /// same in every build, so agents of different versions still split the targets the same way.
    pub fn owns(&self, target_id: &str) -> bool {
        let hash = target_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        hash % u64::from(self.count.max(1)) == u64::from(self.index)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub max_concurrency: BTreeMap<Kind, usize>,
}

/// The default port: the 9100–9999 range is taken on the Prometheus port registry,
/// so new exporters start at 10000.
pub const DEFAULT_PORT: u16 = 10090;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))],
            max_concurrency: BTreeMap::from([
                (Kind::Icmp, 2000),
                (Kind::Tcp, 1000),
                (Kind::Http, 256),
                (Kind::Dns, 256),
                (Kind::Ports, 16),
                (Kind::Tls, 128),
            ]),
        }
    }
}

/// A map by check, hashed with foldhash rather than SipHash: looked up for every result, and
/// the keys are the config's own ids, not input an attacker picks to collide.
pub type KeyMap<V> = HashMap<CheckKey, V, foldhash::fast::RandomState>;

/// Identifies a check across reloads: target id and check name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey {
    pub target: Arc<str>,
    pub check: Arc<str>,
}

#[derive(Debug)]
pub struct Target {
    pub id: Arc<str>,
    pub name: Option<String>,
    pub area: AreaId,
    pub address: Option<String>,
    pub system: Option<usize>,
    pub labels: BTreeMap<String, String>,
    pub depends_on: Vec<Arc<str>>,
    pub checks: Vec<Check>,
    /// Whether this agent reports on the target: exports its series, counts it in rollups
    /// and alerts on it. A shard also probes the upstreams of its own targets, which other
    /// shards own, so that it judges root causes itself; those are not owned.
    pub owned: bool,
}

#[derive(Debug)]
pub struct Check {
    pub key: CheckKey,
    pub kind: Kind,
    pub probe: Arc<Probe>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Hash of everything that decides how the probe runs: an unchanged fingerprint across a
    /// reload keeps the running schedule.
    pub fingerprint: u64,
    /// Values for [`LabelSchema::names`], in order.
    pub label_values: Arc<[Arc<str>]>,
    pub alerts: Arc<CheckAlerts>,
}

/// The alert conditions of one check and where its alerts go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckAlerts {
    pub conditions: Vec<Condition>,
    /// Notifier names; every notifier when `None`. Alertmanager gets every alert and routes
    /// them itself.
    pub notify: Option<Vec<Arc<str>>>,
}

/// `alerting:` of the main file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    pub language: Language,
    pub strip_diacritics: bool,
    /// The status page as the on-call engineer reaches it, for links in messages.
    pub external_url: Option<String>,
    /// How long incident history is kept.
    pub history: Duration,
    /// How long hourly aggregates (for reports) are kept.
    pub report_history: Duration,
    pub time_zone: chrono_tz::Tz,
    pub notifiers: Vec<NotifierRoute>,
    pub maintenance: Vec<Window>,
}

/// What the alert engine knows of a notifier: where to queue its messages. The notifier's
/// own settings (URLs, secrets) stay with the notifier and never enter the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierRoute {
    pub name: Arc<str>,
    /// Reads its messages from the outbox; Alertmanager is sent the active alerts instead.
    pub outbox: bool,
    /// The most undelivered messages it keeps; the oldest are dropped beyond it.
    pub max_queue: usize,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            language: Language::Vi,
            strip_diacritics: false,
            external_url: None,
            history: Duration::from_secs(90 * 86400),
            report_history: Duration::from_secs(395 * 86400),
            time_zone: crate::model::DEFAULT_TIME_ZONE,
            notifiers: Vec::new(),
            maintenance: Vec::new(),
        }
    }
}

/// The label names of per-check series for this catalog: the fixed ones (identity), then
/// one per area level in use (location). A target's own labels (owner, role, uplink …) are
/// not repeated on each of its series: they go once on `iocwatch_target_info`, joined on
/// `target` in PromQL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSchema {
    pub levels: Vec<String>,
}

impl LabelSchema {
    pub fn names(&self) -> Vec<&str> {
        FIXED_LABELS
            .iter()
            .copied()
            .chain(self.levels.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_split_targets_once_and_evenly() {
        let count = 3;
        let mut per_shard = [0u32; 3];
        for i in 0..3000 {
            let id = format!("ubnd-{i:05}");
            let owners: Vec<u32> = (0..count)
                .filter(|&k| Shard { index: k, count }.owns(&id))
                .collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            per_shard[owners[0] as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|n| (900..1100).contains(n)),
            "{per_shard:?}"
        );
        // Stable across builds: pinned values.
        assert!(Shard { index: 0, count: 1 }.owns("anything"));
        let pinned: Vec<bool> = ["dc-core", "tslcd-gw", "ubnd-02947"]
            .iter()
            .map(|id| Shard { index: 1, count: 2 }.owns(id))
            .collect();
        // Computed independently (Python) from the FNV-1a definition.
        assert_eq!(pinned, vec![false, false, true]);
    }

    /// Check numbers run through the catalog in order and lead back to their check.
    #[test]
    fn checks_are_numbered_in_catalog_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iocwatch.yaml");
        let targets = [
            "  - {id: a, area: \"15\", address: 127.0.0.1, checks: [{icmp: {}}, {tcp: {port: 1}}]}",
            "  - {id: b, area: \"15\", address: 127.0.0.2, checks: [{icmp: {}}]}",
            "  - {id: c, area: \"15\", address: 127.0.0.3, checks: [{icmp: {}}, {tcp: {port: 2}}, {tcp: {port: 3, name: other}}]}",
        ];
        let text = format!(
            "areas: [{{code: \"15\", name: Lào Cai}}]\ntargets:\n{}\n",
            targets.join("\n")
        );
        std::fs::write(&path, text).expect("write");
        let catalog = crate::config::load(&path).expect("valid config").catalog;
        assert_eq!(catalog.check_count(), 6);
        let mut expected = 0;
        for (t, target) in catalog.targets.iter().enumerate() {
            for c in 0..target.checks.len() {
                assert_eq!(catalog.check_number(t, c), expected);
                assert_eq!(catalog.check_at(expected), Some((t, c)));
                expected += 1;
            }
        }
        assert_eq!(catalog.check_at(6), None);
    }
}

pub type AreaId = usize;

#[derive(Debug, Clone)]
pub struct Area {
    pub code: String,
    pub name: String,
    pub kind: Option<String>,
    pub level: Option<String>,
    pub parent: Option<AreaId>,
    pub children: Vec<AreaId>,
    pub geo: Option<(f64, f64)>,
    pub aliases: Vec<String>,
    pub former_units: Vec<String>,
}

/// The area tree, any depth; nodes in an arena, parents before children.
#[derive(Debug, Clone, Default)]
pub struct AreaTree {
    nodes: Vec<Area>,
    by_code: HashMap<String, AreaId>,
}

impl AreaTree {
    pub(crate) fn from_nodes(nodes: Vec<Area>) -> AreaTree {
        let by_code = nodes
            .iter()
            .enumerate()
            .map(|(i, a)| (a.code.clone(), i))
            .collect();
        AreaTree { nodes, by_code }
    }

    pub fn get(&self, id: AreaId) -> &Area {
        &self.nodes[id]
    }

    pub fn find(&self, code: &str) -> Option<AreaId> {
        self.by_code.get(code).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (AreaId, &Area)> {
        self.nodes.iter().enumerate()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Areas whose name, or one of whose aliases, is `name` once tone marks, case and
    /// spacing are set aside (`Xã Xuân Hoà` finds `Xã Xuân Hòa`).
    pub fn find_by_name(&self, name: &str) -> Vec<AreaId> {
        let wanted = crate::model::fold_name(name);
        self.iter()
            .filter(|(_, a)| {
                crate::model::fold_name(&a.name) == wanted
                    || a.aliases
                        .iter()
                        .any(|alias| crate::model::fold_name(alias) == wanted)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// "unknown area …", with the code of an area that has that name, if any: areas are
    /// named by their official code.
    pub fn unknown(&self, written: &str) -> String {
        let found = self.find_by_name(written);
        let hint = match found.as_slice() {
            [] => String::new(),
            [one] => format!(
                ": areas are named by their code; {:?} is {}",
                self.get(*one).code,
                self.get(*one).name
            ),
            many => format!(
                ": areas are named by their code; that name is {}",
                many.iter()
                    .map(|&a| format!("{:?} ({})", self.get(a).code, self.path(a)))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
        format!("unknown area {written:?}{hint}")
    }

    /// The area and its ancestors, nearest first.
    pub fn ancestors(&self, id: AreaId) -> impl Iterator<Item = AreaId> + '_ {
        std::iter::successors(Some(id), |&a| self.nodes[a].parent)
    }

    /// Codes from the root down to the area, joined by `/`: `15/02947`. Lets PromQL select a
    /// subtree at any depth with `area_path=~"15/.*"`.
    pub fn path(&self, id: AreaId) -> String {
        let mut codes: Vec<&str> = self
            .ancestors(id)
            .map(|a| self.nodes[a].code.as_str())
            .collect();
        codes.reverse();
        codes.join("/")
    }
}

#[derive(Debug, Clone)]
pub struct System {
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
}
