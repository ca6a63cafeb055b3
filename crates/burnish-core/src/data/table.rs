//! Tables of text cells read from CSV, TSV or JSON Lines bytes, and their conversion to a
//! [`ClassificationDataset`] with a chosen label column.
//!
//! Every error names the source, the line (1-based, as an editor shows it) and the column.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ClassificationDataset;
use crate::{Error, Result};

/// A header and rows of cells, all as text, with the line each row started on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Where it came from, for messages.
    pub source_name: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each with exactly `header.len()` cells.
    pub rows: Vec<Vec<String>>,
    /// The 1-based line on which each row starts.
    pub lines: Vec<usize>,
}

/// Which text format a table is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row.
    Tsv,
    /// One JSON object per line; the first object's keys are the columns.
    Jsonl,
}

impl TableFormat {
    /// The format a file name suggests (`.csv`, `.tsv`/`.tab`, `.jsonl`/`.ndjson`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
        let ext = lower.rsplit('.').next()?;
        match ext {
            "csv" => Some(Self::Csv),
            "tsv" | "tab" => Some(Self::Tsv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

fn decode<'a>(source: &str, bytes: &'a [u8]) -> Result<&'a str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::data(
            source,
            format!("line {line}: the file is not UTF-8 text (invalid byte at offset {at}); save it as UTF-8"),
        )
    })
}

impl Table {
    /// Parse `bytes` as `format`.
    ///
    /// # Errors
    /// [`Error::Data`] naming the line for: text that is not UTF-8, an empty file, a header with
    /// an empty or repeated name, a row with the wrong number of cells, an unterminated quote, or
    /// (JSON Lines) a line that is not a JSON object of numbers and strings.
    pub fn parse(source_name: &str, bytes: &[u8], format: TableFormat) -> Result<Self> {
        Self::parse_with(source_name, bytes, format, true)
    }

    /// Like [`Table::parse`]; with `has_header` false, every line is a row and the columns are
    /// named `1`, `2`, ... (so the label column of a headerless file is its number). Gzipped
    /// bytes are unpacked first.
    ///
    /// # Errors
    /// As [`Table::parse`].
    pub fn parse_with(
        source_name: &str,
        bytes: &[u8],
        format: TableFormat,
        has_header: bool,
    ) -> Result<Self> {
        let bytes = super::idx::gunzip_if_needed(source_name, bytes)?;
        let text = decode(source_name, &bytes)?;
        let mut records = match format {
            TableFormat::Csv => delimited(source_name, text, b',')?,
            TableFormat::Tsv => delimited(source_name, text, b'\t')?,
            TableFormat::Jsonl => return jsonl(source_name, text),
        }
        .into_iter();
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        let header = if has_header {
            let (header_line, header) = records.next().ok_or_else(|| {
                Error::data(source_name, "the file is empty; expected a header row")
            })?;
            check_header(source_name, header_line, &header)?;
            header
        } else {
            let (line, first) = records
                .next()
                .ok_or_else(|| Error::data(source_name, "the file is empty; expected rows"))?;
            let header = (1..=first.len()).map(|i| i.to_string()).collect();
            rows.push(first);
            lines.push(line);
            header
        };
        for (line, cells) in records {
            if cells.len() != header.len() {
                return Err(Error::data(
                    source_name,
                    format!(
                        "line {line}: expected {} cells as in the header, found {}",
                        header.len(),
                        cells.len()
                    ),
                ));
            }
            rows.push(cells);
            lines.push(line);
        }
        Ok(Self {
            source_name: source_name.into(),
            header,
            rows,
            lines,
        })
    }

