//! Where the people are: the language of messages and the time zone of windows and texts.

use chrono_tz::Tz;
use serde::Deserialize;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A name as people may type it, folded for matching: without tone and other marks, `đ` as
/// `d`, lower case, single spaces. `Xã Xuân Hoà` (old-style tone placement), `Xã Xuân Hòa`
/// and `xa xuan hoa` all fold to `xa xuan hoa`.
pub fn fold_name(name: &str) -> String {
    let stripped: String = name
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' => 'd',
            'Đ' => 'D',
            other => other,
        })
        .collect();
    stripped
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Vi,
    En,
}

/// The default zone of windows written without an offset: the whole country is UTC+7.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Ho_Chi_Minh;

#[cfg(test)]
mod tests {
    use super::fold_name;

    #[test]
    fn names_fold_whatever_their_tone_marks() {
        for name in ["Xã Xuân Hoà", "Xã Xuân Hòa", "xa  xuan HOA", "Xã Xuân Hòa"] {
            assert_eq!(fold_name(name), "xa xuan hoa", "{name}");
        }
        assert_eq!(fold_name("Phường Đông Sơn"), "phuong dong son");
    }
}
