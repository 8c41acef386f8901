//! The security posture an HTTP response shows to anyone: the headers that make browsers
//! safer, a server that tells its software version, and plain HTTP that does not move to
//! HTTPS. Reported by HTTP checks with `security_headers: true`; findings are signals (with
//! their own metrics and alerts), not probe failures.

use reqwest::header::HeaderMap;

/// Headers a public government site is expected to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityHeader {
    /// `Strict-Transport-Security`: browsers stay on HTTPS. Only meaningful over HTTPS.
    StrictTransportSecurity,
    /// `Content-Security-Policy` with `frame-ancestors`, or `X-Frame-Options`: no framing
    /// by other sites (clickjacking).
    FrameAncestors,
    /// `Content-Security-Policy`: what the page may load.
    ContentSecurityPolicy,
    /// `X-Content-Type-Options: nosniff`.
    ContentTypeOptions,
}

impl SecurityHeader {
    pub const ALL: [SecurityHeader; 4] = [
        SecurityHeader::StrictTransportSecurity,
        SecurityHeader::FrameAncestors,
        SecurityHeader::ContentSecurityPolicy,
        SecurityHeader::ContentTypeOptions,
    ];

    /// The `header` label value.
    pub fn label(self) -> &'static str {
        match self {
            SecurityHeader::StrictTransportSecurity => "strict-transport-security",
            SecurityHeader::FrameAncestors => "frame-ancestors",
            SecurityHeader::ContentSecurityPolicy => "content-security-policy",
            SecurityHeader::ContentTypeOptions => "x-content-type-options",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posture {
    /// Checked headers, each with whether it is missing.
    pub headers: Vec<(SecurityHeader, bool)>,
    /// `Server` or `X-Powered-By` values that carry a version number (`nginx/1.18.0`).
    pub version_disclosed: Option<String>,
    /// For a plain `http://` URL: whether it ended on HTTPS after redirects.
    pub redirected_to_https: Option<bool>,
}

impl Posture {
    pub fn missing(&self) -> impl Iterator<Item = SecurityHeader> + '_ {
        self.headers.iter().filter(|(_, m)| *m).map(|(h, _)| *h)
    }
}

/// Assesses the final response of a request made to `requested`.
pub fn assess(requested: &reqwest::Url, final_url: &reqwest::Url, headers: &HeaderMap) -> Posture {
    let value = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let csp = value("content-security-policy").to_ascii_lowercase();
    let mut checked = Vec::new();
    if final_url.scheme() == "https" {
        checked.push((
            SecurityHeader::StrictTransportSecurity,
            value("strict-transport-security").is_empty(),
        ));
    }
    let framing = csp.contains("frame-ancestors") || !value("x-frame-options").is_empty();
    checked.push((SecurityHeader::FrameAncestors, !framing));
    checked.push((SecurityHeader::ContentSecurityPolicy, csp.is_empty()));
    checked.push((
        SecurityHeader::ContentTypeOptions,
        !value("x-content-type-options").eq_ignore_ascii_case("nosniff"),
    ));
    let version_disclosed = ["server", "x-powered-by"]
        .iter()
        .map(|h| value(h))
        .find(|v| discloses_version(v));
    Posture {
        headers: checked,
        version_disclosed,
        redirected_to_https: (requested.scheme() == "http").then(|| final_url.scheme() == "https"),
    }
}

/// `nginx/1.18.0`, `Apache/2.4.41 (Ubuntu)`, `PHP/7.4.3`, `Microsoft-IIS/8.5`: a product
/// followed by a slash and a digit. A bare `nginx` or `cloudflare` says no version.
fn discloses_version(value: &str) -> bool {
    value
        .split('/')
        .skip(1)
        .any(|after| after.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    fn url(u: &str) -> reqwest::Url {
        reqwest::Url::parse(u).expect("url")
    }

    #[test]
    fn a_hardened_https_site_has_no_findings() {
        let posture = assess(
            &url("https://dichvucong.example/"),
            &url("https://dichvucong.example/"),
            &headers(&[
                ("strict-transport-security", "max-age=31536000"),
                (
                    "content-security-policy",
                    "default-src 'self'; frame-ancestors 'none'",
                ),
                ("x-content-type-options", "nosniff"),
                ("server", "nginx"),
            ]),
        );
        assert_eq!(posture.missing().count(), 0, "{posture:?}");
        assert_eq!(posture.version_disclosed, None);
        assert_eq!(posture.redirected_to_https, None);
    }

    #[test]
    fn a_bare_site_shows_every_finding() {
        let posture = assess(
            &url("http://cong.example/"),
            &url("http://cong.example/"),
            &headers(&[
                ("server", "Apache/2.4.41 (Ubuntu)"),
                ("x-powered-by", "PHP/7.4.3"),
            ]),
        );
        let missing: Vec<&str> = posture.missing().map(SecurityHeader::label).collect();
        // No HSTS finding over plain HTTP: the header means nothing there.
        assert_eq!(
            missing,
            [
                "frame-ancestors",
                "content-security-policy",
                "x-content-type-options"
            ]
        );
        assert_eq!(
            posture.version_disclosed.as_deref(),
            Some("Apache/2.4.41 (Ubuntu)")
        );
        assert_eq!(posture.redirected_to_https, Some(false));
    }

    #[test]
    fn x_frame_options_covers_framing_and_redirects_are_followed_to_https() {
        let posture = assess(
            &url("http://cong.example/"),
            &url("https://cong.example/"),
            &headers(&[
                ("x-frame-options", "DENY"),
                ("x-content-type-options", "NoSniff"),
            ]),
        );
        let missing: Vec<&str> = posture.missing().map(SecurityHeader::label).collect();
        assert_eq!(
            missing,
            ["strict-transport-security", "content-security-policy"]
        );
        assert_eq!(posture.redirected_to_https, Some(true));
    }

    #[test]
    fn version_disclosure() {
        for yes in [
            "nginx/1.18.0",
            "Microsoft-IIS/8.5",
            "Apache/2.4.41 (Ubuntu)",
            "PHP/8.1",
        ] {
            assert!(discloses_version(yes), "{yes}");
        }
        for no in ["nginx", "cloudflare", "Apache", "gws", "", "a/b"] {
            assert!(!discloses_version(no), "{no}");
        }
    }
}
