//! Reachability: the one answer to "what is down, and why". Computed once per tick from
//! each target's own state (its last results) and the catalog's dependency graph; the
//! rollups, the alert engine's suppression and reach, `/api/v1/status`, `/api/v1/alerts`
//! and the status page all read the same [`Reach`].
//!
//! The rules (README, "Dependencies"):
//! - a target that is down, every one of whose direct upstreams (`depends_on`) is down or
//!   unreachable, is **unreachable**: the fault is probably upstream;
//! - a down target with at least one working upstream is **down**: its own fault;
//! - a target that answers but lost some of its redundant uplinks is **degraded**;
//! - the **root causes** of an unreachable target are the nearest upstreams, through
//!   unreachable ones, that are down themselves; each root cause knows the targets, areas
//!   and systems behind it.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::catalog::{AreaId, Catalog};

/// How a target is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Up,
    Degraded,
    Down,
    /// Down, and so is every upstream it `depends_on` (directly or through its upstreams):
    /// the fault is probably not here.
    Unreachable,
    Unknown,
}

impl TargetState {
    pub const ALL: [TargetState; 5] = [
        TargetState::Up,
        TargetState::Degraded,
        TargetState::Down,
        TargetState::Unreachable,
        TargetState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Up => "up",
            TargetState::Degraded => "degraded",
            TargetState::Down => "down",
            TargetState::Unreachable => "unreachable",
            TargetState::Unknown => "unknown",
        }
    }

    fn cut(self) -> bool {
        matches!(self, TargetState::Down | TargetState::Unreachable)
    }
}

/// What sits behind one root cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behind {
    /// Unreachable targets (catalog indices), in catalog order.
    pub targets: Vec<usize>,
    /// Their areas and systems, without repeats, in catalog order.
    pub areas: Vec<AreaId>,
    pub systems: Vec<usize>,
}

/// The reachability of every target at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reach {
    /// By catalog index.
    pub states: Vec<TargetState>,
    /// For each unreachable target, its root causes (catalog indices, ascending).
    pub causes: HashMap<usize, Vec<usize>>,
    /// For each degraded target with redundant uplinks, the uplinks that are cut.
    pub uplinks_down: HashMap<usize, Vec<usize>>,
    /// For each root cause, what sits behind it.
    pub behind: HashMap<usize, Behind>,
}

impl Reach {
    /// `own[i]` is target `i`'s state from its own checks only: up, degraded, down or
    /// unknown. depends_on is acyclic (the loader refuses cycles), so the memoised walk
    /// terminates.
    pub fn compute(catalog: &Catalog, own: &[TargetState]) -> Reach {
        let n = own.len();
        let mut states: Vec<Option<TargetState>> = vec![None; n];
        for i in 0..n {
            resolve(i, catalog, own, &mut states);
        }
        let states: Vec<TargetState> = states
            .into_iter()
            .map(|s| s.unwrap_or(TargetState::Unknown))
            .collect();

        let mut memo: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        let mut causes = HashMap::new();
        let mut uplinks_down = HashMap::new();
        for i in 0..n {
            match states[i] {
                TargetState::Unreachable => {
                    let roots = roots(i, catalog, &states, &mut memo);
                    causes.insert(i, roots.into_iter().collect::<Vec<_>>());
                }
                TargetState::Degraded if catalog.upstreams(i).len() > 1 => {
                    let cut: Vec<usize> = catalog
                        .upstreams(i)
                        .iter()
                        .copied()
                        .filter(|&u| states[u].cut())
                        .collect();
                    if !cut.is_empty() {
                        uplinks_down.insert(i, cut);
                    }
                }
                _ => {}
            }
        }
        let mut behind: HashMap<usize, Behind> = HashMap::new();
        let mut indices: Vec<&usize> = causes.keys().collect();
        indices.sort();
        for &target in indices {
            let t = &catalog.targets[target];
            for &root in &causes[&target] {
                let entry = behind.entry(root).or_default();
                entry.targets.push(target);
                if !entry.areas.contains(&t.area) {
                    entry.areas.push(t.area);
                }
                if let Some(s) = t.system {
                    if !entry.systems.contains(&s) {
                        entry.systems.push(s);
                    }
                }
            }
        }
        Reach {
            states,
            causes,
            uplinks_down,
            behind,
        }
    }

    pub fn state(&self, target: usize) -> TargetState {
        self.states
            .get(target)
            .copied()
            .unwrap_or(TargetState::Unknown)
    }
}

