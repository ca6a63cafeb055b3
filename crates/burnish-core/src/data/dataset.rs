use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Rows of numeric features with one class label each, held on the host.
///
/// Features are row-major, `n_features` per row. Labels index `class_names`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationDataset {
    /// Where the data came from, for error messages ("demo", a file name).
    pub source_name: String,
    /// Row-major features, `len() == n_rows * n_features`.
    pub features: Vec<f32>,
    /// One label per row, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Number of features per row.
    pub n_features: usize,
    /// Human-readable class names, indexed by label.
    pub class_names: Vec<String>,
    /// For images: `[channels, height, width]`, whose product is `n_features` (rows are stored
    /// channel-major). `None` for tabular data.
    #[serde(default)]
    pub image_shape: Option<[usize; 3]>,
}

impl ClassificationDataset {
    /// Build a data set and check that its parts agree.
    ///
    /// # Errors
    /// [`Error::Data`] when the feature count is zero, the features do not split into whole rows,
    /// the row and label counts differ, a label is out of range, or a feature is not finite.
    pub fn new(
        source_name: impl Into<String>,
        features: Vec<f32>,
        labels: Vec<u32>,
        n_features: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let source_name = source_name.into();
        let fail = |reason: String| Err(Error::data(source_name.clone(), reason));
        if n_features == 0 {
            return fail("expected at least one feature column, found none".into());
        }
        if !features.len().is_multiple_of(n_features) {
            return fail(format!(
                "{} feature values do not split into rows of {n_features}",
                features.len()
            ));
        }
        let rows = features.len() / n_features;
        if rows != labels.len() {
            return fail(format!(
                "{rows} rows of features but {} labels",
                labels.len()
            ));
        }
        if class_names.len() < 2 {
            return fail(format!(
                "expected at least 2 classes, found {}",
                class_names.len()
            ));
        }
        if let Some((row, label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= class_names.len())
        {
            return fail(format!(
                "row {row}: label {label} is out of range for {} classes",
                class_names.len()
            ));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return fail(format!(
                "row {}, feature {}: value {} is not a finite number",
                i / n_features,
                i % n_features,
                features[i]
            ));
        }
        Ok(Self {
            source_name,
            features,
            labels,
            n_features,
            class_names,
            image_shape: None,
        })
    }

    /// The same data, declared to be images of `[channels, height, width]`.
    ///
    /// # Errors
    /// [`Error::Data`] when the shape's product is not the feature count.
    pub fn with_image_shape(self, shape: [usize; 3]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.n_features {
            return Err(Error::data(
                &self.source_name,
                format!(
                    "an image shape of {shape:?} does not hold {} features per row",
                    self.n_features
                ),
            ));
        }
        Ok(Self {
            image_shape: Some(shape),
            ..self
        })
    }

    /// The same rows with labels renumbered to `classes` (matched by name), e.g. to continue
    /// training an imported model whose classes come in another order, or to give a validation
    /// file the training file's classes. `classes` may hold classes the data lacks.
    ///
    /// # Errors
    /// [`Error::Data`] naming a class of the data that `classes` does not have.
    pub fn with_classes(self, classes: &[String]) -> Result<Self> {
        let mut map = Vec::with_capacity(self.class_names.len());
        for name in &self.class_names {
            match classes.iter().position(|c| c == name) {
                Some(i) => map.push(i as u32),
                None if !self.labels.contains(&(map.len() as u32)) => map.push(0),
                None => {
                    return Err(Error::data(
                        &self.source_name,
                        format!(
                            "class `{name}` is not one of the model's classes ({})",
                            classes.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            labels: self.labels.iter().map(|&l| map[l as usize]).collect(),
            class_names: classes.to_vec(),
            ..self
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The features of one row.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * self.n_features..(index + 1) * self.n_features]
    }

    /// How many rows carry each label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Gather the given rows into one row-major batch of features and a vector of labels.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<i64>) {
        let mut features = Vec::with_capacity(indices.len() * self.n_features);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i));
            labels.push(i64::from(self.labels[i]));
        }
        (features, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_classes_renumbers_by_name() {
        let d = ClassificationDataset::new(
            "d.csv",
            vec![0.0, 1.0, 2.0],
            vec![0, 1, 0],
            1,
            vec!["cat".into(), "dog".into()],
        )
        .expect("valid");
        let all = ["bird".to_string(), "dog".into(), "cat".into()];
        let r = d.clone().with_classes(&all).expect("subset of classes");
        assert_eq!(r.labels, [2, 1, 2]);
        assert_eq!(r.class_names, all);
        let err = d
            .with_classes(&["cat".to_string(), "cow".into()])
            .expect_err("dog is unknown")
            .to_string();
        assert!(
            err.contains("d.csv") && err.contains("class `dog`"),
            "{err}"
        );
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn accepts_consistent_parts_and_gathers_rows() {
        let ds = ClassificationDataset::new(
            "t",
            vec![1., 2., 3., 4., 5., 6.],
            vec![0, 1, 1],
            2,
            names(2),
        )
        .expect("valid");
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.class_counts(), vec![1, 2]);
        assert_eq!(ds.gather(&[2, 0]), (vec![5., 6., 1., 2.], vec![1, 0]));
    }

    #[test]
    fn rejects_each_inconsistency_with_a_message_that_names_it() {
        let cases: Vec<(Vec<f32>, Vec<u32>, usize, usize, &str)> = vec![
            (
                vec![1., 2., 3.],
                vec![0],
                2,
                2,
                "do not split into rows of 2",
            ),
            (
                vec![1., 2.],
                vec![0, 1],
                2,
                2,
                "1 rows of features but 2 labels",
            ),
            (
                vec![1., 2.],
                vec![5],
                2,
                2,
                "row 0: label 5 is out of range for 2 classes",
            ),
            (
                vec![1., f32::NAN],
                vec![0],
                2,
                2,
                "row 0, feature 1: value NaN is not a finite",
            ),
            (vec![1., 2.], vec![0], 0, 2, "at least one feature column"),
            (vec![1., 2.], vec![0], 2, 1, "at least 2 classes, found 1"),
        ];
        for (features, labels, n_features, n_classes, expected) in cases {
            let err = ClassificationDataset::new(
                "file.csv",
                features,
                labels,
                n_features,
                names(n_classes),
            )
            .expect_err(expected)
            .to_string();
            assert!(err.contains("file.csv"), "{err}");
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        }
    }
}