    /// The index of a column by name.
    ///
    /// # Errors
    /// [`Error::Data`] listing the columns that exist.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(
                &self.source_name,
                format!(
                    "there is no column `{name}`; the columns are {}",
                    self.header.join(", ")
                ),
            )
        })
    }

    /// Turn the table into a data set: `label` is the label column, every other column must hold
    /// numbers. With `classes`, labels must be among them (in that order); without, the classes
    /// are the distinct labels, sorted (numerically when all are numbers).
    ///
    /// # Errors
    /// [`Error::Data`] naming line and column for a missing or non-numeric feature, a label not
    /// in `classes`, no rows, no feature columns, or fewer than two classes.
    pub fn to_dataset(
        &self,
        label: &str,
        classes: Option<&[String]>,
    ) -> Result<ClassificationDataset> {
        let label_col = self.column(label)?;
        let features: Vec<usize> = (0..self.header.len()).filter(|&c| c != label_col).collect();
        let fail = |reason: String| Error::data(&self.source_name, reason);
        if features.is_empty() {
            return Err(fail(format!(
                "only the label column `{label}` is present; expected feature columns too"
            )));
        }
        if self.rows.is_empty() {
            return Err(fail("the header is followed by no rows".into()));
        }
        let class_names: Vec<String> = match classes {
            Some(given) => given.to_vec(),
            None => sorted_classes(self.rows.iter().map(|r| r[label_col].trim())),
        };
        let index: BTreeMap<&str, u32> = class_names
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let mut values = Vec::with_capacity(self.rows.len() * features.len());
        let mut labels = Vec::with_capacity(self.rows.len());
        for (row, &line) in self.rows.iter().zip(&self.lines) {
            let name = row[label_col].trim();
            if name.is_empty() {
                return Err(fail(format!(
                    "line {line}, column `{label}`: the label is empty; every row needs its class"
                )));
            }
            let Some(&l) = index.get(name) else {
                return Err(fail(format!(
                    "line {line}, column `{label}`: label `{}` is not one of the classes {}",
                    super::excerpt(name),
                    class_names.join(", ")
                )));
            };
            labels.push(l);
            for &c in &features {
                let cell = row[c].trim();
                if cell.is_empty()
                    || ["na", "nan", "null", "none", "?"]
                        .contains(&cell.to_ascii_lowercase().as_str())
                {
                    return Err(fail(format!(
                        "line {line}, column `{}`: missing value",
                        self.header[c]
                    )));
                }
                let v: f32 = cell.parse().map_err(|_| {
                    fail(format!(
                        "line {line}, column `{}`: `{}` is not a number",
                        self.header[c],
                        super::excerpt(cell)
                    ))
                })?;
                if !v.is_finite() {
                    return Err(fail(format!(
                        "line {line}, column `{}`: `{}` is not a finite number",
                        self.header[c],
                        super::excerpt(cell)
                    )));
                }
                values.push(v);
            }
        }
        ClassificationDataset::new(
            &self.source_name,
            values,
            labels,
            features.len(),
            class_names,
        )
    }
}

/// Distinct labels, sorted numerically when they all parse as numbers, else as text.
fn sorted_classes<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.collect();
    let mut classes: Vec<String> = set.into_iter().map(str::to_string).collect();
    if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    }
    classes
}

fn check_header(source: &str, line: usize, header: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, name) in header.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(Error::data(
                source,
                format!("line {line}: header column {} has no name", i + 1),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::data(
                source,
                format!("line {line}: header column `{name}` appears twice"),
            ));
        }
    }
    Ok(())
}

/// Split RFC 4180 text into records of cells: quotes may hold delimiters, newlines and `""`.
/// Blank lines are skipped. Returns each record's starting line.
fn delimited(source: &str, text: &str, delimiter: u8) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut quote_line = 0;
    let mut chars = text.chars().peekable();
    let delimiter = delimiter as char;
    let mut end_record = |cells: &mut Vec<String>, cell: &mut String, record_line: usize| {
        cells.push(std::mem::take(cell));
        let record = std::mem::take(cells);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((record_line, record));
        }
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    cell.push('\n');
                }
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.trim().is_empty() => {
                cell.clear();
                in_quotes = true;
                quote_line = line;
            }
            c if c == delimiter => cells.push(std::mem::take(&mut cell)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                end_record(&mut cells, &mut cell, record_line);
                line += 1;
                record_line = line;
            }
            _ => cell.push(c),
        }
    }
    if in_quotes {
        return Err(Error::data(
            source,
            format!("line {quote_line}: a quoted cell is never closed"),
        ));
    }
    end_record(&mut cells, &mut cell, record_line);
    Ok(records)
}

