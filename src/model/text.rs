//! The words of a notification: Vietnamese by default, English by config; area names with
//! their diacritics and the whole area path; what is wrong, since when, the root cause and
//! how much sits behind it, and a link to the status page. `strip_diacritics` turns the
//! text into plain ASCII letters for SMS gateways.

use chrono::{DateTime, Utc};
use unicode_normalization::UnicodeNormalization;

use super::{AlertName, Event, EventStatus, Language, Severity, DEFAULT_TIME_ZONE};

/// A rendered message: a one-line title and a body of short lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub body: String,
}

impl Message {
    /// Title and body as one text, for channels without a subject.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.title, self.body)
    }
}

pub fn render(event: &Event, language: Language, strip: bool) -> Message {
    let message = compose(
        event,
        match language {
            Language::Vi => &VI,
            Language::En => &EN,
        },
    );
    if strip {
        Message {
            title: strip_diacritics(&message.title),
            body: strip_diacritics(&message.body),
        }
    } else {
        message
    }
}

/// "Xã Bảo Yên" → "Xa Bao Yen": decomposes, drops the combining marks, and maps đ, which
/// is a letter of its own rather than d with a mark.
pub fn strip_diacritics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfd() {
        match c {
            '\u{0300}'..='\u{036f}' => {}
            'đ' => out.push('d'),
            'Đ' => out.push('D'),
            // Our own punctuation, so that an SMS is plain ASCII.
            '›' => out.push('>'),
            '…' => out.push_str("..."),
            c => out.push(c),
        }
    }
    out
}

fn what(event: &Event, language: Language) -> String {
    alert_words(&event.alertname, event.value, language)
}

/// A note in words: a failure reason's label (`refused`) becomes what people say; any other
/// note (a TLS grade's reasons, a changed answer) is kept as written.
pub fn note_words(note: &str, language: Language) -> String {
    match super::FailureReason::from_label(note) {
        Some(reason) => reason.words(language).to_owned(),
        None => note.to_owned(),
    }
}

/// What an alert means, in words: "Mất kết nối", "Gói tin bị mất 35 %", "Chứng thư số sắp hết hạn
/// (còn 5 ngày)"; `value` is the alert's (loss ratio, latency, days left).
pub fn alert_words(alertname: &str, value: Option<f64>, language: Language) -> String {
    let name = AlertName::parse(alertname);
    let vi = language == Language::Vi;
    match name {
        Some(AlertName::TargetDown) => if vi { "Mất kết nối" } else { "Down" }.to_owned(),
        Some(AlertName::PacketLoss) => {
            let pct = value.map_or(String::new(), |v| format!(" {:.0} %", v * 100.0));
            if vi {
                format!("Gói tin bị mất{pct}")
            } else {
                format!("Packet loss{pct}")
            }
        }
        Some(AlertName::Slow) => {
            let ms = value.map_or(String::new(), |v| format!(" ({:.0} ms)", v * 1000.0));
            if vi {
                format!("Phản hồi chậm{ms}")
            } else {
                format!("Slow{ms}")
            }
        }
        Some(AlertName::CertificateExpiresSoon | AlertName::CertificateExpiresVerySoon) => {
            let days = value.map_or(0.0, f64::floor);
            if vi {
                format!("Chứng thư số sắp hết hạn (còn {days:.0} ngày)")
            } else {
                format!("Certificate expires in {days:.0} days")
            }
        }
        Some(AlertName::TlsGradeLow) => if vi {
            "Cấu hình TLS yếu"
        } else {
            "Weak TLS"
        }
        .to_owned(),
        Some(AlertName::ContentChanged) => if vi {
            "Nội dung trang thay đổi"
        } else {
            "Page content changed"
        }
        .to_owned(),
        Some(AlertName::ForbiddenPhrase) => if vi {
            "Phát hiện nội dung lạ (nghi bị thay đổi giao diện)"
        } else {
            "Forbidden phrase on the page (possible defacement)"
        }
        .to_owned(),
        Some(AlertName::DnsAnswerChanged) => if vi {
            "Bản ghi DNS thay đổi"
        } else {
            "DNS answer changed"
        }
        .to_owned(),
        Some(AlertName::UnexpectedOpenPort) => if vi {
            "Cổng mở ngoài danh sách cho phép"
        } else {
            "Unexpected open port"
        }
        .to_owned(),
        None => alertname.to_owned(),
    }
}

