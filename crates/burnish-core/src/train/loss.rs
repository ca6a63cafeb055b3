//! The loss every trainer minimises: softmax cross-entropy of logits against class indices,
//! averaged over the rows that count. On a wgpu device with `fused_kernels` (and `fused_loss`) on it runs the fused
//! kernels (`kernels::cross_entropy`, two dispatches); everywhere else burn's composed
//! operations ([`row_losses_reference`]), which compute the same thing and are what the kernels'
//! tests compare with.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::kernels;

/// Mean cross-entropy of `logits` (`[rows, classes]`) against `targets` (`[rows]`). With
/// `weights` (`[rows]`, constants such as a padding mask), the weighted sum divided by the sum of
/// the weights (at least 1), so rows of weight 0 are left out. `fused`: use the fused kernels
/// where they apply.
pub(crate) fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Option<Tensor<1>>,
    fused: bool,
) -> Tensor<1> {
    let count = weights.as_ref().map(|w| w.clone().sum().clamp_min(1.0));
    let rows = if fused && kernels::cross_entropy::applies(&logits, &targets) {
        kernels::cross_entropy::row_losses(logits, targets, weights)
    } else {
        row_losses_reference(logits, targets, weights)
    };
    // `sum() / n`, not `mean()`: burn's mean over 65,535 or more rows that are not a multiple
    // of 4 is wrong on lavapipe (see the tests), its full sum is not.
    match count {
        Some(count) => rows.sum() / count,
        None => {
            let n = rows.dims()[0] as f32;
            rows.sum() / n
        }
    }
}

