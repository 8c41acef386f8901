//! `iocwatch import`: a system owner's spreadsheet (CSV or XLSX) of sites turned into an
//! owner file. Headings in Vietnamese or English, with or without tone marks; areas by code
//! or by name; every bad row reported with its row and column. The fragment is checked with
//! the whole config (the loader reads it as if included), and nothing is written while any
//! row is wrong.

use std::fmt;
use std::path::Path;

use crate::catalog::AreaTree;
use crate::model::fold_name;

/// The columns a sheet may have, each with the headings that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Area,
    Id,
    Name,
    Address,
    Checks,
    Labels,
    DependsOn,
    System,
}

const HEADINGS: &[(Field, &[&str])] = &[
    (
        Field::Area,
        &["area", "dia ban", "ma dia ban", "don vi hanh chinh", "xa"],
    ),
    (Field::Id, &["id", "ma", "ma diem do"]),
    (Field::Name, &["name", "ten", "ten diem do"]),
    (
        Field::Address,
        &["address", "url", "dia chi", "dia chi ip", "ip"],
    ),
    (Field::Checks, &["checks", "kiem tra", "loai kiem tra"]),
    (Field::Labels, &["labels", "nhan"]),
    (Field::DependsOn, &["depends_on", "depends on", "phu thuoc"]),
    (Field::System, &["system", "he thong"]),
];

/// One problem of the sheet: the row and column as the spreadsheet shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    /// 1-based, the heading row being 1; 0 for the file as a whole.
    pub row: usize,
    /// The column's letter and heading.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, &self.column) {
            (0, _) => f.write_str(&self.message),
            (row, Some(column)) => write!(f, "row {row}, column {column}: {}", self.message),
            (row, None) => write!(f, "row {row}: {}", self.message),
        }
    }
}

/// What the fragment's owner file says about who keeps it.
#[derive(Debug, Clone, Default)]
pub struct Owner {
    pub name: Option<String>,
    pub contact: Option<String>,
}

/// The owner file made from a sheet, checked with the config at `main` as if written to
/// `out`; every error of every row otherwise.
pub fn import(
    sheet: &Path,
    main: &Path,
    out: &Path,
    owner: &Owner,
) -> Result<(String, usize), Vec<ImportError>> {
    let whole = |message: String| {
        vec![ImportError {
            row: 0,
            column: None,
            message,
        }]
    };
    let rows = read_sheet(sheet).map_err(|e| whole(format!("{}: {e}", sheet.display())))?;
    let config = super::load(main).map_err(|errors| {
        whole(format!(
            "the config {} must be valid before importing into it:\n{errors}",
            main.display()
        ))
    })?;
    let Some((heading, body)) = rows.split_first() else {
        return Err(whole(format!("{}: the sheet is empty", sheet.display())));
    };
    let columns = columns(heading)?;
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for (i, cells) in body.iter().enumerate() {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let row = i + 2;
        match target_line(cells, &columns, &config.catalog.areas) {
            Ok(line) => lines.push((row, line)),
            Err(row_errors) => {
                errors.extend(row_errors.into_iter().map(|(field, message)| ImportError {
                    row,
                    column: columns.name(field),
                    message,
                }))
            }
        }
    }
    if lines.is_empty() && errors.is_empty() {
        return Err(whole(format!(
            "{}: no rows below the headings",
            sheet.display()
        )));
    }
    let yaml = fragment(owner, &lines);
    // Checked with the whole config: ids unique across files, systems and dependencies
    // known, addresses valid. A fragment line is a row, so each error finds its row. The
    // rows that passed their own checks are checked so even when others did not, so that
    // one run names every bad row.
    if let Err(found) = super::load_with_file(main, out, &yaml) {
        let head = yaml.lines().take_while(|l| !l.starts_with(ITEM)).count();
        let out_key = super::file_key(out);
        errors.extend(found.0.into_iter().map(|e| {
            let line = usize::try_from(e.line).unwrap_or(0);
            match lines.get(line.wrapping_sub(head + 1)) {
                Some((row, line)) if super::file_key(&e.file) == out_key => ImportError {
                    row: *row,
                    column: line
                        .field_at(
                            usize::try_from(e.column)
                                .unwrap_or(0)
                                .saturating_sub(ITEM.len()),
                        )
                        .and_then(|f| columns.name(f)),
                    message: e.message,
                },
                _ => ImportError {
                    row: 0,
                    column: None,
                    message: e.to_string(),
                },
            }
        }));
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Err(errors);
    }
    Ok((yaml, lines.len()))
}