fn severity_word(severity: Severity, language: Language) -> &'static str {
    match (severity, language) {
        (Severity::Critical, Language::Vi) => "NGHIÊM TRỌNG",
        (Severity::Warning, Language::Vi) => "CẢNH BÁO",
        (Severity::Info, Language::Vi) => "THÔNG TIN",
        (Severity::Critical, Language::En) => "CRITICAL",
        (Severity::Warning, Language::En) => "WARNING",
        (Severity::Info, Language::En) => "INFO",
    }
}

/// A time as the operations centre reads it: local (UTC+7), to the minute; "14:05
/// 02/12/2026" in Vietnamese, "2026-12-02 14:05" in English.
fn local(rfc3339: &str, language: Language) -> String {
    let pattern = match language {
        Language::Vi => "%H:%M %d/%m/%Y",
        Language::En => "%Y-%m-%d %H:%M",
    };
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&DEFAULT_TIME_ZONE)
                .format(pattern)
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn lasted(event: &Event, language: Language) -> Option<String> {
    let start = DateTime::parse_from_rfc3339(&event.started_at).ok()?;
    let end = DateTime::parse_from_rfc3339(event.ended_at.as_deref()?).ok()?;
    let seconds = (end.with_timezone(&Utc) - start.with_timezone(&Utc)).num_seconds();
    Some(duration_words(
        u64::try_from(seconds).unwrap_or(0),
        language,
    ))
}

/// A length of time as people say it: "45 giây", "12 phút", "1 giờ 05 phút", "2 ngày 3 giờ"
/// ("45 s", "12 min", "1 h 05 min", "2 d 3 h"). The status page, notifications and reports
/// all say it so.
pub fn duration_words(seconds: u64, language: Language) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let (dw, hw, mw, sw) = match language {
        Language::Vi => ("ngày", "giờ", "phút", "giây"),
        Language::En => ("d", "h", "min", "s"),
    };
    match (d, h, m) {
        (0, 0, 0) => format!("{s} {sw}"),
        (0, 0, m) => format!("{m} {mw}"),
        (0, h, m) => format!("{h} {hw} {m:02} {mw}"),
        (d, h, _) => format!("{d} {dw} {h} {hw}"),
    }
}

fn who(event: &Event) -> String {
    match &event.target_name {
        Some(name) => format!("{name} ({})", event.target),
        None => event.target.clone(),
    }
}

fn listed(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", … (+{})", names.len() - SHOWN));
    }
    text
}

/// The words of one language; the message is composed the same way for every language.
struct Words {
    language: Language,
    flapping: &'static str,
    resolved: &'static str,
    area: &'static str,
    check: &'static str,
    system: &'static str,
    /// `{start}` is replaced.
    since: &'static str,
    /// `{end}` and `{lasted}` are replaced.
    ended: &'static str,
    /// `{targets}`, `{areas}` and `{list}` are replaced.
    root_cause: &'static str,
    systems_affected: &'static str,
    detail: &'static str,
    link: &'static str,
}

const VI: Words = Words {
    language: Language::Vi,
    flapping: " (chập chờn)",
    resolved: "ĐÃ KHẮC PHỤC",
    area: "Địa bàn",
    check: "Kiểm tra",
    system: "Hệ thống",
    since: "Bắt đầu: {start} (giờ Việt Nam)",
    ended: "Kết thúc: {end} (kéo dài {lasted})",
    root_cause:
        "Nguyên nhân gốc: {targets} đối tượng phía sau không truy cập được, tại {areas} địa bàn: {list}",
    systems_affected: "Hệ thống bị ảnh hưởng",
    detail: "Chi tiết",
    link: "Xem",
};

const EN: Words = Words {
    language: Language::En,
    flapping: " (flapping)",
    resolved: "RESOLVED",
    area: "Area",
    check: "Check",
    system: "System",
    since: "Since: {start} (UTC+7)",
    ended: "Ended: {end} (lasted {lasted})",
    root_cause: "Root cause: {targets} targets behind it are unreachable, in {areas} areas: {list}",
    systems_affected: "Systems affected",
    detail: "Detail",
    link: "Status",
};

