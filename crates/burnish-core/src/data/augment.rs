//! Image augmentation applied to training batches on the host: random crop with padding (a
//! random shift of up to `pad` pixels each way, the border replicated) and an optional
//! left-right flip. Validation and test rows are never augmented.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::{Error, Result};

/// Augmentation switches. Only image data sets are augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Augment training images (default false).
    pub enabled: bool,
    /// Random crop with this much padding, i.e. shifts of up to `pad` pixels in each direction,
    /// the edge pixels replicated into the gap (default 1).
    pub pad: usize,
    /// Mirror left-right with probability 1/2 (default false: digits and letters must not be
    /// mirrored).
    pub horizontal_flip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            pad: 1,
            horizontal_flip: false,
        }
    }
}

impl AugmentConfig {
    /// Check the config against an image shape.
    ///
    /// # Errors
    /// [`Error::Config`] when `pad` is not smaller than the image's height and width.
    pub fn validate(&self, shape: [usize; 3]) -> Result<()> {
        let [_, h, w] = shape;
        if self.enabled && self.pad >= h.min(w) {
            return Err(Error::config(
                "augment.pad",
                format!(
                    "expected a padding smaller than the {h}x{w} images, found {}",
                    self.pad
                ),
            ));
        }
        Ok(())
    }

    /// Augment every channel-major row of `shape` in `rows` in place, drawing from `rng`.
    pub fn apply(&self, rows: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
        if !self.enabled {
            return;
        }
        let [c, h, w] = shape;
        let size = c * h * w;
        if size == 0 {
            return;
        }
        let mut scratch = vec![0.0; size];
        let span = 2 * self.pad as u64 + 1;
        for row in rows.chunks_exact_mut(size) {
            let dy = (rng.next_u64() % span) as isize - self.pad as isize;
            let dx = (rng.next_u64() % span) as isize - self.pad as isize;
            let flip = self.horizontal_flip && rng.next_u64() & 1 == 1;
            for ch in 0..c {
                let plane = &row[ch * h * w..(ch + 1) * h * w];
                for y in 0..h {
                    let sy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                    for x in 0..w {
                        let xx = if flip { w - 1 - x } else { x };
                        let sx = (xx as isize + dx).clamp(0, w as isize - 1) as usize;
                        scratch[ch * h * w + y * w + x] = plane[sy * w + sx];
                    }
                }
            }
            row.copy_from_slice(&scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<f32> {
        (0..9).map(|v| v as f32).collect()
    }

    #[test]
    fn disabled_or_zero_shift_leaves_rows_alone() {
        let mut rng = Rng::new(1);
        let mut rows = ramp();
        AugmentConfig::default().apply(&mut rows, [1, 3, 3], &mut rng);
        assert_eq!(rows, ramp());
        let still = AugmentConfig {
            enabled: true,
            pad: 0,
            horizontal_flip: false,
        };
        still.apply(&mut rows, [1, 3, 3], &mut rng);
        assert_eq!(rows, ramp());
    }

    #[test]
    fn shifts_replicate_edges_and_flips_mirror() {
        // Every outcome of a 1-pixel shift of a 3x3 ramp, with and without a flip, is one of the
        // 18 hand-derivable images; each seed must give one of them and all must occur.
        let config = AugmentConfig {
            enabled: true,
            pad: 1,
            horizontal_flip: true,
        };
        let src = ramp();
        let shifted = |dy: isize, dx: isize, flip: bool| -> Vec<f32> {
            let mut out = Vec::new();
            for y in 0..3isize {
                for x in 0..3isize {
                    let xx = if flip { 2 - x } else { x };
                    let sy = (y + dy).clamp(0, 2) as usize;
                    let sx = (xx + dx).clamp(0, 2) as usize;
                    out.push(src[sy * 3 + sx]);
                }
            }
            out
        };
        let mut expected = Vec::new();
        for dy in -1..=1 {
            for dx in -1..=1 {
                for flip in [false, true] {
                    expected.push(shifted(dy, dx, flip));
                }
            }
        }
        assert_eq!(
            shifted(1, 0, false),
            vec![3., 4., 5., 6., 7., 8., 6., 7., 8.]
        );
        assert_eq!(
            shifted(0, 0, true),
            vec![2., 1., 0., 5., 4., 3., 8., 7., 6.]
        );
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = Rng::new(7);
        for _ in 0..400 {
            let mut row = ramp();
            config.apply(&mut row, [1, 3, 3], &mut rng);
            let i = expected
                .iter()
                .position(|e| *e == row)
                .unwrap_or_else(|| panic!("unexpected {row:?}"));
            seen.insert(i);
        }
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn channels_move_together_and_pad_is_checked() {
        let config = AugmentConfig {
            enabled: true,
            pad: 1,
            horizontal_flip: true,
        };
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let mut row: Vec<f32> = ramp().into_iter().chain(ramp()).collect();
            config.apply(&mut row, [2, 3, 3], &mut rng);
            assert_eq!(row[..9], row[9..]);
        }
        let err = AugmentConfig { pad: 3, ..config }
            .validate([1, 3, 3])
            .expect_err("too much padding")
            .to_string();
        assert!(err.contains("augment.pad"), "{err}");
    }
}
