//! `iocwatch report` against a history the test writes into a real database through the
//! same writes the agent's journal commits: hourly rounds, incidents (one spanning the start
//! of the period, one open at its end, one in a maintenance window) and figures checked
//! against availability computed by hand. The XLSX is read back with calamine; the HTML is
//! printed to PDF by headless Chromium and its text read with pdftotext.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use iocwatch::model::hourly::{CheckPlace, HourDelta, HourStats};
use iocwatch::model::record::{Firing, IncidentUpdate};
use iocwatch::model::{AlertName, Severity, Write};
use iocwatch::store::Store;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// 2026-10-01 00:00 in Vietnam (UTC+7), the period's first moment.
const FROM: i64 = 1_790_787_600_000;
/// 2026-10-08 00:00 in Vietnam: `--to 2026-10-07` takes the whole of the 7th.
const TO: i64 = FROM + 7 * 24 * HOUR;

fn place(
    target: &str,
    areas: &[(&str, &str)],
    system: Option<&str>,
    owner: Option<&str>,
) -> Arc<CheckPlace> {
    Arc::new(CheckPlace {
        check_key: format!("{target}/icmp"),
        target: target.into(),
        target_name: None,
        kind: "icmp".into(),
        areas: areas
            .iter()
            .map(|(c, n)| ((*c).into(), (*n).into()))
            .collect(),
        system: system.map(Into::into),
        owner: owner.map(Into::into),
    })
}

/// One hour of one-minute rounds starting at `hour` (ms); `failed(minute)` says which failed
/// and `maintenance` whether the hour lies in a window.
fn hour(
    place: &Arc<CheckPlace>,
    hour: i64,
    maintenance: bool,
    failed: impl Fn(i64) -> bool,
) -> HourDelta {
    let mut stats = HourStats::default();
    for minute in 0..60 {
        let down = failed(hour + minute * MINUTE);
        stats.round(MINUTE, down, maintenance, (!down).then_some(0.002));
    }
    HourDelta {
        place: Arc::clone(place),
        hour: hour / 1000,
        stats,
    }
}

fn incident(target: &str, uid: &str, start: i64) -> Write {
    Write::Fire(Firing {
        key: format!("{target}/icmp/TargetDown"),
        incident: uid.into(),
        target: target.into(),
        alertname: AlertName::TargetDown,
        severity: Severity::Critical,
        area: "15".into(),
        started_at: start,
        flapping: false,
        labels: "{}".into(),
    })
}

fn resolve(target: &str, end: i64) -> Write {
    Write::Resolve {
        key: format!("{target}/icmp/TargetDown"),
        resolved_at: end,
        annotations: "{}".into(),
        queued: vec![],
    }
}

