//! The classification report: accuracy, per-class precision, recall, F1 and support, macro and
//! weighted averages, and the confusion matrix, computed as scikit-learn does (a class with no
//! predictions has precision 0, with no true rows recall 0; F1 is 0 when both are 0).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class's name.
    pub name: String,
    /// Of the rows predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of the rows of this class, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of rows of this class.
    pub support: usize,
}

/// Everything a classification report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Per class, in label order.
    pub classes: Vec<ClassMetrics>,
    /// Fraction of rows predicted correctly.
    pub accuracy: f64,
    /// Unweighted means of precision, recall and F1 over classes.
    pub macro_avg: [f64; 3],
    /// Means of precision, recall and F1 weighted by support.
    pub weighted_avg: [f64; 3],
    /// `confusion[true][predicted]` row counts.
    pub confusion: Vec<Vec<usize>>,
    /// Number of rows.
    pub total: usize,
}

impl ClassificationReport {
    /// Compute the report from true labels and predicted labels.
    ///
    /// # Errors
    /// [`Error::Data`] when the two lists differ in length, are empty, or hold a label outside
    /// `class_names`.
    pub fn new(class_names: &[String], truth: &[u32], predicted: &[u32]) -> Result<Self> {
        let n = class_names.len();
        if truth.len() != predicted.len() {
            return Err(Error::data(
                "evaluation",
                format!(
                    "{} true labels but {} predictions",
                    truth.len(),
                    predicted.len()
                ),
            ));
        }
        if truth.is_empty() {
            return Err(Error::data("evaluation", "no rows to evaluate"));
        }
        let mut confusion = vec![vec![0usize; n]; n];
        for (row, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            if t as usize >= n || p as usize >= n {
                return Err(Error::data(
                    "evaluation",
                    format!("row {row}: label {t} or prediction {p} is outside the {n} classes"),
                ));
            }
            confusion[t as usize][p as usize] += 1;
        }
        let total = truth.len();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let classes: Vec<ClassMetrics> = (0..n)
            .map(|c| {
                let tp = confusion[c][c];
                let predicted_c: usize = (0..n).map(|t| confusion[t][c]).sum();
                let support: usize = confusion[c].iter().sum();
                let precision = ratio(tp, predicted_c);
                let recall = ratio(tp, support);
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassMetrics {
                    name: class_names[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let correct: usize = (0..n).map(|c| confusion[c][c]).sum();
        let mean = |f: fn(&ClassMetrics) -> f64| classes.iter().map(f).sum::<f64>() / n as f64;
        let weighted = |f: fn(&ClassMetrics) -> f64| {
            classes.iter().map(|m| f(m) * m.support as f64).sum::<f64>() / total as f64
        };
        Ok(Self {
            accuracy: ratio(correct, total),
            macro_avg: [mean(|m| m.precision), mean(|m| m.recall), mean(|m| m.f1)],
            weighted_avg: [
                weighted(|m| m.precision),
                weighted(|m| m.recall),
                weighted(|m| m.f1),
            ],
            classes,
            confusion,
            total,
        })
    }

    /// The report as text, in scikit-learn's `classification_report` layout (two decimals).
    pub fn to_text(&self) -> String {
        let width = self
            .classes
            .iter()
            .map(|c| c.name.chars().count())
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(12);
        // scikit-learn: name `{:>width} `, then each column ` {:>9}`.
        let mut out = format!(
            "{:>width$}  precision    recall  f1-score   support\n\n",
            ""
        );
        for c in &self.classes {
            out += &format!(
                "{:>width$}  {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
                c.name, c.precision, c.recall, c.f1, c.support
            );
        }
        out += &format!(
            "\n{:>width$}  {:>9} {:>9} {:>9.2} {:>9}\n",
            "accuracy", "", "", self.accuracy, self.total
        );
        for (name, [p, r, f]) in [
            ("macro avg", self.macro_avg),
            ("weighted avg", self.weighted_avg),
        ] {
            out += &format!(
                "{name:>width$}  {p:>9.2} {r:>9.2} {f:>9.2} {:>9}\n",
                self.total
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Hand-computed: truth [0,0,0,1,1,2], predicted [0,0,1,1,2,2].
    /// class 0: tp 2, predicted 2, support 3 -> p 1, r 2/3, f1 0.8
    /// class 1: tp 1, predicted 2, support 2 -> p 0.5, r 0.5, f1 0.5
    /// class 2: tp 1, predicted 2, support 1 -> p 0.5, r 1, f1 2/3
    #[test]
    fn metrics_match_hand_computed_values() {
        let r = ClassificationReport::new(
            &names(&["a", "b", "c"]),
            &[0, 0, 0, 1, 1, 2],
            &[0, 0, 1, 1, 2, 2],
        )
        .expect("valid");
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(r.accuracy, 4.0 / 6.0);
        close(r.classes[0].precision, 1.0);
        close(r.classes[0].recall, 2.0 / 3.0);
        close(r.classes[0].f1, 0.8);
        close(r.classes[1].f1, 0.5);
        close(r.classes[2].precision, 0.5);
        close(r.classes[2].recall, 1.0);
        close(r.classes[2].f1, 2.0 / 3.0);
        close(r.macro_avg[0], (1.0 + 0.5 + 0.5) / 3.0);
        close(r.macro_avg[2], (0.8 + 0.5 + 2.0 / 3.0) / 3.0);
        close(r.weighted_avg[1], (3.0 * 2.0 / 3.0 + 2.0 * 0.5 + 1.0) / 6.0);
        close(r.weighted_avg[2], (3.0 * 0.8 + 2.0 * 0.5 + 2.0 / 3.0) / 6.0);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert_eq!(
            r.classes.iter().map(|c| c.support).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
    }

    #[test]
    fn a_class_never_predicted_has_zero_precision_not_nan() {
        let r = ClassificationReport::new(&names(&["a", "b"]), &[0, 1], &[0, 0]).expect("valid");
        assert_eq!(r.classes[1].precision, 0.0);
        assert_eq!(r.classes[1].f1, 0.0);
        assert_eq!(r.classes[0].precision, 0.5);
    }

    #[test]
    fn text_layout_is_sklearns() {
        let r = ClassificationReport::new(&names(&["cat", "dog"]), &[0, 0, 1, 1], &[0, 1, 1, 1])
            .expect("valid");
        // Printed by scikit-learn 1.2's classification_report for the same labels.
        let expected = concat!(
            "              precision    recall  f1-score   support\n",
            "\n",
            "         cat       1.00      0.50      0.67         2\n",
            "         dog       0.67      1.00      0.80         2\n",
            "\n",
            "    accuracy                           0.75         4\n",
            "   macro avg       0.83      0.75      0.73         4\n",
            "weighted avg       0.83      0.75      0.73         4\n",
        );
        assert_eq!(r.to_text(), expected);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let n = names(&["a", "b"]);
        assert!(ClassificationReport::new(&n, &[0], &[0, 1]).is_err());
        assert!(ClassificationReport::new(&n, &[], &[]).is_err());
        let err = ClassificationReport::new(&n, &[0, 2], &[0, 1])
            .expect_err("label 2")
            .to_string();
        assert!(err.contains("row 1"), "{err}");
    }
}