/// The per-row losses `w[r] (logsumexp(logits[r]) - logits[r, targets[r]])` with burn's
/// composed operations (log-softmax, gather, product): the reference of the fused kernels.
pub(crate) fn row_losses_reference(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Option<Tensor<1>>,
) -> Tensor<1> {
    let [rows, _] = logits.dims();
    let picked: Tensor<1> = log_softmax(logits, 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows]);
    match weights {
        Some(w) => -(picked * w),
        None => -picked,
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::prelude::*;

    use super::{cross_entropy, row_losses_reference};
    use crate::kernels::test_util::{assert_close, launched, read};
    use crate::kernels::{self, cross_entropy::applies};
    use crate::rng::Rng;

    /// A seeded case: logits of `scale` around a per-row offset, every target, weights with
    /// zeros and fractions (or none).
    struct Case {
        rows: usize,
        classes: usize,
        logits: Vec<f32>,
        targets: Vec<i64>,
        weights: Option<Vec<f32>>,
    }

    impl Case {
        fn new(rows: usize, classes: usize, scale: f32, weighted: bool) -> Self {
            let mut rng = Rng::new((rows * 7919 + classes) as u64);
            let logits = (0..rows * classes)
                .map(|i| (rng.next_f32() * 2.0 - 1.0) * scale + (i / classes) as f32 * 0.01)
                .collect();
            // Rows cycle through the first and last class, then random ones.
            let targets = (0..rows)
                .map(|r| match r % 3 {
                    0 => 0,
                    1 => classes as i64 - 1,
                    _ => rng.below(classes) as i64,
                })
                .collect();
            let weights = weighted.then(|| {
                (0..rows)
                    .map(|r| {
                        if r % 4 == 3 {
                            0.0
                        } else {
                            0.25 + rng.next_f32()
                        }
                    })
                    .collect()
            });
            Self {
                rows,
                classes,
                logits,
                targets,
                weights,
            }
        }

        fn tensors(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>, Option<Tensor<1>>) {
            (
                Tensor::from_data(
                    TensorData::new(self.logits.clone(), [self.rows, self.classes]),
                    device,
                ),
                Tensor::from_data(TensorData::new(self.targets.clone(), [self.rows]), device),
                self.weights
                    .as_ref()
                    .map(|w| Tensor::from_data(TensorData::new(w.clone(), [self.rows]), device)),
            )
        }

        fn name(&self) -> String {
            format!(
                "{} rows x {} classes{}",
                self.rows,
                self.classes,
                if self.weights.is_some() {
                    ", weighted"
                } else {
                    ""
                }
            )
        }
    }

    /// Class counts around each step of the forward kernel's threads per row (1 thread up to 32
    /// classes, 2 up to 64, ... 256 from 8,161), rows that fill a workgroup's last row slots
    /// only partly, one class, and more than 65,535 x 256 logits (the backward kernel's 2-D
    /// grid; the forward kernel's needs 2^29 logits, more than a WebGPU storage binding holds).
    fn cases() -> Vec<Case> {
        let mut cases = Vec::new();
        for (rows, classes) in [
            (1, 1),
            (3, 2),
            (64, 10),
            (5, 32),
            (300, 33),
            (5, 64),
            (5, 65),
            (4, 257),
            (3, 5003),
            (2, 8161),
            (2, 9000),
            (3, 70_001),
            (2_100, 8_000),
        ] {
            for weighted in [false, true] {
                cases.push(Case::new(rows, classes, 4.0, weighted));
            }
        }
        // Logits far beyond exp's range: only the max shift keeps them finite.
        cases.push(Case::new(6, 40, 2.0e4, true));
        cases
    }

    // The reference runs on flex (the CPU): burn's composed reduction over a dimension of 65,535
    // or more that is not a multiple of 4 covers only its first 65,532 elements on lavapipe
    // (sum_dim, max_dim, mean; measured with Mesa 22.3.6; SwiftShader is right), so on wgpu the
    // composed loss of a 70,001-class vocabulary is wrong there, and the kernel's is not.

    #[test]
    fn fused_row_losses_match_the_composed_ones() {
        let device = kernels::test_device();
        for case in cases() {
            let (logits, targets, weights) = case.tensors(&device);
            assert!(
                applies(&logits, &targets),
                "{}: the kernel applies",
                case.name()
            );
            let before = launched();
            let fused = kernels::cross_entropy::row_losses(logits, targets, weights);
            assert_eq!(launched() - before, 1, "{}: one dispatch", case.name());
            let (logits, targets, weights) = case.tensors(&Device::flex());
            let composed = row_losses_reference(logits, targets, weights);
            assert_close(&case.name(), &read(fused), &read(composed), 2e-6, 1.0);
        }
    }

    /// The loss and the gradient of the logits through the fused path (its backward kernel) on
    /// wgpu and through the composed one on flex, for the trainers' mean loss and for per-row
    /// losses scaled by distinct factors (so every row's incoming gradient differs).
    #[test]
    fn fused_gradients_match_the_composed_ones() {
        let wgpu = kernels::test_device().autodiff();
        let flex = Device::flex().autodiff();
        for case in cases() {
            for per_row in [false, true] {
                let run = |device: &Device, fused: bool| {
                    let (logits, targets, weights) = case.tensors(device);
                    let logits = logits.require_grad();
                    let before = launched();
                    let loss = if per_row {
                        let scales: Vec<f32> =
                            (0..case.rows).map(|r| 1.0 + (r % 5) as f32).collect();
                        let scales =
                            Tensor::<1>::from_data(TensorData::new(scales, [case.rows]), device);
                        let rows = if fused {
                            kernels::cross_entropy::row_losses(logits.clone(), targets, weights)
                        } else {
                            row_losses_reference(logits.clone(), targets, weights)
                        };
                        (rows * scales).sum()
                    } else {
                        cross_entropy(logits.clone(), targets, weights, fused)
                    };
                    let grads = loss.clone().backward();
                    let g = logits.grad(&grads).expect("the logits have a gradient");
                    let launches = launched() - before;
                    (read(loss), read(g), launches)
                };
                let what = format!(
                    "{}, {}",
                    case.name(),
                    if per_row { "scaled rows" } else { "mean" }
                );
                let (fused_loss, fused_grad, launches) = run(&wgpu, true);
                assert_eq!(launches, 2, "{what}: a forward and a backward dispatch");
                let (_, _, none) = run(&wgpu, false);
                assert_eq!(none, 0, "{what}: no kernel when switched off");
                let (loss, composed_grad, _) = run(&flex, false);
                assert_close(&format!("{what}: loss"), &fused_loss, &loss, 2e-6, 1.0);
                assert_close(
                    &format!("{what}: gradient"),
                    &fused_grad,
                    &composed_grad,
                    1e-4,
                    1e-2,
                );
            }
        }
    }

    #[test]
    fn targets_that_are_not_classes_give_nan_unless_weighed_zero() {
        let device = kernels::test_device();
        let logits = Tensor::<2>::zeros([3, 4], &device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![4i64, -1, 9], [3]), &device);
        let weights = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [3]), &device);
        let losses = read(kernels::cross_entropy::row_losses(
            logits,
            targets,
            Some(weights),
        ));
        assert!(losses[0].is_nan() && losses[1].is_nan(), "{losses:?}");
        assert_eq!(losses[2], 0.0, "a row of weight 0 is left out: {losses:?}");
    }

    #[test]
    fn the_kernel_is_not_used_off_wgpu() {
        let device = Device::flex();
        let logits = Tensor::<2>::zeros([2, 3], &device);
        let targets = Tensor::<1, Int>::zeros([2], &device);
        assert!(!applies(&logits, &targets));
    }
}
