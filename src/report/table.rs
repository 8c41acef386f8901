//! The report as a table: Markdown for people, CSV for programs (plain numbers, seconds and
//! milliseconds, a dot for decimals, whatever the language).

use std::fmt::Write as _;

use super::{Report, Unit, Words};

/// The headings of the figures, in order, as [`formatted`] and the sheets use them.
pub(super) fn headings(words: &Words) -> [&'static str; 12] {
    [
        words.rank,
        words.code,
        words.unit,
        words.availability,
        words.availability_with_maintenance,
        words.incidents,
        words.downtime,
        words.longest,
        words.mttr,
        words.latency_mean,
        words.latency_p95,
        words.targets,
    ]
}

/// A unit's figures as people read them.
pub(super) fn formatted(unit: &Unit, words: &Words) -> [String; 12] {
    let f = &unit.figures;
    [
        format!("{}/{}", unit.rank, unit.of),
        unit.code.clone(),
        unit.name.clone(),
        words.percent(f.availability()),
        words.percent(f.availability_with_maintenance()),
        f.incidents.to_string(),
        words.duration(f.downtime_ms()),
        words.duration(f.longest_ms),
        f.mttr_ms()
            .map_or_else(|| "–".into(), |ms| words.duration(ms)),
        words.millis(f.latency_mean()),
        words.millis(f.latency_p95()),
        f.targets.to_string(),
    ]
}

pub(super) fn markdown(report: &Report, words: &Words) -> String {
    let r = &report.request;
    let grouping = report.asked();
    let mut out = String::new();
    let _ = writeln!(out, "# {} — {}\n", words.title, words.grouping(grouping.by));
    let _ = writeln!(
        out,
        "{}: {}. {}: {}.\n",
        words.period,
        words.period_text(r.from, r.to, r.time_zone),
        words.made,
        words.time(r.now, r.time_zone)
    );
    let heads = headings(words);
    let _ = writeln!(out, "| {} |", heads.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(heads.len()));
    for unit in &grouping.units {
        let mut cells = formatted(unit, words).map(|c| c.replace('|', "\\|"));
        if unit.depth > 0 {
            cells[2] = format!("{}{}", "· ".repeat(unit.depth), cells[2]);
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "\n{}", words.notes);
    out
}

pub(super) fn csv(report: &Report, words: &Words) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let vi = words.language == crate::model::Language::Vi;
    let (s, ms) = if vi { ("giây", "ms") } else { ("s", "ms") };
    let header = [
        words.rank.to_owned(),
        format!("{} /", words.rank),
        words.code.to_owned(),
        words.unit.to_owned(),
        if vi { "Cấp".into() } else { "Depth".into() },
        format!("{} %", words.availability),
        format!("{} %", words.availability_with_maintenance),
        words.incidents.to_owned(),
        format!("{} ({s})", words.downtime),
        format!("{} ({s})", words.longest),
        format!("{} ({s})", words.mttr),
        format!("{} ({ms})", words.latency_mean),
        format!("{} ({ms})", words.latency_p95),
        words.targets.to_owned(),
        words.rounds.to_owned(),
    ];
    let number = |v: Option<f64>, scale: f64, places: usize| {
        v.map_or_else(String::new, |v| format!("{:.*}", places, v * scale))
    };
    // Writing to a Vec cannot fail; a record that somehow does is left out.
    let _ = out.write_record(&header);
    for unit in &report.asked().units {
        let f = &unit.figures;
        let _ = out.write_record([
            unit.rank.to_string(),
            unit.of.to_string(),
            unit.code.clone(),
            unit.name.clone(),
            unit.depth.to_string(),
            number(f.availability(), 100.0, 4),
            number(f.availability_with_maintenance(), 100.0, 4),
            f.incidents.to_string(),
            (f.downtime_ms() / 1000).to_string(),
            (f.longest_ms / 1000).to_string(),
            f.mttr_ms()
                .map_or_else(String::new, |v| (v / 1000).to_string()),
            number(f.latency_mean(), 1000.0, 3),
            number(f.latency_p95(), 1000.0, 3),
            f.targets.to_string(),
            f.hours.rounds.to_string(),
        ]);
    }
    out.into_inner().unwrap_or_default()
}
