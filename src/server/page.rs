//! The status page for the wall screen and a phone: server-rendered HTML, no JavaScript, a
//! meta refresh. Vietnamese by default, English with `?lang=en`.

use std::fmt::Write as _;

use crate::alert::AlertsSnapshot;
use crate::reach::TargetState;
use crate::status::{Counts, Status};

/// Rows of the target table; beyond this the page points at the JSON API.
const MAX_TARGET_ROWS: usize = 300;
const REFRESH_SECONDS: u32 = 15;

struct Texts {
    lang: &'static str,
    title: &'static str,
    total: &'static str,
    up: &'static str,
    degraded: &'static str,
    down: &'static str,
    unreachable: &'static str,
    unknown: &'static str,
    incidents: &'static str,
    no_incidents: &'static str,
    report: &'static str,
    alerts: &'static str,
    alert_states: [(&'static str, &'static str); 4],
    flapping: &'static str,
    target: &'static str,
    area: &'static str,
    state: &'static str,
    since: &'static str,
    cause: &'static str,
    affects: &'static str,
    behind: &'static str,
    uplink_down: &'static str,
    systems: &'static str,
    areas: &'static str,
    targets: &'static str,
    checks: &'static str,
    loss: &'static str,
    more: &'static str,
    updated: &'static str,
    switch: (&'static str, &'static str),
    ago: fn(f64) -> String,
    /// How long something has lasted: "đã kéo dài 1 giờ 05 phút".
    lasting: fn(f64) -> String,
    language: crate::model::Language,
    today: &'static str,
    yesterday: &'static str,
}

const VI: Texts = Texts {
    lang: "vi",
    title: "Tình trạng kết nối và hệ thống dùng chung",
    total: "Tổng số",
    up: "Hoạt động",
    degraded: "Suy giảm",
    down: "Mất kết nối",
    unreachable: "Không truy cập được",
    unknown: "Chưa rõ",
    incidents: "Sự cố hiện tại",
    no_incidents: "Không có sự cố.",
    report: "Báo cáo sẵn sàng 30 ngày",
    alerts: "Cảnh báo",
    alert_states: [
        ("firing", "Đang cảnh báo"),
        ("suppressed", "Đã gộp vào nguyên nhân gốc"),
        ("maintenance", "Đang bảo trì"),
        ("pending", "Chờ xác nhận"),
    ],
    flapping: "chập chờn",
    target: "Đối tượng",
    area: "Địa bàn",
    state: "Trạng thái",
    since: "Từ",
    cause: "Lỗi",
    affects: "ảnh hưởng {} đối tượng",
    behind: "do sự cố tại",
    uplink_down: "mất đường truyền",
    systems: "Hệ thống dùng chung",
    areas: "Địa bàn",
    targets: "Đối tượng giám sát",
    checks: "Kiểm tra",
    loss: "mất gói",
    more: "… và {} đối tượng khác",
    updated: "Cập nhật",
    switch: ("?lang=en", "English"),
    ago: ago_vi,
    lasting: lasting_vi,
    language: crate::model::Language::Vi,
    today: "hôm nay",
    yesterday: "hôm qua",
};

const EN: Texts = Texts {
    lang: "en",
    title: "Links and shared systems",
    total: "Total",
    up: "Up",
    degraded: "Degraded",
    down: "Down",
    unreachable: "Unreachable",
    unknown: "Unknown",
    incidents: "Current incidents",
    no_incidents: "No incidents.",
    report: "30-day availability report",
    alerts: "Alerts",
    alert_states: [
        ("firing", "Firing"),
        ("suppressed", "Suppressed (root cause elsewhere)"),
        ("maintenance", "In maintenance"),
        ("pending", "Pending"),
    ],
    flapping: "flapping",
    target: "Target",
    area: "Area",
    state: "State",
    since: "Since",
    cause: "Reason",
    affects: "affects {} targets",
    behind: "behind",
    uplink_down: "uplink down",
    systems: "Shared systems",
    areas: "Areas",
    targets: "Targets",
    checks: "Checks",
    loss: "loss",
    more: "… and {} more",
    updated: "Updated",
    switch: ("?lang=vi", "Tiếng Việt"),
    ago: ago_en,
    lasting: lasting_en,
    language: crate::model::Language::En,
    today: "today",
    yesterday: "yesterday",
};

/// When something began, as people at the IOC read it: Vietnam time ("14:05 hôm nay",
/// "09:30 hôm qua", "28/11 09:30") and how long it has lasted, with the full time on hover.
fn when(t: &Texts, rfc3339: &str, now: f64) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(at) => when_at(t, at.with_timezone(&chrono::Utc), now),
        Err(_) => esc(rfc3339),
    }
}

