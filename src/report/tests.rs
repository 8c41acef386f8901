use super::*;
use crate::model::hourly::CheckPlace;
use crate::store::IncidentSpan;

const ZONE: Tz = crate::model::DEFAULT_TIME_ZONE;
const HOUR: i64 = 3_600_000;

fn place(target: &str, areas: &[(&str, &str)], owner: Option<&str>) -> CheckPlace {
    CheckPlace {
        check_key: format!("{target}/icmp"),
        target: target.into(),
        target_name: None,
        kind: "icmp".into(),
        areas: areas
            .iter()
            .map(|(c, n)| ((*c).into(), (*n).into()))
            .collect(),
        system: None,
        owner: owner.map(Into::into),
    }
}

/// `hours` hours of one-minute rounds, `down` of them failed.
fn stats(hours: i64, down_minutes: u32) -> HourStats {
    let mut s = HourStats::default();
    for minute in 0..hours * 60 {
        s.round(60_000, minute < i64::from(down_minutes), false, Some(0.002));
    }
    s
}

#[test]
fn days_are_whole_local_days_and_to_is_inclusive() {
    let (from, to) = parse_period("2026-10-01", "2026-12-31", ZONE).expect("period");
    // 2026-10-01 00:00 +07 is 2026-09-30 17:00 UTC.
    assert_eq!(from, 1_790_787_600_000);
    assert_eq!((to - from) / 86_400_000, 92);
    let (a, b) =
        parse_period("2026-10-01T00:00:00Z", "2026-10-01T08:00:00+07:00", ZONE).expect("rfc3339");
    assert_eq!(b - a, HOUR);
    let error = parse_period("2026-10-01", "2026-09-30", ZONE).expect_err("empty");
    assert!(error.to_string().contains("the period is empty"), "{error}");
    let error = parse_period("01/10/2026", "2026-10-02", ZONE).expect_err("not a date");
    assert!(error.to_string().contains("expected YYYY-MM-DD"), "{error}");
}

#[test]
fn areas_roll_up_and_rank_within_their_level() {
    let province = ("15", "Lào Cai");
    let group = ("G1", "Bảo Yên cũ");
    let history = History {
        checks: vec![
            (
                place("a", &[province, group, ("A", "Xã A")], Some("VNPT")),
                stats(24, 60),
            ),
            (
                place("b", &[province, group, ("B", "Xã B")], Some("VNPT")),
                stats(24, 0),
            ),
            (
                place("c", &[province, ("G2", "Văn Bàn cũ"), ("C", "Xã C")], None),
                stats(24, 6),
            ),
        ],
        incidents: vec![IncidentSpan {
            target: "a".into(),
            alertname: "TargetDown".into(),
            started_at: 10 * HOUR,
            ended_at: Some(11 * HOUR),
            maintenance: None,
        }],
    };
    let request = Request {
        from: 0,
        to: 24 * HOUR,
        by: By::Area,
        area: None,
        language: Language::Vi,
        time_zone: ZONE,
        now: 24 * HOUR,
    };
    let report = build(&history, &request, &By::ALL).expect("report");
    let rows: Vec<(usize, &str, usize, u32)> = report
        .asked()
        .units
        .iter()
        .map(|u| (u.depth, u.code.as_str(), u.rank, u.figures.incidents))
        .collect();
    assert_eq!(
        rows,
        [
            (0, "15", 1, 1),
            (1, "G2", 1, 0),
            (1, "G1", 2, 1),
            (2, "B", 1, 0),
            (2, "C", 2, 0),
            (2, "A", 3, 1)
        ]
    );
    let g1 = &report.asked().units[2].figures;
    // 60 of 2,880 minutes down.
    assert!((g1.availability().expect("data") - (1.0 - 60.0 / 2880.0)).abs() < 1e-12);
    assert_eq!(
        (g1.targets, g1.longest_ms, g1.mttr_ms()),
        (2, HOUR, Some(HOUR))
    );
    let owners = &report.groupings[2];
    assert_eq!(owners.by, By::Owner);
    assert_eq!(owners.units[0].name, "(chưa rõ đơn vị quản lý)");
    assert_eq!(owners.units[1].name, "VNPT");
    // Scoped to one group: it is the top row, and the other group's commune is gone.
    let scoped = build(
        &history,
        &Request {
            area: Some("G1".into()),
            ..request.clone()
        },
        &[By::Area],
    )
    .expect("scoped");
    let codes: Vec<&str> = scoped
        .asked()
        .units
        .iter()
        .map(|u| u.code.as_str())
        .collect();
    assert_eq!(codes, ["G1", "B", "A"]);
    let unknown = build(
        &history,
        &Request {
            area: Some("99".into()),
            ..request
        },
        &By::ALL,
    );
    assert!(matches!(unknown, Err(ReportError::UnknownArea(_))));
}
