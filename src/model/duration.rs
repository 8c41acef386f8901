//! Durations written the way Prometheus writes them: `30s`, `5m`, `1h30m`, `250ms`, `1d`, `1w`,
//! `1y` (= 365 days). humantime reads `1y` as 365.25 days, so we keep Prometheus's meaning,
//! which is what operators of the rest of the stack already type.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

/// A duration parsed from a Prometheus-style string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

/// Units from largest to smallest; a duration must list them in this order, each at most once.
const UNITS: [(&str, u64); 8] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
    ("", 0),
];

/// Parses `1h30m`, `250ms`, `0s`; the error says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "invalid duration {text:?}: expected a number followed by a unit \
             (ms, s, m, h, d, w, y), such as \"30s\" or \"1h30m\""
        )
    };
    if text.is_empty() {
        return Err(expected());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(expected());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| expected())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let position = UNITS[..7]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(expected)?;
        // Units must come largest first and only once, as in Prometheus ("1h30m", not "30m1h").
        if position < last_unit || (position == last_unit && total_ms > 0) {
            return Err(expected());
        }
        last_unit = position;
        let unit_ms = UNITS[position].1;
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats like Prometheus: the largest units first, zero parts left out, `0s` for zero.
pub fn format(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, unit_ms) in &UNITS[..7] {
        if ms >= *unit_ms {
            out.push_str(&format!("{}{}", ms / unit_ms, name));
            ms %= unit_ms;
        }
    }
    out
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(PromDuration).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("0s", 0),
            ("1m30s500ms", 90_500),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "30", "s", "1.5s", "30m1h", "1s1s", "-1s", "1 s", "10x"] {
            assert!(parse(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["30s", "1h30m", "250ms", "1d", "1y1d", "0s"] {
            let parsed = parse(text).expect("valid");
            assert_eq!(format(parsed), text);
        }
    }
}