fn resolve(
    i: usize,
    catalog: &Catalog,
    own: &[TargetState],
    memo: &mut Vec<Option<TargetState>>,
) -> TargetState {
    if let Some(state) = memo[i] {
        return state;
    }
    let upstreams = catalog.upstreams(i);
    let state = match own[i] {
        TargetState::Down if !upstreams.is_empty() => {
            let all_cut = upstreams
                .iter()
                .all(|&u| resolve(u, catalog, own, memo).cut());
            if all_cut {
                TargetState::Unreachable
            } else {
                TargetState::Down
            }
        }
        // A redundant site that lost one of its uplinks runs on the other.
        TargetState::Up if upstreams.len() > 1 => {
            let some_cut = upstreams
                .iter()
                .any(|&u| resolve(u, catalog, own, memo).cut());
            if some_cut {
                TargetState::Degraded
            } else {
                TargetState::Up
            }
        }
        state => state,
    };
    memo[i] = Some(state);
    state
}

/// The nearest upstreams of `i`, through unreachable ones, that are down themselves.
fn roots(
    i: usize,
    catalog: &Catalog,
    states: &[TargetState],
    memo: &mut HashMap<usize, BTreeSet<usize>>,
) -> BTreeSet<usize> {
    if let Some(r) = memo.get(&i) {
        return r.clone();
    }
    let mut found = BTreeSet::new();
    for &u in catalog.upstreams(i) {
        match states[u] {
            TargetState::Down => {
                found.insert(u);
            }
            TargetState::Unreachable => found.extend(roots(u, catalog, states, memo)),
            _ => {}
        }
    }
    memo.insert(i, found.clone());
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetState::{Degraded, Down, Unknown, Unreachable, Up};

    /// A catalog of ICMP targets, each `(id, area, depends_on)`.
    fn catalog(targets: &[(&str, &str, &str)]) -> Catalog {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iocwatch.yaml");
        let mut text = String::from(
            "areas: [{code: \"15\", name: Lào Cai, children: [{code: a1, name: Xã A}, {code: a2, name: Xã B}]}]\ntargets:\n",
        );
        for (id, area, deps) in targets {
            text.push_str(&format!(
                "  - {{id: {id}, area: {area}, address: 127.0.0.1, depends_on: [{deps}], checks: [icmp: {{}}]}}\n"
            ));
        }
        std::fs::write(&path, text).expect("write");
        crate::config::load(&path).expect("valid config").catalog
    }

    fn index(catalog: &Catalog, id: &str) -> usize {
        catalog
            .targets
            .iter()
            .position(|t| &*t.id == id)
            .expect("target")
    }

    struct Case {
        name: &'static str,
        down: &'static [&'static str],
        states: &'static [(&'static str, TargetState)],
        causes: &'static [(&'static str, &'static [&'static str])],
        behind: &'static [(&'static str, &'static [&'static str])],
    }

    fn run(catalog: &Catalog, case: &Case) {
        let own: Vec<TargetState> = catalog
            .targets
            .iter()
            .map(|t| {
                if case.down.contains(&&*t.id) {
                    Down
                } else {
                    Up
                }
            })
            .collect();
        let reach = Reach::compute(catalog, &own);
        for (id, want) in case.states {
            assert_eq!(
                reach.state(index(catalog, id)),
                *want,
                "{}: state of {id}",
                case.name
            );
        }
        let ids = |v: &[usize]| -> Vec<String> {
            v.iter()
                .map(|&i| catalog.targets[i].id.to_string())
                .collect()
        };
        let mut got: Vec<(String, Vec<String>)> = reach
            .causes
            .iter()
            .map(|(t, c)| (catalog.targets[*t].id.to_string(), ids(c)))
            .collect();
        got.sort();
        let mut want: Vec<(String, Vec<String>)> = case
            .causes
            .iter()
            .map(|(t, c)| (t.to_string(), c.iter().map(|s| s.to_string()).collect()))
            .collect();
        want.sort();
        assert_eq!(got, want, "{}: root causes", case.name);
        for (root, targets) in case.behind {
            let behind = &reach.behind[&index(catalog, root)];
            assert_eq!(
                ids(&behind.targets),
                *targets,
                "{}: behind {root}",
                case.name
            );
        }
        assert_eq!(
            reach.behind.len(),
            case.behind.len(),
            "{}: root causes with something behind them",
            case.name
        );
    }

    #[test]
    fn a_single_gateway_cut_and_a_commune_down_on_its_own() {
        let c = catalog(&[("gw", "\"15\"", ""), ("c1", "a1", "gw"), ("c2", "a2", "gw")]);
        let cases = [
            Case {
                name: "gateway cut",
                down: &["gw", "c1", "c2"],
                states: &[("gw", Down), ("c1", Unreachable), ("c2", Unreachable)],
                causes: &[("c1", &["gw"]), ("c2", &["gw"])],
                behind: &[("gw", &["c1", "c2"])],
            },
            Case {
                name: "commune down behind a working gateway",
                down: &["c1"],
                states: &[("gw", Up), ("c1", Down), ("c2", Up)],
                causes: &[],
                behind: &[],
            },
        ];
        for case in &cases {
            run(&c, case);
        }
        let reach = Reach::compute(&c, &[Down, Down, Down]);
        let behind = &reach.behind[&0];
        assert_eq!(behind.areas.len(), 2, "both communes' areas");
    }

    #[test]
    fn a_dual_homed_commune_is_cut_only_when_both_uplinks_are() {
        let c = catalog(&[
            ("tslcd", "\"15\"", ""),
            ("internet", "\"15\"", ""),
            ("commune", "a1", "tslcd, internet"),
            ("server", "a1", "commune"),
        ]);
        let cases = [
            Case {
                name: "one uplink down, the commune answers",
                down: &["tslcd"],
                states: &[("commune", Degraded), ("server", Up)],
                causes: &[],
                behind: &[],
            },
            Case {
                name: "one uplink down, the commune down too: its own fault",
                down: &["tslcd", "commune", "server"],
                states: &[("commune", Down), ("server", Unreachable)],
                causes: &[("server", &["commune"])],
                behind: &[("commune", &["server"])],
            },
            Case {
                name: "both uplinks down",
                down: &["tslcd", "internet", "commune", "server"],
                states: &[("commune", Unreachable), ("server", Unreachable)],
                causes: &[
                    ("commune", &["tslcd", "internet"]),
                    ("server", &["tslcd", "internet"]),
                ],
                behind: &[
                    ("tslcd", &["commune", "server"]),
                    ("internet", &["commune", "server"]),
                ],
            },
        ];
        for case in &cases {
            run(&c, case);
        }
        let own = [Down, Up, Up, Up];
        let reach = Reach::compute(&c, &own);
        assert_eq!(reach.uplinks_down[&2], vec![0], "the cut uplink is named");
    }

    #[test]
    fn a_chain_of_three_levels_and_a_diamond() {
        let c = catalog(&[
            ("province", "\"15\"", ""),
            ("district", "\"15\"", "province"),
            ("commune", "a1", "district"),
            ("left", "a1", "province"),
            ("right", "a2", "province"),
            ("school", "a2", "left, right"),
        ]);
        let cases = [
            Case {
                name: "the top of the chain cut",
                down: &["province", "district", "commune", "left", "right", "school"],
                states: &[
                    ("district", Unreachable),
                    ("commune", Unreachable),
                    ("school", Unreachable),
                ],
                causes: &[
                    ("district", &["province"]),
                    ("commune", &["province"]),
                    ("left", &["province"]),
                    ("right", &["province"]),
                    ("school", &["province"]),
                ],
                behind: &[(
                    "province",
                    &["district", "commune", "left", "right", "school"],
                )],
            },
            Case {
                name: "the middle of the chain cut",
                down: &["district", "commune"],
                states: &[
                    ("province", Up),
                    ("district", Down),
                    ("commune", Unreachable),
                ],
                causes: &[("commune", &["district"])],
                behind: &[("district", &["commune"])],
            },
            Case {
                name: "both sides of the diamond cut",
                down: &["left", "right", "school"],
                states: &[("school", Unreachable)],
                causes: &[("school", &["left", "right"])],
                behind: &[("left", &["school"]), ("right", &["school"])],
            },
            Case {
                name: "one side of the diamond cut, the school down: its own fault",
                down: &["left", "school"],
                states: &[("school", Down)],
                causes: &[],
                behind: &[],
            },
        ];
        for case in &cases {
            run(&c, case);
        }
        // A target not heard from yet stays unknown, upstream cut or not.
        let reach = Reach::compute(&c, &[Down, Down, Unknown, Up, Up, Up]);
        assert_eq!(reach.state(2), Unknown);
    }
}
