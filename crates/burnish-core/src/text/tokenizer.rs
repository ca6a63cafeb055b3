use burn::prelude::*;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams, TruncationStrategy};

use crate::model::bert::EncoderInput;
use crate::{Error, Result};

/// A Hugging Face tokenizer with our own truncation (to a length the user picks) and no built-in
/// padding: batches are padded to their longest member ("dynamic padding").
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_len: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("pad_id", &self.pad_id)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// One tokenized text (or pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids (0 for the first text, 1 for the second of a pair).
    pub type_ids: Vec<u32>,
    /// For each token, the index of the word it belongs to (`None` for special tokens).
    pub words: Vec<Option<u32>>,
    /// For each token, its byte range in the text (`(0, 0)` for special tokens; for pre-split
    /// words, the range within its word).
    pub offsets: Vec<(usize, usize)>,
}

impl Encoding {
    /// The words of `text` as the tokenizer split it (the text of each word's tokens, from the
    /// first one's start to the last one's end), in word order.
    pub fn word_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (w, &(a, b)) in self.words.iter().zip(&self.offsets) {
            let Some(w) = w else { continue };
            let w = *w as usize;
            if w >= spans.len() {
                spans.resize(w + 1, (a, b));
                spans[w] = (a, b);
            } else {
                spans[w].0 = spans[w].0.min(a);
                spans[w].1 = spans[w].1.max(b);
            }
        }
        spans.retain(|&(a, b)| a < b && b <= text.len());
        spans
    }
}

impl TextTokenizer {
    /// Read a `tokenizer.json`. Its own truncation and padding settings are replaced: sequences
    /// are cut to `max_len` tokens (longest first for pairs) and padded per batch.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` when the file is not a tokenizer the crate can read;
    /// [`Error::Config`] for a `max_len` below 2.
    pub fn from_json(source: &str, bytes: &[u8], max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::config(
                "max_length",
                format!("expected at least 2 tokens, found {max_len}"),
            ));
        }
        let mut inner = super::read_tokenizer(source, bytes)?;
        let pad_id = inner
            .get_padding()
            .map(|p: &PaddingParams| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .or_else(|| inner.token_to_id("<pad>"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| {
                Error::data(source, format!("cannot truncate to {max_len} tokens ({e})"))
            })?;
        Ok(Self {
            inner,
            pad_id,
            max_len,
        })
    }

    /// Longest sequence produced.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenize one text, or a pair, with special tokens.
    ///
    /// # Errors
    /// [`Error::Data`] when the tokenizer fails on the text (it should not).
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoding> {
        let encoding = match pair {
            Some(second) => self.inner.encode((text, second), true),
            None => self.inner.encode(text, true),
        }
        .map_err(|e| Error::data("text", format!("cannot tokenize ({e})")))?;
        Ok(Encoding {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            words: encoding.get_word_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
        })
    }

    /// Tokenize pre-split words (for token classification), with special tokens.
    ///
    /// # Errors
    /// [`Error::Data`] when the tokenizer fails on the words.
    pub fn encode_words(&self, words: &[&str]) -> Result<Encoding> {
        let encoding = self
            .inner
            .encode(words.to_vec(), true)
            .map_err(|e| Error::data("text", format!("cannot tokenize ({e})")))?;
        Ok(Encoding {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
            words: encoding.get_word_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
        })
    }

    /// Pad `rows` to the longest and upload them as an [`EncoderInput`].
    pub fn batch(&self, rows: &[&Encoding], device: &Device) -> EncoderInput {
        pad_batch(rows, self.pad_id, device)
    }
}

/// Pad `rows` to the longest with `pad_id` (mask 0) and upload them as an [`EncoderInput`].
pub fn pad_batch(rows: &[&Encoding], pad_id: u32, device: &Device) -> EncoderInput {
    let len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(1).max(1);
    let n = rows.len();
    let mut ids = Vec::with_capacity(n * len);
    let mut types = Vec::with_capacity(n * len);
    let mut mask = Vec::with_capacity(n * len);
    for r in rows {
        for i in 0..len {
            let real = i < r.ids.len();
            ids.push(i64::from(if real { r.ids[i] } else { pad_id }));
            types.push(if real { i64::from(r.type_ids[i]) } else { 0 });
            mask.push(if real { 1.0f32 } else { 0.0 });
        }
    }
    EncoderInput {
        ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
        type_ids: Tensor::from_data(TensorData::new(types, [n, len]), device),
        mask: Tensor::from_data(TensorData::new(mask, [n, len]), device),
    }
}
