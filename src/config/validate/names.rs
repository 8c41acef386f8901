//! Small validators shared by the loader: label names, addresses, file_sd hosts.

use super::{Location, Spanned};
use crate::catalog::RESERVED_LABELS;

pub(super) trait LocationExt {
    fn max_or(self, other: Location) -> Location;
}

impl LocationExt for Location {
    /// This location if known, else `other`.
    fn max_or(self, other: Location) -> Location {
        if self == Location::UNKNOWN {
            other
        } else {
            self
        }
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed, not one of ours.
pub(super) fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || name.starts_with("__") {
        return Err(format!(
            "{name:?}: expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!(
            "{name:?} is set by iocwatch itself; choose another name"
        ));
    }
    Ok(())
}

pub(super) fn unlocated(value: String) -> Spanned<String> {
    Spanned {
        value,
        referenced: Location::UNKNOWN,
        defined: Location::UNKNOWN,
    }
}

/// An IP address, or a host name made of valid DNS labels (so `300.1.1.1` is refused
/// rather than sent to the resolver).
pub(super) fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let expected =
        || format!("address {address:?}: expected an IPv4 or IPv6 address or a host name");
    let labels: Vec<&str> = address
        .strip_suffix('.')
        .unwrap_or(address)
        .split('.')
        .collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let numeric_tld = labels
        .last()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if address.len() > 253 || !labels.iter().all(label_ok) || numeric_tld {
        return Err(expected());
    }
    Ok(())
}

/// `host:port` → `host`, `[::1]:80` → `::1`, a bare host unchanged.
pub(super) fn host_of(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_file_sd_entries() {
        assert_eq!(host_of("127.0.0.1:9100"), "127.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("gw.lc.local"), "gw.lc.local");
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "gw-01.lao-cai.gov.vn",
            "localhost",
            "host.",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "300.1.1.1",
            "1.2.3",
            "-bad.example",
            "a..b",
            "under_score.vn",
            "",
            "has space",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("owner").is_ok());
        assert!(check_label_name("link_type").is_ok());
        assert!(check_label_name("1abc").is_err());
        assert!(check_label_name("__x").is_err());
        assert!(check_label_name("target").is_err());
        assert!(check_label_name("a-b").is_err());
    }
}