/// The sheet's rows as text: CSV (UTF-8, with or without Excel's byte-order mark) or the
/// first sheet of an XLSX workbook.
fn read_sheet(path: &Path) -> Result<Vec<Vec<String>>, String> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(text);
            reader
                .records()
                .map(|r| {
                    r.map(|r| r.iter().map(str::to_owned).collect())
                        .map_err(|e| e.to_string())
                })
                .collect()
        }
        Some("xlsx") => {
            use calamine::Reader;
            let mut book: calamine::Xlsx<_> =
                calamine::open_workbook(path).map_err(|e: calamine::XlsxError| e.to_string())?;
            let range = book
                .worksheet_range_at(0)
                .ok_or("the workbook has no sheet")?
                .map_err(|e| e.to_string())?;
            Ok(range
                .rows()
                .map(|row| row.iter().map(cell_text).collect())
                .collect())
        }
        _ => Err("expected a .csv or .xlsx file".into()),
    }
}

/// A cell as written: a whole number without ".0" (Excel keeps codes as numbers).
fn cell_text(cell: &calamine::Data) -> String {
    match cell {
        calamine::Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        calamine::Data::Empty => String::new(),
        other => other.to_string(),
    }
}

/// Which column holds which field.
struct Columns {
    fields: Vec<(Field, usize, String)>,
}

impl Columns {
    fn index(&self, field: Field) -> Option<usize> {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, i, _)| *i)
    }

    /// "C (Địa chỉ)".
    fn name(&self, field: Field) -> Option<String> {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, i, heading)| format!("{} ({heading})", letter(*i)))
    }
}

