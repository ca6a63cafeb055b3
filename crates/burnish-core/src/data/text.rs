//! Labelled texts (one text, or a pair, per row) for sequence classification.

use std::collections::BTreeMap;

use super::table::Table;
use crate::{Error, Result};

/// Texts with one class label each.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    /// Where the rows came from, for messages.
    pub source_name: String,
    /// The first (or only) text of each row.
    pub texts: Vec<String>,
    /// The second text of each row, for sentence pairs.
    pub pairs: Option<Vec<String>>,
    /// One label per row, indexing `class_names`.
    pub labels: Vec<u32>,
    /// Class names, by label.
    pub class_names: Vec<String>,
}

impl TextDataset {
    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `indices`, same classes.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            source_name: self.source_name.clone(),
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            pairs: self
                .pairs
                .as_ref()
                .map(|p| indices.iter().map(|&i| p[i].clone()).collect()),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }
}

impl Table {
    /// Texts from column `text` (and `pair`, for sentence pairs) with labels from `label`. With
    /// `classes`, labels must be among them; without, they are the distinct labels, sorted.
    ///
    /// # Errors
    /// [`Error::Data`] naming the column that does not exist, the line of an empty text or of a
    /// label outside `classes`, and fewer than two classes.
    pub fn to_text_dataset(
        &self,
        text: &str,
        pair: Option<&str>,
        label: &str,
        classes: Option<&[String]>,
    ) -> Result<TextDataset> {
        if text.is_empty() || text == label {
            return Err(Error::data(
                &self.source_name,
                format!(
                    "expected a column of texts beside the label column `{label}`; the columns are {}",
                    self.header.join(", ")
                ),
            ));
        }
        let text_col = self.column(text)?;
        let pair_col = pair.map(|p| self.column(p)).transpose()?;
        let label_col = self.column(label)?;
        let fail = |reason: String| Error::data(&self.source_name, reason);
        let class_names: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => {
                let mut names: Vec<String> = self
                    .rows
                    .iter()
                    .map(|r| r[label_col].trim().to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if names.iter().all(|n| n.parse::<f64>().is_ok()) {
                    names.sort_by(|a, b| {
                        a.parse::<f64>()
                            .unwrap_or(0.0)
                            .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
                    });
                }
                names
            }
        };
        if class_names.len() < 2 {
            return Err(fail(format!(
                "column `{label}` holds {} class(es); expected at least 2",
                class_names.len()
            )));
        }
        let index: BTreeMap<&str, u32> = class_names
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let mut texts = Vec::with_capacity(self.rows.len());
        let mut pairs = pair_col.map(|_| Vec::with_capacity(self.rows.len()));
        let mut labels = Vec::with_capacity(self.rows.len());
        for (row, &line) in self.rows.iter().zip(&self.lines) {
            let t = row[text_col].trim();
            if t.is_empty() {
                return Err(fail(format!(
                    "line {line}, column `{text}`: the text is empty"
                )));
            }
            texts.push(t.to_string());
            if let (Some(c), Some(p)) = (pair_col, pairs.as_mut()) {
                p.push(row[c].trim().to_string());
            }
            let name = row[label_col].trim();
            if name.is_empty() {
                return Err(fail(format!(
                    "line {line}, column `{label}`: the label is empty; every row needs its class"
                )));
            }
            let l = index.get(name).ok_or_else(|| {
                fail(format!(
                    "line {line}, column `{label}`: label `{}` is not one of the classes {}",
                    super::excerpt(name),
                    class_names.join(", ")
                ))
            })?;
            labels.push(*l);
        }
        if texts.is_empty() {
            return Err(fail("the header is followed by no rows".into()));
        }
        Ok(TextDataset {
            source_name: self.source_name.clone(),
            texts,
            pairs,
            labels,
            class_names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::TableFormat;

    #[test]
    fn texts_and_labels_from_a_table_with_errors_named() {
        let csv = "review,stars\n\"Great, really\",pos\nDull,neg\n";
        let t = Table::parse("r.csv", csv.as_bytes(), TableFormat::Csv).expect("parse");
        let d = t
            .to_text_dataset("review", None, "stars", None)
            .expect("texts");
        assert_eq!(d.texts, ["Great, really", "Dull"]);
        assert_eq!(d.class_names, ["neg", "pos"]);
        assert_eq!(d.labels, [1, 0]);
        let err = t
            .to_text_dataset("text", None, "stars", None)
            .expect_err("no column")
            .to_string();
        assert!(err.contains("text"), "{err}");
        let t = Table::parse("e.csv", b"review,stars\n ,pos\nok,neg\n", TableFormat::Csv)
            .expect("parse");
        let err = t
            .to_text_dataset("review", None, "stars", None)
            .expect_err("empty text")
            .to_string();
        assert!(
            err.contains("line 2, column `review`: the text is empty"),
            "{err}"
        );
        let sub = d.subset(&[1]);
        assert_eq!((sub.texts.len(), sub.labels[0]), (1, 0));
    }
}
