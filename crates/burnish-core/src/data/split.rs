//! Train / validation / test splits, stratified by class and seeded, and feature normalisation
//! fitted on the training split only.

use serde::{Deserialize, Serialize};

use super::ClassificationDataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// How to split one data set in three.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of rows for validation (default 0.1).
    pub validation: f64,
    /// Fraction of rows for the final test (default 0.1). The rest is for training.
    pub test: f64,
    /// Keep each class's share the same in every split (default true).
    pub stratify: bool,
    /// Seed of the shuffle (default 42).
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            validation: 0.1,
            test: 0.1,
            stratify: true,
            seed: 42,
        }
    }
}

impl SplitConfig {
    /// Row indices of train, validation and test for rows with these `labels` (of `n_classes`),
    /// stratified per class when asked, shuffled with the seed.
    ///
    /// # Errors
    /// [`Error::Config`] when a fraction is negative, not finite, or they leave no training rows.
    pub fn indices(&self, labels: &[u32], n_classes: usize) -> Result<[Vec<usize>; 3]> {
        for (field, v) in [("validation", self.validation), ("test", self.test)] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(Error::config(
                    field,
                    format!("expected a fraction in [0, 1), found {v}"),
                ));
            }
        }
        if self.validation + self.test >= 1.0 {
            return Err(Error::config(
                "test",
                format!(
                    "validation {} + test {} leave no rows for training",
                    self.validation, self.test
                ),
            ));
        }
        let mut rng = Rng::new(self.seed);
        let groups: Vec<Vec<usize>> = if self.stratify {
            let mut by_class = vec![Vec::new(); n_classes];
            for (i, &l) in labels.iter().enumerate() {
                by_class[l as usize].push(i);
            }
            by_class
        } else {
            vec![(0..labels.len()).collect()]
        };
        let (mut train, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for mut group in groups {
            rng.shuffle(&mut group);
            let n = group.len();
            let n_val = (n as f64 * self.validation).round() as usize;
            let n_test = (n as f64 * self.test).round() as usize;
            // Keep at least one row of every class for training when there is one to keep.
            let (n_val, n_test) = if n_val + n_test >= n && n > 0 {
                let n_test = n_test.min(n - 1);
                (n_val.min(n - 1 - n_test), n_test)
            } else {
                (n_val, n_test)
            };
            validation.extend_from_slice(&group[..n_val]);
            test.extend_from_slice(&group[n_val..n_val + n_test]);
            train.extend_from_slice(&group[n_val + n_test..]);
        }
        // Interleave classes (the groups were appended class by class).
        rng.shuffle(&mut train);
        rng.shuffle(&mut validation);
        rng.shuffle(&mut test);
        Ok([train, validation, test])
    }
}

/// The three parts of a split; validation or test may be empty when their fraction is 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Rows to train on.
    pub train: ClassificationDataset,
    /// Rows to choose the best checkpoint and stop early on.
    pub validation: ClassificationDataset,
    /// Rows for the final report only.
    pub test: ClassificationDataset,
}

impl ClassificationDataset {
    /// The rows at `indices`, in that order, with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let (features, labels) = self.gather(indices);
        Self {
            source_name: self.source_name.clone(),
            features,
            labels: labels.into_iter().map(|l| l as u32).collect(),
            n_features: self.n_features,
            class_names: self.class_names.clone(),
            image_shape: self.image_shape,
        }
    }

    /// Split into train, validation and test.
    ///
    /// # Errors
    /// [`Error::Config`] when a fraction is negative, not finite, or they leave no training rows.
    pub fn split(&self, config: &SplitConfig) -> Result<Splits> {
        let [train, validation, test] = config.indices(&self.labels, self.n_classes())?;
        Ok(Splits {
            train: self.subset(&train),
            validation: self.subset(&validation),
            test: self.subset(&test),
        })
    }
}

/// Per-feature (tabular) or per-channel (images) mean and standard deviation, fitted on training
/// rows and applied to every split, so no statistic leaks from validation or test data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Subtracted from each value.
    pub mean: Vec<f32>,
    /// Each value is divided by this (1 where the training data had no spread).
    pub std: Vec<f32>,
    /// Values per statistic: 1 for tabular data, `height * width` for images.
    pub span: usize,
}

