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