/// The history: a day before the period and its seven days.
async fn history(dir: &Path) {
    let store = Store::open(dir).await.expect("open the database");
    let province = ("15", "Lào Cai");
    let group = ("G1", "Bảo Yên cũ");
    let gw = place("gw", &[province], Some("Mạng WAN"), Some("VNPT"));
    let xa_a = place(
        "xa-a",
        &[province, group, ("02947", "Xã Bảo Yên")],
        None,
        Some("UBND xã Bảo Yên"),
    );
    let xa_b = place(
        "xa-b",
        &[province, group, ("02950", "Xã Nghĩa Đô")],
        None,
        None,
    );
    // gw: down from 23:00 on the 30th to 00:30 on the 1st (30 minutes inside the period).
    let gw_down = (FROM - HOUR, FROM + 30 * MINUTE);
    // xa-a: a window 02:00–04:00 on the 4th, down through its first hour (not counted), and
    // down 10:00–10:45 on the 5th.
    let window = (
        FROM + 3 * 24 * HOUR + 2 * HOUR,
        FROM + 3 * 24 * HOUR + 4 * HOUR,
    );
    let xa_a_down = (
        FROM + 4 * 24 * HOUR + 10 * HOUR,
        FROM + 4 * 24 * HOUR + 10 * HOUR + 45 * MINUTE,
    );
    // xa-b: down from 23:20 on the 7th, still down when the report is made.
    let xa_b_down = FROM + 6 * 24 * HOUR + 23 * HOUR + 20 * MINUTE;
    let mut deltas = Vec::new();
    let mut start = FROM - 24 * HOUR;
    while start < TO {
        deltas.push(hour(&gw, start, false, |t| {
            (gw_down.0..gw_down.1).contains(&t)
        }));
        let in_window = (window.0..window.1).contains(&start);
        deltas.push(hour(&xa_a, start, in_window, |t| {
            (window.0..window.0 + HOUR).contains(&t) || (xa_a_down.0..xa_a_down.1).contains(&t)
        }));
        // Before the period xa-b was down all day: none of it may count.
        deltas.push(hour(&xa_b, start, false, |t| t < FROM || t >= xa_b_down));
        start += HOUR;
    }
    // Committed in pieces, as the journal does minute by minute.
    for chunk in deltas.chunks(50) {
        store
            .commit(vec![Arc::new(vec![Write::Hourly(chunk.to_vec())])])
            .await
            .expect("hourly");
    }
    let in_window = IncidentUpdate {
        maintenance: Some("fibre".into()),
        ..IncidentUpdate::default()
    };
    let writes = vec![
        incident("xa-b", "t-1", FROM - 24 * HOUR),
        resolve("xa-b", FROM),
        incident("gw", "t-2", gw_down.0),
        resolve("gw", gw_down.1),
        incident("xa-a", "t-3", window.0),
        Write::Update {
            key: "xa-a/icmp/TargetDown".into(),
            annotations: "{}".into(),
            update: in_window,
        },
        resolve("xa-a", window.0 + HOUR),
        incident("xa-a", "t-4", xa_a_down.0),
        resolve("xa-a", xa_a_down.1),
        incident("xa-b", "t-5", xa_b_down),
    ];
    store
        .commit(vec![Arc::new(writes)])
        .await
        .expect("incidents");
}

fn iocwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(args)
        .output()
        .expect("run iocwatch")
}