/// [`when`] for a time in Unix seconds (the status snapshot's).
fn when_unix(t: &Texts, seconds: f64, now: f64) -> String {
    let at = chrono::DateTime::from_timestamp_millis((seconds * 1000.0) as i64).unwrap_or_default();
    when_at(t, at, now)
}

fn when_at(t: &Texts, at: chrono::DateTime<chrono::Utc>, now: f64) -> String {
    let zone = crate::model::DEFAULT_TIME_ZONE;
    let local = at.with_timezone(&zone);
    let today = chrono::DateTime::from_timestamp(now as i64, 0)
        .map(|n| n.with_timezone(&zone).date_naive());
    let day = local.date_naive();
    let short = match today {
        Some(d) if d == day => format!("{} {}", local.format("%H:%M"), t.today),
        Some(d) if d.pred_opt() == Some(day) => {
            format!("{} {}", local.format("%H:%M"), t.yesterday)
        }
        _ => local.format("%d/%m %H:%M").to_string(),
    };
    let lasted = (t.lasting)((now - at.timestamp() as f64).max(0.0));
    format!(
        "<span title=\"{}\">{short}</span><br><span class=\"muted\">{lasted}</span>",
        local.format("%d/%m/%Y %H:%M:%S (UTC%:z)")
    )
}

fn ago_vi(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0} giây trước"),
        s if s < 3600.0 => format!("{:.0} phút trước", s / 60.0),
        s if s < 86400.0 => format!("{:.0} giờ trước", s / 3600.0),
        s => format!("{:.0} ngày trước", s / 86400.0),
    }
}

fn lasting_vi(seconds: f64) -> String {
    let words =
        crate::model::text::duration_words(seconds.max(0.0) as u64, crate::model::Language::Vi);
    format!("đã kéo dài {words}")
}

fn lasting_en(seconds: f64) -> String {
    let words =
        crate::model::text::duration_words(seconds.max(0.0) as u64, crate::model::Language::En);
    format!("for {words}")
}

fn ago_en(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0} s ago"),
        s if s < 3600.0 => format!("{:.0} min ago", s / 60.0),
        s if s < 86400.0 => format!("{:.0} h ago", s / 3600.0),
        s => format!("{:.0} days ago", s / 86400.0),
    }
}

/// A failure reason's label ("refused") as people say it.
fn reason_words(label: &str, language: crate::model::Language) -> &str {
    crate::model::FailureReason::from_label(label).map_or(label, |r| r.words(language))
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration as people read it: "0.02 ms" on loopback, "35 ms" across a province.
fn millis(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn state_name(t: &Texts, state: TargetState) -> &'static str {
    match state {
        TargetState::Up => t.up,
        TargetState::Degraded => t.degraded,
        TargetState::Down => t.down,
        TargetState::Unreachable => t.unreachable,
        TargetState::Unknown => t.unknown,
    }
}

fn badge(t: &Texts, state: TargetState) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        state.as_str(),
        state_name(t, state)
    )
}

fn counts(counts: &Counts) -> String {
    format!(
        "<span class=\"counts\"><b class=\"up\">{}</b>/{}{}{}{}</span>",
        counts.up,
        counts.total(),
        if counts.down > 0 {
            format!(" <b class=\"down\">▼{}</b>", counts.down)
        } else {
            String::new()
        },
        if counts.degraded > 0 {
            format!(" <b class=\"degraded\">◆{}</b>", counts.degraded)
        } else {
            String::new()
        },
        if counts.unreachable > 0 {
            format!(" <b class=\"unreachable\">⊘{}</b>", counts.unreachable)
        } else {
            String::new()
        },
    )
}

/// The page's Content-Security-Policy: nothing loads but its own inline style (by hash),
/// nothing may frame it, no script runs.
pub fn csp() -> axum::http::HeaderValue {
    static POLICY: std::sync::LazyLock<axum::http::HeaderValue> = std::sync::LazyLock::new(|| {
        use base64::Engine;
        let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        );
        axum::http::HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("default-src 'none'"))
    });
    POLICY.clone()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#10151c;color:#e8edf3}\
