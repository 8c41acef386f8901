//! Defacement watch for HTTP checks with `content:`: the page is normalised (tags and
//! configured regions such as a date or a visitor counter removed, whitespace folded) and
//! searched for forbidden phrases ("hacked by"), which fail the check at once. The probe
//! only measures: comparing the normalised page with its baseline is the state's business
//! (`state::baseline`), which fills in `changed` and `summary`.

use regex::Regex;
use serde::Deserialize;

use crate::model::{FieldError, Spanned};

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
}

/// What one page showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentFindings {
    /// The page as compared: normalised, one line per block. Taken by the state's judge.
    pub text: String,
    /// Set by the state: the page differs from its baseline.
    pub changed: bool,
    /// Set by the state when changed: "3 lines added, 1 removed; first added: …".
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
        // The text as a reader sees it: `&lt;script&gt;` is `<script>` (escaped once, when
        // shown), and `&nbsp;` is a space.
        let text = html_escape::decode_html_entities(&text);
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assess(&self, page: &str) -> ContentFindings {
        let text = self.normalise(page);
        // In the markup and in the text as read (an entity can hide a phrase in the markup).
        let lower = page.to_lowercase();
        let read = text.to_lowercase();
        let forbidden_found: Vec<String> = self
            .forbidden
            .iter()
            .filter(|f| lower.contains(f.as_str()) || read.contains(f.as_str()))
            .cloned()
            .collect();
        ContentFindings {
            text,
            changed: false,
            summary: None,
            forbidden_found,
        }
    }
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
                    referenced: crate::model::Location::UNKNOWN,
                    defined: crate::model::Location::UNKNOWN,
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
        let next_day = PAGE
            .replace("23/11/2026", "24/11/2026")
            .replace("10234", "10301")
            .replace("var t=1", "var t=2")
            .replace("<h1>", "<h1 class=\"x\">");
        assert_eq!(w.assess(PAGE), w.assess(&next_day));
        assert_eq!(w.assess(PAGE).text, "Cổng thông tin điện tử tỉnh Lào Cai");
    }

    #[test]
    fn entities_are_read_as_text_so_they_are_escaped_once_when_shown() {
        let w = watch(&[], &["hacked by"]);
        let findings = w.assess("<p>&lt;script&gt;alert(1)&lt;/script&gt; Hacked&nbsp;by x</p>");
        assert_eq!(findings.text, "<script>alert(1)</script> Hacked by x");
        assert_eq!(findings.forbidden_found, ["hacked by"]);
    }

    #[test]
    fn forbidden_phrases_are_found_whatever_their_case() {
        let w = watch(&[], &["hacked by"]);
        assert!(w.assess(PAGE).forbidden_found.is_empty());
        let defaced = "<html><body><h1>HACKED BY xyz</h1><p>your security is low</p></body></html>";
        let findings = w.assess(defaced);
        assert_eq!(findings.forbidden_found, ["hacked by"]);
        assert_eq!(findings.text, "HACKED BY xyz\nyour security is low");
    }

    #[test]
    fn bad_ignore_regex_is_a_config_error() {
        let config = ContentConfig {
            ignore: vec![Spanned {
                value: "(".to_owned(),
                referenced: crate::model::Location::UNKNOWN,
                defined: crate::model::Location::UNKNOWN,
            }],
            forbidden: vec![],
        };
        assert!(ContentWatch::new(&config).is_err());
    }
}