fn jsonl(source: &str, text: &str) -> Result<Table> {
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| Error::data(source, format!("line {line}: not valid JSON ({e})")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(Error::data(
                source,
                format!("line {line}: expected a JSON object {{\"column\": value, ...}}"),
            ));
        };
        if header.is_empty() {
            header = object.keys().cloned().collect();
            if header.is_empty() {
                // Found by the fuzzer: `{}` first left the header to the next line, with an
                // empty row before it.
                return Err(Error::data(
                    source,
                    format!("line {line}: an empty object; the first line's keys name the columns"),
                ));
            }
            check_header(source, line, &header)?;
        }
        if let Some(extra) = object.keys().find(|k| !header.contains(k)) {
            return Err(Error::data(
                source,
                format!("line {line}: key `{extra}` is not in the first line's keys"),
            ));
        }
        let mut cells = Vec::with_capacity(header.len());
        for key in &header {
            let cell = match object.get(key) {
                None => {
                    return Err(Error::data(
                        source,
                        format!("line {line}: key `{key}` is missing"),
                    ));
                }
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(serde_json::Value::Null) => String::new(),
                Some(_) => {
                    return Err(Error::data(
                        source,
                        format!(
                            "line {line}, key `{key}`: expected a number or a string, found an array or object"
                        ),
                    ));
                }
            };
            cells.push(cell);
        }
        rows.push(cells);
        lines.push(line);
    }
    if header.is_empty() {
        return Err(Error::data(
            source,
            "the file is empty; expected one JSON object per line",
        ));
    }
    Ok(Table {
        source_name: source.into(),
        header,
        rows,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Table> {
        Table::parse("t.csv", text.as_bytes(), TableFormat::Csv)
    }

    #[test]
    fn csv_with_quotes_crlf_bom_and_blank_lines() {
        let t =
            csv("\u{feff}a,b,label\r\n1,\"2\",x\r\n\r\n\"3\",\"4, \"\"q\"\"\",y\n").expect("valid");
        assert_eq!(t.header, ["a", "b", "label"]);
        assert_eq!(
            t.rows,
            vec![vec!["1", "2", "x"], vec!["3", "4, \"q\"", "y"]]
        );
        assert_eq!(t.lines, vec![2, 4]);
    }

    #[test]
    fn to_dataset_picks_the_label_column_and_sorts_numeric_classes() {
        let t = csv("label,f1,f2\n10,1,2\n9,3,4\n10,5,6\n").expect("valid");
        let ds = t.to_dataset("label", None).expect("valid");
        assert_eq!(ds.class_names, ["9", "10"]);
        assert_eq!(ds.labels, [1, 0, 1]);
        assert_eq!(ds.features, [1., 2., 3., 4., 5., 6.]);
        assert_eq!(ds.n_features, 2);
    }

    #[test]
    fn tsv_and_jsonl_give_the_same_table() {
        let tsv = Table::parse("t.tsv", b"x\ty\n1\ta\n", TableFormat::Tsv).expect("valid");
        let jsonl = Table::parse(
            "t.jsonl",
            b"{\"x\": 1, \"y\": \"a\"}\n\n",
            TableFormat::Jsonl,
        )
        .expect("valid");
        assert_eq!(tsv.header, jsonl.header);
        assert_eq!(tsv.rows, jsonl.rows);
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let cases: Vec<(Result<ClassificationDataset>, &str)> = vec![
            (
                csv("").and_then(|t| t.to_dataset("y", None)),
                "the file is empty",
            ),
            (
                csv("a,,y\n").and_then(|t| t.to_dataset("y", None)),
                "line 1: header column 2 has no name",
            ),
            (
                csv("a,a,y\n").and_then(|t| t.to_dataset("y", None)),
                "header column `a` appears twice",
            ),
            (
                csv("a,y\n1,x\n2\n").and_then(|t| t.to_dataset("y", None)),
                "line 3: expected 2 cells as in the header, found 1",
            ),
            (
                csv("a,y\n1,x\n\"2,x\n").and_then(|t| t.to_dataset("y", None)),
                "line 3: a quoted cell is never closed",
            ),
            (
                csv("a,y\n1,x\nabc,y\n").and_then(|t| t.to_dataset("y", None)),
                "line 3, column `a`: `abc` is not a number",
            ),
            (
                csv("a,y\n1,x\nNA,y\n").and_then(|t| t.to_dataset("y", None)),
                "line 3, column `a`: missing value",
            ),
            (
                csv("a,y\n1,x\n").and_then(|t| t.to_dataset("label", None)),
                "there is no column `label`; the columns are a, y",
            ),
            (
                csv("a,y\n1,x\n2,z\n")
                    .and_then(|t| t.to_dataset("y", Some(&["x".into(), "y".into()]))),
                "line 3, column `y`: label `z` is not one of the classes x, y",
            ),
            (
                csv("y\nx\n").and_then(|t| t.to_dataset("y", None)),
                "only the label column",
            ),
            (
                csv("a,y\n").and_then(|t| t.to_dataset("y", None)),
                "no rows",
            ),
            (
                csv("a,y\n1,x\n2,x\n").and_then(|t| t.to_dataset("y", None)),
                "at least 2 classes",
            ),
            (
                Table::parse("t.csv", b"a,y\n1,\xff\n", TableFormat::Csv)
                    .and_then(|t| t.to_dataset("y", None)),
                "line 2: the file is not UTF-8",
            ),
            (
                Table::parse("t.jsonl", b"{}\n{\"label\": \"b\"}\n", TableFormat::Jsonl)
                    .and_then(|t| t.to_dataset("label", None)),
                "line 1: an empty object",
            ),
            (
                Table::parse("t.jsonl", b"{\"a\":1}\n[1]\n", TableFormat::Jsonl)
                    .and_then(|t| t.to_dataset("a", None)),
                "line 2: expected a JSON object",
            ),
            (
                Table::parse("t.jsonl", b"{\"a\":1}\n{\"a\":\n", TableFormat::Jsonl)
                    .and_then(|t| t.to_dataset("a", None)),
                "line 2: not valid JSON",
            ),
            (
                Table::parse(
                    "t.jsonl",
                    b"{\"a\":1,\"y\":2}\n{\"a\":1}\n",
                    TableFormat::Jsonl,
                )
                .and_then(|t| t.to_dataset("y", None)),
                "line 2: key `y` is missing",
            ),
            (
                Table::parse(
                    "t.jsonl",
                    b"{\"a\":1,\"y\":2}\n{\"a\":1,\"y\":2,\"z\":3}\n",
                    TableFormat::Jsonl,
                )
                .and_then(|t| t.to_dataset("y", None)),
                "line 2: key `z` is not in the first line's keys",
            ),
            (
                Table::parse("t.jsonl", b"{\"a\":[1],\"y\":2}\n", TableFormat::Jsonl)
                    .and_then(|t| t.to_dataset("y", None)),
                "line 1, key `a`: expected a number or a string",
            ),
        ];
        for (result, expected) in cases {
            let err = result.expect_err(expected).to_string();
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
            assert!(
                err.contains("t.csv") || err.contains("t.jsonl"),
                "the file is named: {err}"
            );
        }
    }

    #[test]
    fn headerless_and_gzipped() {
        let gz = crate::data::idx::tests::gzip(b"1,2,0\n3,4,1\n");
        let t = Table::parse_with("d.csv.gz", &gz, TableFormat::Csv, false).expect("valid");
        assert_eq!(t.header, ["1", "2", "3"]);
        assert_eq!(t.lines, [1, 2]);
        let ds = t.to_dataset("3", None).expect("valid");
        assert_eq!(ds.features, [1., 2., 3., 4.]);
        assert_eq!(ds.labels, [0, 1]);
    }

    #[test]
    fn format_from_name() {
        assert_eq!(TableFormat::from_name("Data.CSV"), Some(TableFormat::Csv));
        assert_eq!(TableFormat::from_name("a.tsv"), Some(TableFormat::Tsv));
        assert_eq!(TableFormat::from_name("a.ndjson"), Some(TableFormat::Jsonl));
        assert_eq!(TableFormat::from_name("a.png"), None);
    }
}