fn compose(e: &Event, w: &Words) -> Message {
    let what = what(e, w.language);
    let title = match e.status {
        EventStatus::Firing => format!(
            "[{}] {what}{}: {}",
            severity_word(e.severity, w.language),
            if e.flapping { w.flapping } else { "" },
            who(e)
        ),
        EventStatus::Resolved => format!("[{}] {what}: {}", w.resolved, who(e)),
    };
    let mut lines = vec![
        format!("{}: {}", w.area, e.area_path.join(" › ")),
        format!("{}: {} ({})", w.check, e.check, e.kind),
    ];
    if let Some(system) = &e.system {
        lines.push(format!("{}: {system}", w.system));
    }
    lines.push(
        w.since
            .replace("{start}", &local(&e.started_at, w.language)),
    );
    if let Some(end) = &e.ended_at {
        lines.push(
            w.ended
                .replace("{end}", &local(end, w.language))
                .replace("{lasted}", &lasted(e, w.language).unwrap_or_default()),
        );
    }
    if e.affected_targets > 0 {
        lines.push(
            w.root_cause
                .replace("{targets}", &e.affected_targets.to_string())
                .replace("{areas}", &e.affected_areas.len().to_string())
                .replace("{list}", &listed(&e.affected_areas)),
        );
        if !e.affected_systems.is_empty() {
            lines.push(format!(
                "{}: {}",
                w.systems_affected,
                listed(&e.affected_systems)
            ));
        }
    }
    if let Some(note) = &e.note {
        lines.push(format!("{}: {}", w.detail, note_words(note, w.language)));
    }
    if let Some(url) = &e.status_url {
        lines.push(format!("{}: {url}", w.link));
    }
    Message {
        title,
        body: lines.join("\n"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event() -> Event {
        Event {
            id: "7-firing".into(),
            status: EventStatus::Firing,
            alertname: "IocwatchTargetDown".into(),
            severity: Severity::Critical,
            target: "gw-bao-yen".into(),
            target_name: Some("Cổng kết nối Bảo Yên".into()),
            check: "icmp".into(),
            kind: "icmp".into(),
            area: "g1".into(),
            area_path: vec!["Tỉnh Lào Cai".into(), "Huyện Bảo Yên (cũ)".into()],
            system: None,
            labels: Default::default(),
            started_at: "2026-11-23T08:05:00Z".into(),
            ended_at: None,
            flapping: false,
            value: None,
            note: Some("timeout".into()),
            affected_targets: 2,
            affected_areas: vec!["Xã Bảo Yên".into(), "Xã Nghĩa Đô".into()],
            affected_systems: vec![],
            status_url: Some("http://127.0.0.1:10090/".into()),
            incident: "a1b2c3-7".into(),
        }
    }

    #[test]
    fn vietnamese_names_the_root_cause_and_what_sits_behind_it() {
        let m = render(&event(), Language::Vi, false);
        assert_eq!(
            m.title,
            "[NGHIÊM TRỌNG] Mất kết nối: Cổng kết nối Bảo Yên (gw-bao-yen)"
        );
        assert!(m
            .body
            .contains("Địa bàn: Tỉnh Lào Cai › Huyện Bảo Yên (cũ)"));
        assert!(m.body.contains("Bắt đầu: 15:05 23/11/2026 (giờ Việt Nam)"));
        assert!(m.body.contains(
            "Nguyên nhân gốc: 2 đối tượng phía sau không truy cập được, tại 2 địa bàn: Xã Bảo Yên, Xã Nghĩa Đô"
        ));
        assert!(m.body.contains("Xem: http://127.0.0.1:10090/"));
        // The reason in words, not the metric label.
        assert!(
            m.body
                .contains("Chi tiết: không phản hồi (hết thời gian chờ)"),
            "{}",
            m.body
        );
        let mut loss = event();
        loss.alertname = "IocwatchPacketLoss".into();
        loss.value = Some(0.35);
        loss.note = Some("refused".into());
        let m = render(&loss, Language::Vi, false);
        assert!(m.title.contains("Gói tin bị mất 35 %"), "{}", m.title);
        assert!(
            m.body.contains("Chi tiết: máy chủ từ chối kết nối"),
            "{}",
            m.body
        );
        let m = render(&loss, Language::En, false);
        assert!(m.title.contains("Packet loss 35 %"), "{}", m.title);
        assert!(
            m.body.contains("Detail: the server refused the connection"),
            "{}",
            m.body
        );
    }

    #[test]
    fn resolved_english_and_stripped_texts() {
        let mut e = event();
        e.status = EventStatus::Resolved;
        e.ended_at = Some("2026-11-23T09:20:00Z".into());
        let m = render(&e, Language::En, false);
        assert_eq!(
            m.title,
            "[RESOLVED] Down: Cổng kết nối Bảo Yên (gw-bao-yen)"
        );
        assert!(
            m.body
                .contains("Ended: 2026-11-23 16:20 (lasted 1 h 15 min)"),
            "{}",
            m.body
        );
        let sms = render(&event(), Language::Vi, true);
        assert_eq!(
            sms.title,
            "[NGHIEM TRONG] Mat ket noi: Cong ket noi Bao Yen (gw-bao-yen)"
        );
        assert!(sms.text().is_ascii(), "{}", sms.text());
        assert_eq!(strip_diacritics("Đường Nghĩa Đô"), "Duong Nghia Do");
    }
}
