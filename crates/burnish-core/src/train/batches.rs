//! The order batches are drawn in: without replacement from a per-epoch shuffle made by the
//! portable [`Rng`], so a seed gives the same batches on every backend.

use crate::rng::Rng;

/// Hands out batches of row indices, reshuffling at each epoch boundary.
#[derive(Debug, Clone)]
pub(crate) struct BatchOrder {
    rng: Rng,
    order: Vec<usize>,
    cursor: usize,
}

/// Where a [`BatchOrder`] stands (an autosave): the generator, this epoch's shuffle and the
/// position in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchPosition {
    /// The shuffling generator's state.
    pub rng: u64,
    /// This epoch's row order (empty before the first batch).
    pub order: Vec<usize>,
    /// Rows of `order` already handed out.
    pub cursor: usize,
}

impl BatchOrder {
    /// Where it stands.
    pub(crate) fn position(&self) -> BatchPosition {
        BatchPosition {
            rng: self.rng.state(),
            order: self.order.clone(),
            cursor: self.cursor,
        }
    }

    /// Put back a position, checked against `n` rows.
    pub(crate) fn restore(position: BatchPosition, n: usize) -> Option<Self> {
        let valid = position.cursor <= position.order.len()
            && (position.order.is_empty() || position.order.len() == n)
            && position.order.iter().all(|&i| i < n);
        valid.then(|| Self {
            rng: Rng::new(position.rng),
            order: position.order,
            cursor: position.cursor,
        })
    }

    pub(crate) fn new(rng: Rng) -> Self {
        Self {
            rng,
            order: Vec::new(),
            cursor: 0,
        }
    }

    /// The next `size` rows (at most `n`) of `n`; a batch may straddle two epochs.
    pub(crate) fn next(&mut self, n: usize, size: usize) -> Vec<usize> {
        let size = size.min(n);
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            if self.cursor == self.order.len() {
                self.order = (0..n).collect();
                self.rng.shuffle(&mut self.order);
                self.cursor = 0;
            }
            let take = (size - batch.len()).min(self.order.len() - self.cursor);
            batch.extend_from_slice(&self.order[self.cursor..self.cursor + take]);
            self.cursor += take;
        }
        batch
    }
}