fn report(data: &Path, extra: &[&str]) -> Vec<u8> {
    let storage = data.to_string_lossy();
    let mut args = vec![
        "report",
        "--storage.path",
        &storage,
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-07",
    ];
    args.extend_from_slice(extra);
    let out = iocwatch(&args);
    assert!(
        out.status.success(),
        "report {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Availability by hand: 1 − down ÷ (observed − maintenance), in percent to 4 places.
fn by_hand(down_minutes: f64, observed_hours: f64, maintenance_hours: f64) -> String {
    format!(
        "{:.4}",
        100.0 * (1.0 - down_minutes / ((observed_hours - maintenance_hours) * 60.0))
    )
}

#[tokio::test]
async fn figures_match_the_hand_computed_ones() {
    let dir = tempfile::tempdir().expect("dir");
    history(dir.path()).await;
    let csv = report(dir.path(), &["--format", "csv", "--lang", "en"]);
    let mut rows = csv::Reader::from_reader(csv.as_slice());
    let header = rows.headers().expect("header").clone();
    assert_eq!(&header[5], "Availability (maintenance excluded) %");
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("row")).collect();
    let row = |code: &str| {
        rows.iter()
            .find(|r| &r[2] == code)
            .unwrap_or_else(|| panic!("no row {code}: {rows:?}"))
    };
    let week = 7.0 * 24.0;
    // Columns: rank, of, code, name, depth, availability, with maintenance, incidents,
    // downtime s, longest s, time to recover s, mean ms, p95 ms, targets, rounds.
    let gw_only = &rows[0];
    assert_eq!(&gw_only[2], "15", "the province comes first");
    // The province: gw 30 min, xa-a 45 min, xa-b 40 min down; xa-a 2 h in maintenance.
    assert_eq!(&row("15")[5], by_hand(30.0 + 45.0 + 40.0, 3.0 * week, 2.0));
    assert_eq!(
        &row("15")[7],
        "3",
        "the maintenance incident and the one before are left out"
    );
    assert_eq!(&row("15")[8], (115 * 60).to_string());
    assert_eq!(
        &row("15")[9],
        (45 * 60).to_string(),
        "longest, clipped to the period"
    );
    // gw's 90 minutes (half before the period) and xa-a's 45.
    assert_eq!(&row("15")[10], (((90 + 45) * 60) / 2).to_string());
    assert_eq!(&row("15")[13], "3");
    assert_eq!(&row("15")[14], (3 * 7 * 24 * 60).to_string());
    // The former district's group: xa-a and xa-b.
    assert_eq!(&row("G1")[5], by_hand(45.0 + 40.0, 2.0 * week, 2.0));
    assert_eq!((&row("G1")[0], &row("G1")[1]), ("1", "1"));
    // xa-a: maintenance left out, then counted (its first hour in the window was down).
    assert_eq!(&row("02947")[5], by_hand(45.0, week, 2.0));
    assert_eq!(
        &row("02947")[6],
        format!("{:.4}", 100.0 * (1.0 - (45.0 + 60.0) / (week * 60.0)))
    );
    assert_eq!((&row("02947")[7], &row("02947")[10]), ("1", "2700"));
    // xa-b: down since 23:20 on the last day, still open; the day before does not count.
    assert_eq!(&row("02950")[5], by_hand(40.0, week, 0.0));
    assert_eq!((&row("02950")[9], &row("02950")[10]), ("2400", ""));
    // Ranked best first among the communes: xa-b (40 min down) above xa-a (45).
    assert_eq!((&row("02950")[0], &row("02947")[0]), ("1", "2"));
    // Latency: every good round took 2 ms.
    let p95: f64 = row("15")[12].parse().expect("p95");
    assert!(
        (p95 / 2.0 - 1.0).abs() < 0.1,
        "p95 {p95} ms within 10 % of 2 ms"
    );
    assert_eq!(&row("15")[11], "2.000");

    // By owner, scoped to the group: the commune without an owner gets a row of its own.
    let csv = report(
        dir.path(),
        &["--format", "csv", "--by", "owner", "--area", "G1"],
    );
    let text = String::from_utf8(csv).expect("utf-8");
    assert!(
        text.contains("(chưa rõ đơn vị quản lý)") && text.contains("UBND xã Bảo Yên"),
        "{text}"
    );
    assert!(!text.contains("VNPT"), "gw is outside G1: {text}");

    // Markdown, Vietnamese by default: readable figures and durations.
    let md = String::from_utf8(report(dir.path(), &[])).expect("utf-8");
    assert!(
        md.contains("# Báo cáo mức độ sẵn sàng — Theo địa bàn"),
        "{md}"
    );
    assert!(md.contains("Kỳ báo cáo: 01/10/2026 – 07/10/2026"), "{md}");
    assert!(
        md.contains("| 1/1 | G1 | · Bảo Yên cũ | 99,576 % |"),
        "{md}"
    );
    assert!(md.contains("| 45 phút |"), "{md}");

    // A bad period and an unknown area: clear errors, nothing written.
    let storage = dir.path().to_string_lossy().into_owned();
    let out = iocwatch(&[
        "report",
        "--storage.path",
        &storage,
        "--from",
        "2026-10-07",
        "--to",
        "2026-10-01",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the period is empty"));
    let out = iocwatch(&[
        "report",
        "--storage.path",
        &storage,
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-07",
        "--area",
        "99",
    ]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown area \"99\""));
    let out = iocwatch(&[
        "report",
        "--storage.path",
        "/nonexistent/iocwatch",
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-07",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database here"));
}

#[tokio::test]
async fn the_workbook_has_a_sheet_per_grouping_that_excel_reads_as_numbers() {
    use calamine::{Data, Reader, Xlsx};
    let dir = tempfile::tempdir().expect("dir");
    history(dir.path()).await;
    let file = dir.path().join("q4.xlsx");
    report(dir.path(), &["-o", &file.to_string_lossy()]);
    let mut book: Xlsx<_> = calamine::open_workbook(&file).expect("a workbook calamine reads");
    assert_eq!(
        book.sheet_names(),
        [
            "Theo địa bàn",
            "Theo hệ thống",
            "Theo đơn vị quản lý",
            "Theo điểm đo"
        ]
    );
    let areas = book.worksheet_range("Theo địa bàn").expect("areas sheet");
    let heading = (0..areas.width())
        .map(|c| {
            areas
                .get_value((3, c as u32))
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>();
    assert_eq!(heading[4], "Sẵn sàng (trừ bảo trì)");
    let row = (4..areas.height() as u32)
        .find(|&r| areas.get_value((r, 2)) == Some(&Data::String("G1".into())))
        .expect("the group's row");
    let Some(Data::Float(availability)) = areas.get_value((row, 4)) else {
        panic!("availability as a number: {:?}", areas.get_value((row, 4)));
    };
    assert!((availability - (1.0 - 85.0 / (2.0 * 7.0 * 24.0 * 60.0 - 120.0))).abs() < 1e-9);
    // Downtime is an Excel duration: a fraction of a day.
    let Some(Data::DateTime(down)) = areas.get_value((row, 7)) else {
        panic!("downtime as a duration: {:?}", areas.get_value((row, 7)));
    };
    assert!(down.is_duration(), "{down:?}");
    assert!(
        (down.as_f64() * 24.0 * 60.0 - 85.0).abs() < 1e-6,
        "{down:?}"
    );
    let targets = book.worksheet_range("Theo điểm đo").expect("targets sheet");
    assert_eq!(
        targets.height(),
        4 + 3,
        "title, period, blank, headings and three targets"
    );
}

#[tokio::test]
async fn the_html_prints_on_a4_with_its_charts() {
    let dir = tempfile::tempdir().expect("dir");
    history(dir.path()).await;
    let html_file = dir.path().join("report.html");
    report(dir.path(), &["-o", &html_file.to_string_lossy()]);
    let html = std::fs::read_to_string(&html_file).expect("html");
    assert!(html.contains("@page{size:A4"), "prints on A4");
    assert_eq!(html.matches("<svg").count(), 2, "two inline charts");
    assert!(!html.contains("<script"), "nothing to run");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    let pdf = artifacts.join("report-q4.pdf");
    let _ = std::fs::remove_file(&pdf);
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html_file.display()))
        .output()
        .expect("chromium must be installed (Debian package chromium); .ci/test.sh installs it");
    let bytes = std::fs::read(&pdf)
        .unwrap_or_else(|e| panic!("no PDF ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(bytes.starts_with(b"%PDF-"));
    let text = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf)
        .arg("-")
        .output()
        .expect(
            "pdftotext must be installed (Debian package poppler-utils); .ci/test.sh installs it",
        );
    let text = String::from_utf8_lossy(&text.stdout);
    for expected in [
        "Báo cáo mức độ sẵn sàng",
        "Kỳ báo cáo: 01/10/2026 – 07/10/2026",
        "Xã Nghĩa Đô",
        "Bảo Yên cũ",
        "99,576 %",
        "Số sự cố theo tuần",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the PDF's text:\n{text}"
        );
    }
    let info = Command::new("pdfinfo").arg(&pdf).output().expect("pdfinfo");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("(A4)") && info.contains("Pages:           1"),
        "{info}"
    );
}

/// The whole path: a running agent counts real rounds, shutdown writes them, a restarted
/// agent serves them at `/api/v1/report`, and its status page links there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_counts_rounds_and_reports_them_after_a_restart() {
    let storage = tempfile::tempdir().expect("storage");
    let closed = common::closed_port();
    let config = format!(
        "defaults: {{interval: 1s, timeout: 800ms}}\n\
         areas: [{{code: \"15\", name: Lào Cai, children: [{{code: \"02947\", name: Xã Bảo Yên}}]}}]\n\
         targets:\n\
         \x20 - {{id: gw, area: \"15\", address: 127.0.0.1, labels: {{owner: VNPT}}, checks: [icmp: {{count: 1}}]}}\n\
         \x20 - {{id: ubnd, area: \"02947\", address: 127.0.0.1, checks: [tcp: {{port: {closed}}}]}}\n"
    );
    let files = [("iocwatch.yaml", config.as_str())];
    let with_storage = |o: &mut iocwatch::Options| o.storage = Some(storage.path().to_path_buf());
    let agent = common::TestAgent::start_with(&files, with_storage).await;
    agent
        .wait_for(
            std::time::Duration::from_secs(20),
            "three failed rounds of ubnd",
            |m| {
                m.value("iocwatch_probe_failures_total", &[("target", "ubnd")])
                    .is_some_and(|n| n >= 3.0)
            },
        )
        .await;
    agent.stop().await;

    let agent = common::TestAgent::start_with(&files, with_storage).await;
    let (status, csv) = agent
        .get("/api/v1/report?format=csv&lang=en&by=target")
        .await;
    assert_eq!(status, 200, "{csv}");
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.expect("row"))
        .collect();
    let row = |id: &str| {
        rows.iter()
            .find(|r| &r[2] == id)
            .unwrap_or_else(|| panic!("{id}: {csv}"))
    };
    // gw answers: 100 %, ranked first; ubnd's port is closed: 0 %, every round down.
    assert_eq!((&row("gw")[0], &row("gw")[5]), ("1", "100.0000"), "{csv}");
    assert_eq!(&row("ubnd")[5], "0.0000", "{csv}");
    let rounds: u32 = row("ubnd")[14].parse().expect("rounds");
    assert!(rounds >= 3, "{csv}");
    assert_eq!(
        row("ubnd")[8].parse::<u32>().expect("downtime"),
        rounds,
        "1 s per round"
    );
    // The command line reads the same database beside the running agent.
    let storage_arg = storage.path().to_string_lossy().into_owned();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .date_naive()
        .to_string();
    let out = iocwatch(&[
        "report",
        "--storage.path",
        &storage_arg,
        "--from",
        &today,
        "--to",
        &today,
        "--by",
        "target",
        "--format",
        "csv",
        "--lang",
        "en",
    ]);
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && cli.contains(",gw,"), "{cli}");
    let (status, html) = agent.get("/api/v1/report").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Báo cáo mức độ sẵn sàng") && html.contains("Xã Bảo Yên"),
        "{html}"
    );
    let (status, body) = agent.get("/api/v1/report?from=01/10/2026").await;
    assert_eq!(status, 400);
    assert!(body.contains("expected YYYY-MM-DD"), "{body}");
    let (_, page) = agent.get("/").await;
    assert!(
        page.contains("<a id=\"report\" href=\"/api/v1/report?lang=vi\">"),
        "{page}"
    );
    agent.stop().await;
}

#[test]
fn an_unknown_grouping_format_or_language_is_refused_with_the_choices() {
    for (flag, value, choices) in [
        ("--by", "district", "area, system, owner, target"),
        ("--format", "pdf", "html, xlsx, csv, md"),
        ("--lang", "fr", "vi, en"),
    ] {
        let out = iocwatch(&[
            "report",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-07",
            flag,
            value,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}"))
                && stderr.contains(&format!("[possible values: {choices}]")),
            "{flag} {value}: {stderr}"
        );
    }
}
