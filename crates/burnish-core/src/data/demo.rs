//! Built-in demo data that needs no files: interleaved spirals, a classic that a linear model
//! cannot separate but a small MLP learns in a few hundred steps.

use crate::Result;
use crate::data::ClassificationDataset;
use crate::rng::Rng;

/// `classes` interleaved spiral arms in the plane, `points_per_class` points each, with Gaussian
/// noise of standard deviation `noise` on the angle. The same seed gives the same points on every
/// target.
///
/// # Errors
/// When fewer than 2 classes or no points are asked for.
pub fn spirals(
    points_per_class: usize,
    classes: usize,
    noise: f32,
    seed: u64,
) -> Result<ClassificationDataset> {
    let mut rng = Rng::new(seed);
    let mut features = Vec::with_capacity(points_per_class * classes * 2);
    let mut labels = Vec::with_capacity(points_per_class * classes);
    for class in 0..classes {
        for i in 0..points_per_class {
            let r = i as f32 / points_per_class.max(2).saturating_sub(1) as f32;
            let theta = class as f32 * std::f32::consts::TAU / classes as f32
                + r * 4.0
                + rng.normal() * noise;
            features.push(r * theta.cos());
            features.push(r * theta.sin());
            labels.push(class as u32);
        }
    }
    ClassificationDataset::new(
        "demo spirals",
        features,
        labels,
        2,
        (0..classes).map(|c| format!("arm {c}")).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spirals_are_balanced_bounded_and_seeded() {
        let a = spirals(50, 3, 0.2, 9).expect("valid");
        assert_eq!(a.len(), 150);
        assert_eq!(a.class_counts(), vec![50, 50, 50]);
        assert!(a.features.iter().all(|v| v.abs() <= 1.0));
        assert_eq!(a, spirals(50, 3, 0.2, 9).expect("valid"));
        assert_ne!(a.features, spirals(50, 3, 0.2, 10).expect("valid").features);
        assert!(spirals(10, 1, 0.2, 0).is_err());
    }
}

/// Parameters of the built-in spirals data set, with the defaults the page starts from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpiralsConfig {
    /// Points per arm (default 100).
    pub points_per_class: usize,
    /// Number of arms, one class each (default 3).
    pub classes: usize,
    /// Standard deviation of the angle noise (default 0.2).
    pub noise: f32,
    /// Seed of the points (default 7).
    pub seed: u64,
}

impl Default for SpiralsConfig {
    fn default() -> Self {
        Self {
            points_per_class: 100,
            classes: 3,
            noise: 0.2,
            seed: 7,
        }
    }
}

impl SpiralsConfig {
    /// Generate the data set.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when there are fewer than 2 classes, no points, or the noise is
    /// negative or not finite.
    pub fn generate(&self) -> Result<ClassificationDataset> {
        if self.points_per_class == 0 {
            return Err(crate::Error::config(
                "points_per_class",
                "expected at least 1, found 0",
            ));
        }
        if self.classes < 2 {
            return Err(crate::Error::config(
                "classes",
                format!("expected at least 2, found {}", self.classes),
            ));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(crate::Error::config(
                "noise",
                format!("expected a number >= 0, found {}", self.noise),
            ));
        }
        spirals(self.points_per_class, self.classes, self.noise, self.seed)
    }
}
