//! Baselines: what a DNS, TLS or page check compares against. The first answer set,
//! certificate or page a check sees becomes its baseline, until someone accepts a change
//! (`iocwatch baseline accept`). Probes only measure; here each round is compared, its
//! `changed` flag (and for pages a summary of what changed) filled in, and every new or
//! forgotten baseline handed to the journal, so a restart neither forgets a baseline nor
//! takes a defaced page as one.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::{Catalog, CheckKey};
use crate::model::Write;
use crate::probe::{Detail, Outcome};

/// Longest excerpt of a changed line in a page's summary.
const EXCERPT: usize = 120;

#[derive(Debug, Default)]
pub struct Baselines {
    /// By `target/check`, the key they are stored under.
    values: HashMap<String, String>,
}

/// The store's key of a check's baseline.
fn store_key(key: &CheckKey) -> String {
    format!("{}/{}", key.target, key.check)
}

impl Baselines {
    /// The baselines the store holds, as read at start-up.
    pub fn new(values: HashMap<String, String>) -> Baselines {
        Baselines { values }
    }

    /// Compares a round with its check's baseline and records the first one; `at` is the
    /// round's time (Unix ms). A value that must not become a baseline (an error answer, a
    /// page with a forbidden phrase) is compared but never kept.
    pub fn judge(
        &mut self,
        key: &CheckKey,
        outcome: &mut Outcome,
        at: i64,
        writes: &mut Vec<Write>,
    ) {
        match &mut outcome.detail {
            Detail::Dns(dns) => {
                // Only a real answer may become the baseline, not an error or an empty set.
                let settable = dns.rcode == 0 && !dns.answers.is_empty();
                let current = dns.answers.join("\n");
                dns.changed = self.compare(key, current, settable, at, writes).is_some();
            }
            Detail::Tls(tls) if !tls.fingerprint.is_empty() => {
                let current = tls.fingerprint.clone();
                tls.fingerprint_changed = self.compare(key, current, true, at, writes).is_some();
            }
            Detail::Http(http) => {
                if let Some(content) = &mut http.content {
                    let current = std::mem::take(&mut content.text);
                    let settable = content.forbidden_found.is_empty();
                    let before = self.compare(key, current.clone(), settable, at, writes);
                    content.summary = before.map(|before| summarise(&before, &current));
                    content.changed = content.summary.is_some();
                }
            }
            _ => {}
        }
    }

    /// `Some(baseline)` when `current` differs from it; with none yet, `current` becomes it
    /// if `settable`.
    fn compare(
        &mut self,
        key: &CheckKey,
        current: String,
        settable: bool,
        at: i64,
        writes: &mut Vec<Write>,
    ) -> Option<String> {
        let store_key = store_key(key);
        match self.values.get(&store_key) {
            Some(seen) if *seen == current => None,
            Some(seen) => Some(seen.clone()),
            None => {
                if settable {
                    writes.push(Write::BaselineSet {
                        key: store_key.clone(),
                        value: current.clone(),
                        at,
                    });
                    self.values.insert(store_key, current);
                }
                None
            }
        }
    }

    /// Forgets the baselines of `target`'s checks: their next rounds set new ones. Returns
    /// the names of the checks that have baselines, or `None` for an unknown target.
    pub fn accept(
        &mut self,
        catalog: &Catalog,
        target: &str,
        writes: &mut Vec<Write>,
    ) -> Option<Vec<String>> {
        let target = catalog.targets.iter().find(|t| &*t.id == target)?;
        let mut accepted = Vec::new();
        for check in target.checks.iter().filter(|c| c.probe.has_baseline()) {
            let key = store_key(&check.key);
            self.values.remove(&key);
            writes.push(Write::BaselineCleared { key });
            accepted.push(check.key.check.to_string());
        }
        accepted.sort();
        Some(accepted)
    }

    /// Drops baselines of checks that left the config (the store keeps them: a check that
    /// comes back finds its baseline after a restart).
    pub fn retain(&mut self, catalog: &Catalog) {
        let keys: std::collections::HashSet<String> =
            catalog.checks().map(|c| store_key(&c.key)).collect();
        self.values.retain(|k, _| keys.contains(k));
    }
}

