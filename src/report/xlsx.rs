//! The report as a workbook, one sheet per grouping, because the committee works in Excel:
//! availabilities as percentages, durations as Excel durations, latencies in milliseconds,
//! so that every figure sorts and sums as a number.

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{Report, Words};

/// Rows above the table: title, period, a blank one, then the headings.
pub const HEADING_ROW: u32 = 3;

pub(super) fn render(report: &Report, words: &Words) -> Result<Vec<u8>, XlsxError> {
    let r = &report.request;
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let title = Format::new().set_bold().set_font_size(14);
    let percent = Format::new().set_num_format("0.000%");
    let duration = Format::new().set_num_format("[h]:mm:ss");
    let millis = Format::new().set_num_format("0.00");
    let vi = words.language == crate::model::Language::Vi;
    let headings = [
        words.rank.to_owned(),
        if vi { "Trong số".into() } else { "Of".into() },
        words.code.to_owned(),
        words.unit.to_owned(),
        words.availability.to_owned(),
        words.availability_with_maintenance.to_owned(),
        words.incidents.to_owned(),
        words.downtime.to_owned(),
        words.longest.to_owned(),
        words.mttr.to_owned(),
        format!("{} (ms)", words.latency_mean),
        format!("{} (ms)", words.latency_p95),
        words.targets.to_owned(),
        words.rounds.to_owned(),
    ];
    let day = |ms: i64| ms as f64 / 86_400_000.0;
    for grouping in &report.groupings {
        let sheet = book.add_worksheet();
        sheet.set_name(words.grouping(grouping.by))?;
        sheet.write_string_with_format(
            0,
            0,
            format!("{} — {}", words.title, words.grouping(grouping.by)),
            &title,
        )?;
        sheet.write_string(
            1,
            0,
            format!(
                "{}: {}. {}: {}.",
                words.period,
                words.period_text(r.from, r.to, r.time_zone),
                words.made,
                words.time(r.now, r.time_zone)
            ),
        )?;
        for (col, heading) in (0u16..).zip(&headings) {
            sheet.write_string_with_format(HEADING_ROW, col, heading, &bold)?;
        }
        sheet.set_freeze_panes(HEADING_ROW + 1, 0)?;
        sheet.set_column_width(3, 32)?;
        for col in 4u16..12 {
            sheet.set_column_width(col, 16)?;
        }
        for (row, unit) in (HEADING_ROW + 1..).zip(&grouping.units) {
            let f = &unit.figures;
            let indent = "  ".repeat(unit.depth);
            sheet.write_number(row, 0, unit.rank as f64)?;
            sheet.write_number(row, 1, unit.of as f64)?;
            sheet.write_string(row, 2, &unit.code)?;
            sheet.write_string(row, 3, format!("{indent}{}", unit.name))?;
            if let Some(a) = f.availability() {
                sheet.write_number_with_format(row, 4, a, &percent)?;
            }
            if let Some(a) = f.availability_with_maintenance() {
                sheet.write_number_with_format(row, 5, a, &percent)?;
            }
            sheet.write_number(row, 6, f64::from(f.incidents))?;
            sheet.write_number_with_format(row, 7, day(f.downtime_ms()), &duration)?;
            sheet.write_number_with_format(row, 8, day(f.longest_ms), &duration)?;
            if let Some(ms) = f.mttr_ms() {
                sheet.write_number_with_format(row, 9, day(ms), &duration)?;
            }
            if let Some(s) = f.latency_mean() {
                sheet.write_number_with_format(row, 10, s * 1000.0, &millis)?;
            }
            if let Some(s) = f.latency_p95() {
                sheet.write_number_with_format(row, 11, s * 1000.0, &millis)?;
            }
            sheet.write_number(row, 12, f.targets as f64)?;
            sheet.write_number(row, 13, f64::from(f.hours.rounds))?;
        }
    }
    book.save_to_buffer()
}