impl Normalizer {
    /// Fit on `data`: per channel for images, per feature otherwise.
    pub fn fit(data: &ClassificationDataset) -> Self {
        let (groups, span) = match data.image_shape {
            Some([c, h, w]) => (c, h * w),
            None => (data.n_features, 1),
        };
        let mut sum = vec![0f64; groups];
        let mut sq = vec![0f64; groups];
        for row in data.features.chunks_exact(data.n_features) {
            for (i, &v) in row.iter().enumerate() {
                let g = if span == 1 { i } else { i / span };
                sum[g] += f64::from(v);
                sq[g] += f64::from(v) * f64::from(v);
            }
        }
        let count = (data.len() * span).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, &m)| {
                let var = (q / count - f64::from(m) * f64::from(m)).max(0.0);
                let sd = var.sqrt() as f32;
                if sd > 1e-6 { sd } else { 1.0 }
            })
            .collect();
        Self { mean, std, span }
    }

    /// Normalise one row in place.
    pub fn apply_row(&self, row: &mut [f32]) {
        for (i, v) in row.iter_mut().enumerate() {
            let g = i / self.span;
            *v = (*v - self.mean[g]) / self.std[g];
        }
    }

    /// Normalise every row of `data` in place.
    ///
    /// # Errors
    /// [`Error::Data`] when the data's feature count does not match what was fitted.
    pub fn apply(&self, data: &mut ClassificationDataset) -> Result<()> {
        if self.mean.len() * self.span != data.n_features {
            return Err(Error::data(
                &data.source_name,
                format!(
                    "the normalisation was fitted on {} features per row, this data has {}",
                    self.mean.len() * self.span,
                    data.n_features
                ),
            ));
        }
        let n = data.n_features;
        for row in data.features.chunks_exact_mut(n) {
            self.apply_row(row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(per_class: &[usize]) -> ClassificationDataset {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for (c, &n) in per_class.iter().enumerate() {
            for i in 0..n {
                features.extend([c as f32, i as f32]);
                labels.push(c as u32);
            }
        }
        let names = (0..per_class.len()).map(|c| format!("c{c}")).collect();
        ClassificationDataset::new("d", features, labels, 2, names).expect("valid")
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_covers_every_row_once() {
        let d = data(&[100, 50, 10]);
        let s = d.split(&SplitConfig::default()).expect("valid");
        assert_eq!(s.train.class_counts(), vec![80, 40, 8]);
        assert_eq!(s.validation.class_counts(), vec![10, 5, 1]);
        assert_eq!(s.test.class_counts(), vec![10, 5, 1]);
        let mut all: Vec<(u32, u32)> = [&s.train, &s.validation, &s.test]
            .iter()
            .flat_map(|p| {
                p.features
                    .chunks(2)
                    .map(|r| (r[0] as u32, r[1] as u32))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        let mut expected: Vec<(u32, u32)> = d
            .features
            .chunks(2)
            .map(|r| (r[0] as u32, r[1] as u32))
            .collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn split_is_deterministic_per_seed() {
        let d = data(&[30, 30]);
        let a = d.split(&SplitConfig::default()).expect("valid");
        assert_eq!(a, d.split(&SplitConfig::default()).expect("valid"));
        let b = d
            .split(&SplitConfig {
                seed: 1,
                ..SplitConfig::default()
            })
            .expect("valid");
        assert_ne!(a.train.features, b.train.features);
    }

    #[test]
    fn tiny_classes_keep_a_training_row_and_bad_fractions_are_named() {
        let s = data(&[1, 20]).split(&SplitConfig {
            validation: 0.5,
            test: 0.5 - 1e-9,
            ..SplitConfig::default()
        });
        let s = s.expect("valid");
        assert_eq!(s.train.class_counts()[0], 1);
        for (config, field) in [
            (
                SplitConfig {
                    validation: -0.1,
                    ..SplitConfig::default()
                },
                "validation",
            ),
            (
                SplitConfig {
                    test: f64::NAN,
                    ..SplitConfig::default()
                },
                "test",
            ),
            (
                SplitConfig {
                    validation: 0.6,
                    test: 0.4,
                    ..SplitConfig::default()
                },
                "leave no rows",
            ),
        ] {
            let err = data(&[5, 5]).split(&config).expect_err(field).to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn normalizer_fits_train_only_and_handles_constant_features() {
        let train = ClassificationDataset::new(
            "t",
            vec![1., 5., 3., 5.],
            vec![0, 1],
            2,
            vec!["a".into(), "b".into()],
        )
        .expect("valid");
        let n = Normalizer::fit(&train);
        assert_eq!(n.mean, [2.0, 5.0]);
        assert_eq!(n.std, [1.0, 1.0]);
        let mut other =
            ClassificationDataset::new("o", vec![4., 7.], vec![0], 2, vec!["a".into(), "b".into()])
                .expect("valid");
        n.apply(&mut other).expect("same width");
        assert_eq!(other.features, [2.0, 2.0]);
        let mut wrong =
            ClassificationDataset::new("w", vec![1.], vec![0], 1, vec!["a".into(), "b".into()])
                .expect("valid");
        assert!(
            n.apply(&mut wrong)
                .expect_err("width")
                .to_string()
                .contains("fitted on 2 features")
        );
    }

    #[test]
    fn image_normalizer_is_per_channel() {
        let d = ClassificationDataset::new(
            "i",
            vec![0., 2., 10., 30.],
            vec![0],
            4,
            vec!["a".into(), "b".into()],
        )
        .expect("valid")
        .with_image_shape([2, 1, 2])
        .expect("shape");
        let n = Normalizer::fit(&d);
        assert_eq!(n.mean, [1.0, 20.0]);
        assert_eq!(n.std, [1.0, 10.0]);
        assert_eq!(n.span, 2);
    }
}
