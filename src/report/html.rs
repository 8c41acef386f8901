//! The report as one HTML page that prints on A4: a table and two plain inline SVG charts
//! (availability per unit, incidents per week). No script, no outside file.

use std::fmt::Write as _;

use html_escape::encode_text as esc;

use super::table::{formatted, headings};
use super::{By, Report, Unit, Words};

const STYLE: &str = "@page{size:A4 portrait;margin:14mm 12mm}\
body{font:10pt/1.35 'Noto Sans','DejaVu Sans',Arial,sans-serif;color:#111;margin:0 auto;max-width:190mm}\
h1{font-size:15pt;margin:0 0 2mm}h2{font-size:12pt;margin:6mm 0 2mm}\
p.meta{margin:0 0 4mm;color:#333}\
table{border-collapse:collapse;width:100%;font-size:8pt}\
th,td{border:0.3mm solid #999;padding:1mm 1.4mm;text-align:right;vertical-align:top}\
th{background:#e8eef6}td{white-space:nowrap}td.name,th.name{text-align:left}\
tr.d0 td{font-weight:bold;background:#f4f4f4}\
thead{display:table-header-group}tr{page-break-inside:avoid}\
svg{display:block;margin:2mm 0}svg text{font-size:8px;font-family:inherit}\
p.notes{font-size:8pt;color:#444}";

pub(super) fn render(report: &Report, words: &Words) -> String {
    let r = &report.request;
    let grouping = report.asked();
    let lang = match words.language {
        crate::model::Language::Vi => "vi",
        crate::model::Language::En => "en",
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{} — {}</title><style>{STYLE}</style></head><body>",
        esc(words.title),
        esc(&words.period_text(r.from, r.to, r.time_zone))
    );
    let _ = write!(
        out,
        "<h1>{} — {}</h1><p class=\"meta\">{}: {}. {}: {}.</p>",
        esc(words.title),
        esc(words.grouping(grouping.by)),
        esc(words.period),
        esc(&words.period_text(r.from, r.to, r.time_zone)),
        esc(words.made),
        esc(&words.time(r.now, r.time_zone)),
    );
    let charted: Vec<&Unit> = match grouping.by {
        // The level with the most units (the communes, as a rule), which is what the
        // committee ranks; the deeper one on a tie.
        By::Area => {
            let mut counts = std::collections::BTreeMap::<usize, usize>::new();
            for unit in &grouping.units {
                *counts.entry(unit.depth).or_default() += 1;
            }
            let depth = counts
                .iter()
                .max_by_key(|(depth, n)| (**n, **depth))
                .map_or(0, |(depth, _)| *depth);
            grouping.units.iter().filter(|u| u.depth == depth).collect()
        }
        _ => grouping.units.iter().collect(),
    };
    let _ = write!(out, "<h2>{}</h2>", esc(words.availability));
    out.push_str(&availability_chart(&charted, words));
    let _ = write!(out, "<h2>{}</h2>", esc(words.weekly));
    out.push_str(&weekly_chart(&report.weekly_incidents, words));
    let _ = write!(
        out,
        "<h2>{}</h2><table><thead><tr>",
        esc(words.grouping(grouping.by))
    );
    for (i, heading) in headings(words).iter().enumerate() {
        let class = if i == 2 { " class=\"name\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", esc(heading));
    }
    out.push_str("</tr></thead><tbody>");
    for unit in &grouping.units {
        let _ = write!(out, "<tr class=\"d{}\">", unit.depth.min(3));
        for (i, cell) in formatted(unit, words).iter().enumerate() {
            if i == 2 {
                let indent = unit.depth as f64 * 3.0;
                let _ = write!(
                    out,
                    "<td class=\"name\" style=\"padding-left:{indent}mm\">{}</td>",
                    esc(cell)
                );
            } else {
                let _ = write!(out, "<td>{}</td>", esc(cell));
            }
        }
        out.push_str("</tr>");
    }
    let _ = write!(
        out,
        "</tbody></table><p class=\"notes\">{}</p></body></html>",
        esc(words.notes)
    );
    out
}

/// Horizontal bars, one per unit (at most 40, best first), the axis from the lowest
/// availability shown (rounded down to a percent, at most 99 %) to 100 %.
fn availability_chart(units: &[&Unit], words: &Words) -> String {
    let shown: Vec<(&Unit, f64)> = units
        .iter()
        .filter_map(|u| u.figures.availability().map(|a| (*u, a)))
        .take(40)
        .collect();
    if shown.is_empty() {
        return format!("<p>{}</p>", esc(words.no_data));
    }
    let lowest = shown.iter().map(|(_, a)| *a).fold(1.0, f64::min);
    let floor = ((lowest * 100.0).floor() / 100.0).min(0.99);
    let (label_w, bar_w, row_h) = (150.0, 480.0, 14.0);
    let height = row_h * shown.len() as f64 + 16.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 700 {height}\" role=\"img\" aria-label=\"{}\">",
        esc(words.availability)
    );
    for (i, (unit, a)) in shown.iter().enumerate() {
        let y = i as f64 * row_h;
        let w = ((a - floor) / (1.0 - floor)).clamp(0.0, 1.0) * bar_w;
        let colour = match a {
            a if *a >= 0.999 => "#2e7d32",
            a if *a >= 0.99 => "#f9a825",
            _ => "#c62828",
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            label_w - 4.0,
            y + 10.0,
            esc(&unit.name),
            y + 2.0,
            row_h - 4.0,
            label_w + w + 4.0,
            y + 10.0,
            esc(&words.percent(Some(*a)))
        );
    }
    let axis_y = row_h * shown.len() as f64 + 10.0;
    let _ = write!(
        svg,
        "<text x=\"{label_w}\" y=\"{axis_y}\">{}</text><text x=\"{}\" y=\"{axis_y}\" text-anchor=\"end\">100 %</text></svg>",
        esc(&words.percent(Some(floor))),
        label_w + bar_w
    );
    svg
}

/// Vertical bars, one per week.
fn weekly_chart(weeks: &[(chrono::NaiveDate, u32)], words: &Words) -> String {
    if weeks.is_empty() {
        return format!("<p>{}</p>", esc(words.no_data));
    }
    let most = weeks.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = (660.0 / weeks.len() as f64).min(60.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 700 140\" role=\"img\" aria-label=\"{}\">",
        esc(words.weekly)
    );
    for (i, (week, n)) in weeks.iter().enumerate() {
        let h = f64::from(*n) / f64::from(most) * 100.0;
        let x = 30.0 + i as f64 * slot;
        let day = match words.language {
            crate::model::Language::Vi => week.format("%d/%m").to_string(),
            crate::model::Language::En => week.format("%m-%d").to_string(),
        };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1565c0\"><title>{} {}: {n}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text><text x=\"{:.1}\" y=\"135\" text-anchor=\"middle\">{day}</text>",
            115.0 - h,
            slot * 0.7,
            esc(words.week_of),
            day,
            x + slot * 0.35,
            112.0 - h,
            x + slot * 0.35,
        );
    }
    svg.push_str("</svg>");
    svg
}