#alerts tr.firing td:first-child{border-left:4px solid #e5484d}#alerts tr.suppressed,#alerts tr.maintenance{opacity:.75}\
header{padding:12px 20px;background:#1b2430;display:flex;flex-wrap:wrap;align-items:baseline;gap:16px}\
h1{font-size:1.4em;margin:0}h2{font-size:1.15em;margin:18px 0 8px}main{padding:0 20px 20px}\
a{color:#8cc4ff}.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#1b2430;border-radius:8px;\
padding:10px 16px;min-width:120px}.tile b{display:block;font-size:2em}.up{color:#4cd07d}.degraded{color:#f4b740}\
.down{color:#ff5c5c}.unreachable{color:#c58af9}.unknown{color:#9aa5b1}.badge{border-radius:4px;padding:1px 6px;font-size:.85em;color:#10151c}\
.badge.up{background:#4cd07d}.badge.degraded{background:#f4b740}.badge.down{background:#ff5c5c}.badge.unreachable{background:#c58af9}\
.badge.unknown{background:#9aa5b1}table{border-collapse:collapse;width:100%}td,th{text-align:left;\
padding:4px 8px;border-bottom:1px solid #263241;vertical-align:top}th{color:#9aa5b1;font-weight:normal}\
.tree div{padding:2px 0}.muted{color:#9aa5b1}.counts{margin-left:8px}.tile .counts b{display:inline;font-size:1em}\
@media (max-width:700px){.hide-narrow{display:none}}";

/// Renders the whole page.
pub fn render(
    status: &Status,
    alerts: &AlertsSnapshot,
    english: bool,
    telemetry_path: &str,
) -> String {
    let t = if english { &EN } else { &VI };
    let now = status.generated_at;
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>iocwatch — {title}</title><style>{STYLE}</style></head><body>\
         <header><h1>{title}</h1><span class=\"muted\">iocwatch {version}</span>\
         <a id=\"report\" href=\"/api/v1/report?lang={lang}\">{report}</a> \
         <a href=\"{href}\">{switch}</a></header><main>",
        report = t.report,
        lang = t.lang,
        title = t.title,
        version = env!("CARGO_PKG_VERSION"),
        href = t.switch.0,
        switch = t.switch.1,
    );

    let s = &status.summary;
    let _ = write!(
        h,
        "<div class=\"tiles\" id=\"summary\">\
         <div class=\"tile\">{}<b>{}</b></div><div class=\"tile up\">{}<b>{}</b></div>\
         <div class=\"tile degraded\">{}<b>{}</b></div><div class=\"tile down\">{}<b>{}</b></div>\
         <div class=\"tile unreachable\">{}<b>{}</b></div><div class=\"tile unknown\">{}<b>{}</b></div></div>",
        t.total,
        s.total(),
        t.up,
        s.up,
        t.degraded,
        s.degraded,
        t.down,
        s.down,
        t.unreachable,
        s.unreachable,
        t.unknown,
        s.unknown
    );

    let _ = write!(h, "<h2>{}</h2>", t.incidents);
    if status.incidents.is_empty() {
        let _ = write!(h, "<p class=\"up\">{}</p>", t.no_incidents);
    } else {
        let _ = write!(
            h,
            "<table id=\"incidents\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            t.target, t.area, t.state, t.since, t.cause
        );
        for i in &status.incidents {
            let reasons: Vec<&str> = i
                .reasons
                .iter()
                .map(|r| reason_words(r, t.language))
                .collect();
            let mut cause = esc(&reasons.join(", "));
            if i.affected > 0 {
                let _ = write!(
                    cause,
                    " — <b>{}</b>",
                    t.affects.replace("{}", &i.affected.to_string())
                );
            }
            if !i.root_causes.is_empty() {
                let _ = write!(
                    cause,
                    " <span class=\"muted\">({} {})</span>",
                    t.behind,
                    esc(&i.root_causes.join(", "))
                );
            }
            if !i.uplinks_down.is_empty() {
                let _ = write!(
                    cause,
                    " <span class=\"muted\">({} {})</span>",
                    t.uplink_down,
                    esc(&i.uplinks_down.join(", "))
                );
            }
            let _ = write!(
                h,
                "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(i.name.as_deref().unwrap_or(&i.target)),
                esc(&i.target),
                esc(&i.area_name),
                badge(t, i.state),
                when_unix(t, i.since, now),
                cause
            );
        }
        h.push_str("</table>");
    }

    render_alerts(&mut h, t, alerts, now);

    if !status.systems.is_empty() {
        let _ = write!(
            h,
            "<h2>{}</h2><div class=\"tiles\" id=\"systems\">",
            t.systems
        );
        for sys in &status.systems {
            let _ = write!(
                h,
                "<div class=\"tile\"><span class=\"{}\">●</span> {}{}</div>",
                sys.state.as_str(),
                esc(&sys.name),
                counts(&sys.targets)
            );
        }
        h.push_str("</div>");
    }

    let _ = write!(h, "<h2>{}</h2><div class=\"tree\" id=\"areas\">", t.areas);
    for a in &status.areas {
        let _ = write!(
            h,
            "<div style=\"padding-left:{}em\"><span class=\"{}\">●</span> {} <span class=\"muted\">{}</span>{}</div>",
            a.depth * 2,
            a.state.as_str(),
            esc(&a.name),
            esc(&a.code),
            counts(&a.targets)
        );
    }
    h.push_str("</div>");

    let _ = write!(
        h,
        "<h2>{}</h2><table id=\"targets\"><tr><th>{}</th><th class=\"hide-narrow\">{}</th><th>{}</th><th>{}</th></tr>",
        t.targets, t.target, t.area, t.state, t.checks
    );
    // Problems first, so a phone screen shows them without scrolling the healthy ones.
    let mut order: Vec<_> = status.targets.iter().collect();
    order.sort_by_key(|x| match x.state {
        TargetState::Down => 0,
        TargetState::Unreachable => 1,
        TargetState::Degraded => 2,
        TargetState::Unknown => 3,
        TargetState::Up => 4,
    });
    for target in order.iter().take(MAX_TARGET_ROWS) {
        let mut checks = String::new();
        for c in &target.checks {
            let (mark, class) = match c.success {
                Some(true) => ("✓", "up"),
                Some(false) => ("✗", "down"),
                None => ("…", "unknown"),
            };
            let _ = write!(
                checks,
                "<span class=\"{class}\">{mark}</span> {}",
                esc(&c.name)
            );
            if let Some(reason) = c.reason {
                let _ = write!(checks, " ({})", reason_words(reason, t.language));
            }
            if let Some(latency) = c.latency_seconds {
                let _ = write!(checks, " <span class=\"muted\">{}</span>", millis(latency));
            }
            if let Some(loss) = c.loss_ratio.filter(|l| *l > 0.0) {
                let _ = write!(
                    checks,
                    " <span class=\"muted\">{} {:.0} %</span>",
                    t.loss,
                    loss * 100.0
                );
            }
            if let Some(note) = &c.note {
                let _ = write!(checks, " <span class=\"muted\">— {}</span>", esc(note));
            }
            checks.push_str("<br>");
        }
        let _ = write!(
            h,
            "<tr><td>{}<br><span class=\"muted\">{}</span></td><td class=\"hide-narrow\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(target.name.as_deref().unwrap_or(&target.id)),
            esc(&target.id),
            esc(&target.area),
            badge(t, target.state),
            checks
        );
    }
    h.push_str("</table>");
    if order.len() > MAX_TARGET_ROWS {
        let _ = write!(
            h,
            "<p class=\"muted\">{} — <a href=\"/api/v1/status\">/api/v1/status</a></p>",
            t.more
                .replace("{}", &(order.len() - MAX_TARGET_ROWS).to_string())
        );
    }
    let _ = write!(
        h,
        "<p class=\"muted\">{} {} · <a href=\"{m}\">{m}</a> · <a href=\"/api/v1/status\">/api/v1/status</a> · \
         <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p></main></body></html>",
        t.updated,
        (t.ago)(0.0),
        m = esc(telemetry_path),
    );
    h
}

/// Alerts that are not pending, root causes first: what was sent, what was folded into a
/// root cause, what waits out a maintenance window.
fn render_alerts(h: &mut String, t: &Texts, alerts: &AlertsSnapshot, now: f64) {
    let mut shown: Vec<_> = alerts
        .alerts
        .iter()
        .filter(|a| a.state != "pending")
        .collect();
    if shown.is_empty() {
        return;
    }
    shown.sort_by_key(|a| (a.state != "firing", std::cmp::Reverse(a.affected_targets)));
    let _ = write!(
        h,
        "<h2>{}</h2><table id=\"alerts\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t.alerts, t.target, t.state, t.since, t.cause
    );
    for a in shown {
        let state = t
            .alert_states
            .iter()
            .find(|(key, _)| *key == a.state)
            .map_or(a.state, |(_, text)| text);
        let mut detail = esc(&crate::model::text::alert_words(
            a.alertname,
            a.value,
            t.language,
        ));
        if let Some(note) = &a.note {
            let _ = write!(
                detail,
                " <span class=\"muted\">({})</span>",
                esc(&crate::model::text::note_words(note, t.language))
            );
        }
        if a.flapping {
            let _ = write!(detail, " ({})", t.flapping);
        }
        if a.affected_targets > 0 {
            let _ = write!(
                detail,
                " — <b>{}</b>: {}",
                t.affects.replace("{}", &a.affected_targets.to_string()),
                esc(&a.affected_areas.join(", "))
            );
        }
        if !a.root_cause.is_empty() {
            let _ = write!(
                detail,
                " <span class=\"muted\">({} {})</span>",
                t.behind,
                esc(&a.root_cause.join(", "))
            );
        }
        if let Some(window) = &a.maintenance {
            let _ = write!(detail, " <span class=\"muted\">({})</span>", esc(window));
        }
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.target),
            esc(&a.check),
            state,
            a.since.as_deref().map(|since| when(t, since, now)).unwrap_or_default(),
            detail,
            class = esc(a.state),
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(esc("Xã Bảo Yên"), "Xã Bảo Yên");
    }

    #[test]
    fn alerts_show_their_root_cause_and_reach() {
        use crate::alert::AlertView;
        let view = |target: &str, state: &'static str| AlertView {
            target: target.into(),
            check: "icmp".into(),
            alertname: "IocwatchTargetDown",
            severity: crate::model::Severity::Critical,
            state,
            flapping: false,
            recovering: false,
            since: Some("2026-12-01T21:19:36Z".into()),
            value: None,
            note: None,
            root_cause: Vec::new(),
            affected_targets: 0,
            affected_areas: Vec::new(),
            affected_systems: Vec::new(),
            maintenance: None,
            notified: state == "firing",
            incident: Some("a1b2-1".into()),
        };
        let mut commune = view("ubnd-02947", "suppressed");
        commune.root_cause = vec!["gw-bao-yen".into()];
        let mut gateway = view("gw-bao-yen", "firing");
        gateway.affected_targets = 1;
        gateway.affected_areas = vec!["Xã Bảo Yên".into()];
        let alerts = AlertsSnapshot {
            alerts: vec![commune, gateway, view("x", "pending")],
            windows: Vec::new(),
        };
        let mut h = String::new();
        // 2026-12-01T21:19:36Z is 04:19 on 2 December in Vietnam; "now" is 5 minutes later.
        let now = 1_796_159_976.0 + 300.0;
        render_alerts(&mut h, &VI, &alerts, now);
        let gw = h.find("<td>gw-bao-yen<br>").expect("gateway row");
        let c = h.find("<td>ubnd-02947<br>").expect("commune row");
        assert!(gw < c, "the root cause comes first");
        assert!(
            h.contains("Mất kết nối — <b>ảnh hưởng 1 đối tượng</b>: Xã Bảo Yên"),
            "{h}"
        );
        assert!(h.contains("Đã gộp vào nguyên nhân gốc"));
        assert!(h.contains("(do sự cố tại gw-bao-yen)"));
        assert!(!h.contains(">x<"), "pending alerts are not shown");
        assert!(
            h.contains(
                "<span title=\"02/12/2026 04:19:36 (UTC+07:00)\">04:19 hôm nay</span>\
                 <br><span class=\"muted\">đã kéo dài 5 phút</span>"
            ),
            "Vietnam time, how long it has lasted, the full time on hover: {h}"
        );
        assert!(!h.contains("2026-12-01T21:19:36Z"), "no raw UTC");
    }

    #[test]
    fn times_read_in_vietnam_time() {
        let now = 1_796_159_976.0; // 2026-12-02 04:19:36 in Vietnam
        let yesterday = when(&EN, "2026-12-01T03:00:00Z", now);
        assert!(yesterday.contains(">10:00 yesterday<"), "{yesterday}");
        let older = when(&VI, "2026-11-28T02:30:00Z", now);
        assert!(
            older.contains(">28/11 09:30<") && older.contains("đã kéo dài 3 ngày 18 giờ"),
            "{older}"
        );
    }

    #[test]
    fn relative_times() {
        assert_eq!(ago_vi(30.0), "30 giây trước");
        assert_eq!(ago_vi(600.0), "10 phút trước");
        assert_eq!(ago_en(7200.0), "2 h ago");
        assert_eq!(lasting_vi(3900.0), "đã kéo dài 1 giờ 05 phút");
        assert_eq!(lasting_en(45.0), "for 45 s");
        assert_eq!(lasting_en(2.0 * 86_400.0 + 7200.0), "for 2 d 2 h");
        assert_eq!(
            reason_words("refused", crate::model::Language::Vi),
            "máy chủ từ chối kết nối"
        );
        assert_eq!(
            reason_words("grade C", crate::model::Language::En),
            "grade C"
        );
    }
}
