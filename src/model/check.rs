//! The vocabulary of checks: which kind a check is, why a round failed (a fixed set, so the
//! `reason` label stays bounded) and the grade of a TLS set-up.

use std::fmt;

use serde::Deserialize;

/// The kinds of probe iocwatch knows; used as the `kind` label and for per-kind limits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Icmp,
    Tcp,
    Http,
    Dns,
    Ports,
    Tls,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Icmp,
        Kind::Tcp,
        Kind::Http,
        Kind::Dns,
        Kind::Ports,
        Kind::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Icmp => "icmp",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Dns => "dns",
            Kind::Ports => "ports",
            Kind::Tls => "tls",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown probe kind {text:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe failed. A fixed set so that the `reason` label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    Timeout,
    Refused,
    Unreachable,
    Dns,
    Tls,
    HttpStatus,
    HttpVersion,
    Content,
    BodyTooLarge,
    Redirects,
    Banner,
    IcmpUnavailable,
    Io,
}

impl FailureReason {
    pub const ALL: [FailureReason; 13] = [
        FailureReason::Timeout,
        FailureReason::Refused,
        FailureReason::Unreachable,
        FailureReason::Dns,
        FailureReason::Tls,
        FailureReason::HttpStatus,
        FailureReason::HttpVersion,
        FailureReason::Content,
        FailureReason::BodyTooLarge,
        FailureReason::Redirects,
        FailureReason::Banner,
        FailureReason::IcmpUnavailable,
        FailureReason::Io,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Refused => "refused",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Dns => "dns",
            FailureReason::Tls => "tls",
            FailureReason::HttpStatus => "http_status",
            FailureReason::HttpVersion => "http_version",
            FailureReason::Content => "content",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::Redirects => "redirects",
            FailureReason::Banner => "banner",
            FailureReason::IcmpUnavailable => "icmp_unavailable",
            FailureReason::Io => "io",
        }
    }

    /// The reason a label names (`refused`), as the metrics and notes write it.
    pub fn from_label(label: &str) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.label() == label)
    }

    /// The reason as people say it, for the status page and notifications.
    pub fn words(self, language: super::Language) -> &'static str {
        let vi = language == super::Language::Vi;
        let (v, e) = match self {
            FailureReason::Timeout => (
                "không phản hồi (hết thời gian chờ)",
                "no answer (timed out)",
            ),
            FailureReason::Refused => (
                "máy chủ từ chối kết nối",
                "the server refused the connection",
            ),
            FailureReason::Unreachable => ("không có đường tới máy chủ", "no route to the host"),
            FailureReason::Dns => ("không phân giải được tên miền", "the name did not resolve"),
            FailureReason::Tls => (
                "lỗi kết nối bảo mật (TLS, chứng thư số)",
                "secure connection failed (TLS, certificate)",
            ),
            FailureReason::HttpStatus => (
                "trang trả về mã lỗi HTTP",
                "the page answered with an HTTP error",
            ),
            FailureReason::HttpVersion => (
                "phiên bản HTTP không như yêu cầu",
                "not the HTTP version required",
            ),
            FailureReason::Content => (
                "nội dung trang không như mong đợi",
                "the page content is not as expected",
            ),
            FailureReason::BodyTooLarge => ("trang quá lớn", "the page is too large"),
            FailureReason::Redirects => ("chuyển hướng quá nhiều lần", "too many redirects"),
            FailureReason::Banner => (
                "dịch vụ trả lời không đúng giao thức",
                "the service answered in the wrong protocol",
            ),
            FailureReason::IcmpUnavailable => (
                "không gửi được gói ICMP (thiếu quyền)",
                "cannot send ICMP (no permission)",
            ),
            FailureReason::Io => ("lỗi mạng", "network error"),
        };
        if vi {
            v
        } else {
            e
        }
    }

    /// Maps a socket error to a reason: refused and unreachable are told apart from the rest.
    pub fn from_io(error: &std::io::Error) -> FailureReason {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::ConnectionRefused => FailureReason::Refused,
            ErrorKind::TimedOut => FailureReason::Timeout,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                FailureReason::Unreachable
            }
            _ => FailureReason::Io,
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Grades from A (best) to F.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Grade {
    #[default]
    F,
    C,
    B,
    A,
}

impl Grade {
    pub fn parse(letter: &str) -> Option<Grade> {
        [Grade::A, Grade::B, Grade::C, Grade::F]
            .into_iter()
            .find(|g| g.letter().eq_ignore_ascii_case(letter.trim()))
    }

    pub fn letter(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::F => "F",
        }
    }

    /// The metric value: A = 4, B = 3, C = 2, F = 0 (D is not used).
    pub fn value(self) -> f64 {
        match self {
            Grade::A => 4.0,
            Grade::B => 3.0,
            Grade::C => 2.0,
            Grade::F => 0.0,
        }
    }
}
