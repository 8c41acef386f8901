//! Defacement detection for HTTP checks with `content:`: the page, normalised (tags and
//! configured regions such as a date or a visitor counter removed, whitespace folded), is
//! compared with a baseline; a change is reported with a short summary of what changed.
//! Forbidden phrases ("hacked by") fail the check at once.
//!
//! The baseline is the first page seen, kept by the running check across reloads of an
//! unchanged config (not yet across restarts) and replaced by `iocwatch baseline accept`.

use std::collections::BTreeSet;

use regex::Regex;
use serde::Deserialize;

use super::baseline::{Baseline, Comparison};
use crate::config::{FieldError, Spanned};

/// Longest excerpt of a changed line in the summary.
const EXCERPT: usize = 120;

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// Regexes of regions to ignore (a date, a visitor counter, a CSRF token).
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    /// Phrases that must never appear, matched without regard to case ("hacked by").
    #[serde(default)]
    pub forbidden: Vec<String>,
}

#[derive(Debug)]
pub struct ContentWatch {
    ignore: Vec<Regex>,
    forbidden: Vec<String>,
    pub(crate) baseline: Baseline,
}

/// What one page showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentFindings {
    pub changed: bool,
    /// "3 lines added, 1 removed; first added: …" when changed.
    pub summary: Option<String>,
    pub forbidden_found: Vec<String>,
}

static TAGS: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    // Scripts and styles change with every deploy without the visible page changing.
    Regex::new(r"(?is)<script\b.*?</script>|<style\b.*?</style>|<!--.*?-->|<[^>]*>")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

impl ContentWatch {
    pub fn new(config: &ContentConfig) -> Result<ContentWatch, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut ignore = Vec::new();
        for pattern in &config.ignore {
            match Regex::new(&pattern.value) {
                Ok(re) => ignore.push(re),
                Err(e) => errors.push(FieldError::at(
                    pattern.referenced,
                    format!("invalid regex in content.ignore: {e}"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ContentWatch {
            ignore,
            forbidden: config
                .forbidden
                .iter()
                .map(|f| f.to_lowercase())
                .filter(|f| !f.is_empty())
                .collect(),
            baseline: Baseline::default(),
        })
    }

    /// The text that is compared: ignored regions and markup removed, one line per block,
    /// whitespace folded.
    pub fn normalise(&self, page: &str) -> String {
        let mut text = page.to_owned();
        for re in &self.ignore {
            text = re.replace_all(&text, "").into_owned();
        }
        let text = TAGS.replace_all(&text, "\n");
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assess(&self, page: &str) -> ContentFindings {
        let lower = page.to_lowercase();
        let forbidden_found: Vec<String> = self
            .forbidden
            .iter()
            .filter(|f| lower.contains(f.as_str()))
            .cloned()
            .collect();
        let text = self.normalise(page);
        // A page with a forbidden phrase never becomes the baseline.
        let summary = match self.baseline.compare(&text, forbidden_found.is_empty()) {
            Comparison::First | Comparison::Same => None,
            Comparison::Changed(seen) => Some(summarise(&seen, &text)),
        };
        ContentFindings {
            changed: summary.is_some(),
            summary,
            forbidden_found,
        }
    }

    /// Forgets the baseline: the next page becomes the accepted one.
    pub fn accept_change(&self) {
        self.baseline.clear();
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
    use super::*;

    fn watch(ignore: &[&str], forbidden: &[&str]) -> ContentWatch {
        let config = ContentConfig {
            ignore: ignore
                .iter()
                .map(|p| Spanned {
                    value: (*p).to_owned(),
                    referenced: crate::config::Location::UNKNOWN,
                    defined: crate::config::Location::UNKNOWN,
                })
                .collect(),
            forbidden: forbidden.iter().map(|f| (*f).to_owned()).collect(),
        };
        ContentWatch::new(&config).expect("valid")
    }

    const PAGE: &str = "<html><head><script>var t=1;</script></head><body>\n<h1>Cổng thông tin điện tử tỉnh Lào Cai</h1>\n<p>Hôm nay: 23/11/2026</p><p>Lượt truy cập: 10234</p>\n</body></html>";

    #[test]
    fn ignored_regions_scripts_and_markup_do_not_count() {
        let w = watch(&[r"Hôm nay: \d+/\d+/\d+", r"Lượt truy cập: \d+"], &[]);
        assert!(!w.assess(PAGE).changed, "first page becomes the baseline");
        let next_day = PAGE
            .replace("23/11/2026", "24/11/2026")
            .replace("10234", "10301")
            .replace("var t=1", "var t=2")
            .replace("<h1>", "<h1 class=\"x\">");
        assert_eq!(w.assess(&next_day), ContentFindings::default());
    }

    #[test]
    fn a_defaced_page_is_a_change_with_a_summary() {
        let w = watch(&[], &["hacked by"]);
        w.assess(PAGE);
        let defaced = "<html><body><h1>HACKED BY xyz</h1><p>your security is low</p></body></html>";
        let findings = w.assess(defaced);
        assert!(findings.changed);
        assert_eq!(findings.forbidden_found, ["hacked by"]);
        let summary = findings.summary.expect("summary");
        assert!(
            summary.starts_with("2 lines added, 3 removed; first added: \"HACKED BY xyz\""),
            "{summary}"
        );
        w.accept_change();
        assert!(!w.assess(defaced).changed, "accepted as the new baseline");
        assert!(
            !w.assess(defaced).forbidden_found.is_empty(),
            "forbidden phrases are never accepted"
        );
    }

    #[test]
    fn bad_ignore_regex_is_a_config_error() {
        let config = ContentConfig {
            ignore: vec![Spanned {
                value: "(".to_owned(),
                referenced: crate::config::Location::UNKNOWN,
                defined: crate::config::Location::UNKNOWN,
            }],
            forbidden: vec![],
        };
        assert!(ContentWatch::new(&config).is_err());
    }
}