fn summarise(before: &str, after: &str) -> String {
    let old: BTreeSet<&str> = before.lines().collect();
    let new: BTreeSet<&str> = after.lines().collect();
    let added: Vec<&str> = after.lines().filter(|l| !old.contains(l)).collect();
    let removed = before.lines().filter(|l| !new.contains(l)).count();
    let mut summary = format!("{} lines added, {} removed", added.len(), removed);
    if let Some(first) = added.first() {
        let excerpt: String = first.chars().take(EXCERPT).collect();
        summary.push_str(&format!("; first added: {excerpt:?}"));
    }
    summary
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::probe::http_content::ContentFindings;
    use crate::probe::{DnsDetail, HttpDetail};

    fn key(check: &str) -> CheckKey {
        CheckKey {
            target: Arc::from("portal"),
            check: Arc::from(check),
        }
    }

    fn page(text: &str, forbidden: &[&str]) -> Outcome {
        let detail = HttpDetail {
            content: Some(ContentFindings {
                text: text.to_owned(),
                forbidden_found: forbidden.iter().map(|f| (*f).to_owned()).collect(),
                ..ContentFindings::default()
            }),
            ..HttpDetail::default()
        };
        Outcome {
            duration: Duration::from_millis(5),
            failure: None,
            detail: Detail::Http(Box::new(detail)),
        }
    }

    fn content(outcome: &Outcome) -> &ContentFindings {
        match &outcome.detail {
            Detail::Http(h) => h.content.as_ref().expect("content"),
            _ => panic!("not http"),
        }
    }

    #[test]
    fn the_first_page_becomes_the_baseline_and_a_defacement_is_summarised() {
        let mut b = Baselines::default();
        let mut writes = Vec::new();
        let mut first = page("Cổng thông tin\nTin tức", &[]);
        b.judge(&key("http"), &mut first, 1, &mut writes);
        assert!(!content(&first).changed);
        assert_eq!(
            writes,
            [Write::BaselineSet {
                key: "portal/http".into(),
                value: "Cổng thông tin\nTin tức".into(),
                at: 1
            }]
        );
        let mut defaced = page("HACKED BY xyz\nCổng thông tin", &["hacked by"]);
        b.judge(&key("http"), &mut defaced, 2, &mut writes);
        let c = content(&defaced);
        assert!(c.changed);
        assert_eq!(
            c.summary.as_deref(),
            Some("1 lines added, 1 removed; first added: \"HACKED BY xyz\"")
        );
        assert!(
            c.text.is_empty(),
            "the page text is not kept past the judge"
        );
        assert_eq!(
            writes.len(),
            1,
            "a changed page does not replace the baseline"
        );
    }

    #[test]
    fn a_page_with_a_forbidden_phrase_or_an_error_answer_never_becomes_the_baseline() {
        let mut b = Baselines::default();
        let mut writes = Vec::new();
        b.judge(
            &key("http"),
            &mut page("HACKED", &["hacked"]),
            1,
            &mut writes,
        );
        let mut nx = Outcome {
            duration: Duration::ZERO,
            failure: None,
            detail: Detail::Dns(Box::new(DnsDetail {
                rcode: 3,
                rcode_name: "NXDOMAIN",
                answers: vec![],
                changed: false,
            })),
        };
        b.judge(&key("dns"), &mut nx, 1, &mut writes);
        assert!(writes.is_empty(), "{writes:?}");
    }

    #[test]
    fn a_stored_baseline_is_compared_after_a_restart_and_accepting_clears_it() {
        let stored = HashMap::from([("portal/dns".to_owned(), "127.0.10.1".to_owned())]);
        let mut b = Baselines::new(stored);
        let mut writes = Vec::new();
        let mut hijacked = Outcome {
            duration: Duration::ZERO,
            failure: None,
            detail: Detail::Dns(Box::new(DnsDetail {
                rcode: 0,
                rcode_name: "No Error",
                answers: vec!["127.66.6.6".into()],
                changed: false,
            })),
        };
        b.judge(&key("dns"), &mut hijacked, 1, &mut writes);
        assert!(matches!(&hijacked.detail, Detail::Dns(d) if d.changed));
        assert!(writes.is_empty());
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("iocwatch.yaml");
        std::fs::write(
            &path,
            "areas: [{code: \"15\", name: Lào Cai}]\ntargets:\n  - {id: portal, area: \"15\", address: 127.0.0.1, checks: [dns: {query: portal.example, server: 127.0.0.1}, tcp: {port: 1, name: t}]}\n",
        )
        .expect("write");
        let catalog = crate::config::load(&path).expect("config").catalog;
        let accepted = b.accept(&catalog, "portal", &mut writes).expect("known");
        assert_eq!(accepted, ["dns"]);
        assert_eq!(
            writes,
            [Write::BaselineCleared {
                key: "portal/dns".into()
            }]
        );
        assert_eq!(b.accept(&catalog, "nobody", &mut writes), None);
        b.judge(&key("dns"), &mut hijacked, 2, &mut writes);
        assert!(
            matches!(writes.last(), Some(Write::BaselineSet { value, .. }) if value == "127.66.6.6")
        );
    }
}