fn letter(index: usize) -> String {
    let mut n = index + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn columns(heading: &[String]) -> Result<Columns, Vec<ImportError>> {
    let mut fields = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in heading.iter().enumerate() {
        let folded = fold_name(text).replace('_', " ");
        let found = HEADINGS
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.replace('_', " ") == folded));
        match found {
            Some((field, _)) if fields.iter().any(|(f, _, _)| f == field) => {
                errors.push(ImportError {
                    row: 1,
                    column: Some(format!("{} ({text})", letter(i))),
                    message: "a second column for the same field".into(),
                });
            }
            Some((field, _)) => fields.push((*field, i, text.trim().to_owned())),
            None if text.trim().is_empty() => {}
            None => errors.push(ImportError {
                row: 1,
                column: Some(format!("{} ({text})", letter(i))),
                message: "unknown heading: expected area, id, name, address, checks, labels, depends_on or system (or Địa bàn, Mã, Tên, Địa chỉ, Kiểm tra, Nhãn, Phụ thuộc, Hệ thống)".into(),
            }),
        }
    }
    let columns = Columns { fields };
    for required in [Field::Area, Field::Id, Field::Address] {
        if columns.index(required).is_none() {
            errors.push(ImportError {
                row: 1,
                column: None,
                message: format!(
                    "no {required:?} column (heading {:?})",
                    HEADINGS
                        .iter()
                        .find(|(f, _)| *f == required)
                        .map_or("", |(_, names)| names[0])
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(columns)
    } else {
        Err(errors)
    }
}

/// What begins each target line of the fragment.
const ITEM: &str = "  - ";

/// One row as one line of flow YAML, with where each field's key begins in it, so that a
/// loader error's column finds the field (a value's text cannot mislead it).
struct Line {
    text: String,
    fields: Vec<(usize, Field)>,
}

impl Line {
    fn push(&mut self, field: Field, key: &str, value: &str) {
        self.text
            .push_str(if self.fields.is_empty() { "{" } else { ", " });
        self.fields.push((self.text.len(), field));
        self.text.push_str(key);
        self.text.push_str(": ");
        self.text.push_str(value);
    }

    /// The field whose key or value a (1-based) column falls in.
    fn field_at(&self, column: usize) -> Option<Field> {
        let at = column.saturating_sub(1);
        self.fields
            .iter()
            .take_while(|(start, _)| *start <= at)
            .last()
            .map(|(_, f)| *f)
    }
}

/// A YAML string: JSON's quoting is valid YAML and escapes everything that needs it.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// One row as one line of flow YAML; the row's own errors (field, message) otherwise.
fn target_line(
    cells: &[String],
    columns: &Columns,
    areas: &AreaTree,
) -> Result<Line, Vec<(Field, String)>> {
    let cell = |field: Field| {
        columns
            .index(field)
            .and_then(|i| cells.get(i))
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
    };
    let mut errors = Vec::new();
    let id = cell(Field::Id).unwrap_or_default();
    if id.is_empty() {
        errors.push((Field::Id, "empty: every site needs an id".into()));
    }
    let area = match cell(Field::Area) {
        None => {
            errors.push((Field::Area, "empty: the area's code or name".into()));
            String::new()
        }
        Some(written) => match area_code(written, areas) {
            Ok(code) => code,
            Err(message) => {
                errors.push((Field::Area, message));
                String::new()
            }
        },
    };
    let written_address = cell(Field::Address).unwrap_or_default();
    if written_address.is_empty() {
        errors.push((
            Field::Address,
            "empty: an IP address, a host name or a URL".into(),
        ));
    }
    let url = (written_address.starts_with("http://") || written_address.starts_with("https://"))
        .then_some(written_address);
    let address = match url {
        Some(u) => reqwest::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        None => written_address.to_owned(),
    };
    let checks = match checks(cell(Field::Checks), url) {
        Ok(checks) => checks,
        Err(message) => {
            errors.push((Field::Checks, message));
            String::new()
        }
    };
    let labels = match cell(Field::Labels).map(labels).transpose() {
        Ok(labels) => labels,
        Err(message) => {
            errors.push((Field::Labels, message));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut line = Line {
        text: String::new(),
        fields: Vec::new(),
    };
    line.push(Field::Id, "id", &quoted(id));
    if let Some(name) = cell(Field::Name) {
        line.push(Field::Name, "name", &quoted(name));
    }
    line.push(Field::Area, "area", &quoted(&area));
    line.push(Field::Address, "address", &quoted(&address));
    if let Some(system) = cell(Field::System) {
        line.push(Field::System, "system", &quoted(system));
    }
    if let Some(labels) = labels {
        line.push(Field::Labels, "labels", &labels);
    }
    if let Some(depends) = cell(Field::DependsOn) {
        let ids: Vec<String> = split(depends).map(quoted).collect();
        line.push(
            Field::DependsOn,
            "depends_on",
            &format!("[{}]", ids.join(", ")),
        );
    }
    line.push(Field::Checks, "checks", &format!("[{checks}]"));
    line.text.push('}');
    Ok(line)
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split([';', ',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An area by code, or by name once tone marks and case are set aside; Excel's numbers lose
/// leading zeros, so `2947` finds `02947`.
fn area_code(written: &str, areas: &AreaTree) -> Result<String, String> {
    if areas.find(written).is_some() {
        return Ok(written.to_owned());
    }
    if written.chars().all(|c| c.is_ascii_digit()) {
        for width in [2, 3, 5] {
            let padded = format!("{written:0>width$}");
            if areas.find(&padded).is_some() {
                return Ok(padded);
            }
        }
    }
    match areas.find_by_name(written).as_slice() {
        [one] => Ok(areas.get(*one).code.clone()),
        [] => Err(format!("no area has the code or name {written:?}")),
        many => Err(format!(
            "{written:?} names several areas: {}; write the code",
            many.iter()
                .map(|&a| format!("{} ({})", areas.get(a).code, areas.path(a)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `icmp; tcp:443; http; tls` as flow YAML; ICMP for a host and HTTP for a URL when empty.
fn checks(written: Option<&str>, url: Option<&str>) -> Result<String, String> {
    let Some(written) = written else {
        return Ok(match url {
            Some(u) => format!("http: {{url: {}}}", quoted(u)),
            None => "icmp: {}".into(),
        });
    };
    let mut out = Vec::new();
    for item in split(written) {
        let lower = item.to_ascii_lowercase();
        let (kind, arg) = match lower.split_once(':') {
            Some((k, a)) => (k.trim().to_owned(), Some(a.trim().to_owned())),
            None => (lower.clone(), None),
        };
        let port = |a: &Option<String>| {
            a.as_deref().map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{item:?}: {p:?} is not a port (1–65535)"))
            })
        };
        out.push(match (kind.as_str(), &arg) {
            ("icmp" | "ping", None) => "icmp: {}".to_owned(),
            ("tcp", Some(_)) => format!("tcp: {{port: {}}}", port(&arg).unwrap_or(Ok(0))?),
            ("http" | "https", None) => match url {
                Some(u) => format!("http: {{url: {}}}", quoted(u)),
                None => return Err(format!("{item:?} needs a URL in the address column")),
            },
            ("tls", None) => "tls: {}".to_owned(),
            ("tls", Some(_)) => format!("tls: {{port: {}}}", port(&arg).unwrap_or(Ok(443))?),
            _ => {
                return Err(format!(
                    "unknown check {item:?}: expected icmp, tcp:PORT, http (with a URL), tls or tls:PORT"
                ))
            }
        });
    }
    if out.is_empty() {
        return Err("no check named".into());
    }
    Ok(out.join(", "))
}

/// `role=gateway; uplink=vnpt` as a flow mapping.
fn labels(written: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for pair in split(written) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?}: expected name=value"));
        };
        out.push(format!("{}: {}", quoted(name.trim()), quoted(value.trim())));
    }
    Ok(format!("{{{}}}", out.join(", ")))
}

fn fragment(owner: &Owner, lines: &[(usize, Line)]) -> String {
    let mut yaml = String::from("# Made by `iocwatch import`; one line a row of the sheet.\n");
    if let Some(name) = &owner.name {
        yaml.push_str(&format!("owner: {}\n", quoted(name)));
    }
    if let Some(contact) = &owner.contact {
        yaml.push_str(&format!("contact: {}\n", quoted(contact)));
    }
    yaml.push_str("targets:\n");
    for (_, line) in lines {
        yaml.push_str(ITEM);
        yaml.push_str(&line.text);
        yaml.push('\n');
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_letters_and_checks() {
        assert_eq!(letter(0), "A");
        assert_eq!(letter(26), "AA");
        assert_eq!(
            checks(Some("ICMP; tcp:443; tls"), None).expect("checks"),
            "icmp: {}, tcp: {port: 443}, tls: {}"
        );
        assert_eq!(
            checks(None, Some("https://x.test/")).expect("default"),
            "http: {url: \"https://x.test/\"}"
        );
        assert!(checks(Some("tcp:99999"), None).is_err_and(|e| e.contains("not a port")));
        assert!(checks(Some("http"), None).is_err_and(|e| e.contains("needs a URL")));
        assert_eq!(
            labels("role=gateway; uplink = vnpt").expect("labels"),
            "{\"role\": \"gateway\", \"uplink\": \"vnpt\"}"
        );
        // A name that reads like a key does not mislead the column.
        let mut line = Line {
            text: String::new(),
            fields: Vec::new(),
        };
        line.push(Field::Id, "id", "\"a\"");
        line.push(Field::Name, "name", "\"x, address: y\"");
        line.push(Field::Address, "address", "\"127.0.0.256\"");
        let at = |needle: &str| line.text.find(needle).expect("in the line") + 1;
        assert_eq!(line.field_at(at("x, address")), Some(Field::Name));
        assert_eq!(line.field_at(at("address: y") + 3), Some(Field::Name));
        assert_eq!(line.field_at(at("127.0.0.256")), Some(Field::Address));
        assert_eq!(line.field_at(2), Some(Field::Id));
    }
}
