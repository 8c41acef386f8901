//! The area tree: nested areas, `parent:` links across files, levels, names in NFC.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use super::names::check_label_name;
use super::{Loader, Parsed};
use crate::config::raw::RawArea;
use crate::config::{Location, Spanned};

use crate::catalog::{Area, AreaId, AreaTree};

impl Loader {
    pub(super) fn areas(&mut self, files: &mut [Parsed]) -> AreaTree {
        let mut nodes: Vec<AreaNode> = Vec::new();
        let mut by_code: HashMap<String, AreaId> = HashMap::new();
        // Top-level areas that name a parent defined elsewhere, resolved once all are known.
        let mut attach: Vec<(AreaId, Arc<Path>, Spanned<String>)> = Vec::new();
        for parsed in files.iter_mut() {
            let file = parsed.file.clone();
            for area in std::mem::take(&mut parsed.raw.areas) {
                let at = area.referenced;
                if let Some(id) =
                    self.add_area(&file, area.value, at, None, &mut nodes, &mut by_code)
                {
                    if let Some(parent) = nodes[id].parent_code.take() {
                        attach.push((id, file.clone(), parent));
                    }
                }
            }
        }
        for (id, file, parent) in attach {
            match by_code.get(&parent.value) {
                Some(&p) => {
                    nodes[id].area.parent = Some(p);
                    nodes[p].area.children.push(id);
                }
                None => self.error(
                    &file,
                    parent.referenced,
                    format!("unknown parent area {:?}", parent.value),
                ),
            }
        }
        // `parent:` can only form a cycle through top-level areas; walk each chain once.
        for start in 0..nodes.len() {
            let mut steps = 0;
            let mut current = nodes[start].area.parent;
            while let Some(p) = current {
                steps += 1;
                if p == start || steps > nodes.len() {
                    let (file, at) = (nodes[start].file.clone(), nodes[start].at);
                    self.error(
                        &file,
                        at,
                        format!("area {:?} is its own ancestor", nodes[start].area.code),
                    );
                    nodes[start].area.parent = None;
                    break;
                }
                current = nodes[p].area.parent;
            }
        }
        AreaTree::from_nodes(nodes.into_iter().map(|n| n.area).collect())
    }

    fn add_area(
        &mut self,
        file: &Arc<Path>,
        raw: RawArea,
        at: Location,
        parent: Option<AreaId>,
        nodes: &mut Vec<AreaNode>,
        by_code: &mut HashMap<String, AreaId>,
    ) -> Option<AreaId> {
        let code = raw.code.value.trim().to_owned();
        if code.is_empty() {
            self.error(file, raw.code.referenced, "area code must not be empty");
            return None;
        }
        if by_code.contains_key(&code) {
            self.error(
                file,
                raw.code.referenced,
                format!("area code {code:?} is defined twice"),
            );
            return None;
        }
        if parent.is_some() {
            if let Some(p) = &raw.parent {
                self.error(
                    file,
                    p.referenced,
                    "`parent` is only for top-level areas; this one is nested already",
                );
            }
        }
        let level = raw.level.and_then(|level| {
            if let Err(e) = check_label_name(&level.value) {
                self.error(file, level.referenced, format!("area level {e}"));
                return None;
            }
            Some(level.value)
        });
        let geo = raw.geo.and_then(|g| {
            let (lat, lon) = (g.value.lat, g.value.lon);
            if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
                Some((lat, lon))
            } else {
                self.error(
                    file,
                    g.referenced,
                    format!("geo {lat},{lon}: expected lat in -90..90 and lon in -180..180"),
                );
                None
            }
        });
        let id = nodes.len();
        by_code.insert(code.clone(), id);
        nodes.push(AreaNode {
            file: file.clone(),
            at,
            parent_code: if parent.is_none() { raw.parent } else { None },
            area: Area {
                code,
                // Names compare equal only in one normal form; keep NFC (as GSO publishes them).
                name: raw.name.value.nfc().collect(),
                kind: raw.kind,
                level,
                parent,
                children: Vec::new(),
                geo,
                aliases: raw.aliases.iter().map(|a| a.nfc().collect()).collect(),
                former_units: raw.former_units.iter().map(|a| a.nfc().collect()).collect(),
            },
        });
        for child in raw.children {
            let child_at = child.referenced;
            if let Some(c) = self.add_area(file, child.value, child_at, Some(id), nodes, by_code) {
                nodes[id].area.children.push(c);
            }
        }
        Some(id)
    }
}

/// An area while the tree is being built: where it was written and its pending `parent:`.
struct AreaNode {
    file: Arc<Path>,
    at: Location,
    parent_code: Option<Spanned<String>>,
    area: Area,
}
