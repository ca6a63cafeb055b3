//! The tokenizer of a language model: a Hugging Face `tokenizer.json` through the `tokenizers`
//! crate (loaded, or built here at character level from the training text), used without
//! special tokens, truncation or padding: text in, ids out, and back.

use std::collections::BTreeSet;

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// The unknown-character token of a character-level tokenizer.
pub const UNK: &str = "<unk>";

/// A language model's tokenizer.
#[derive(Clone)]
pub struct LmTokenizer {
    inner: Tokenizer,
    json: Vec<u8>,
}

impl std::fmt::Debug for LmTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl LmTokenizer {
    /// A tokenizer from a `tokenizer.json` (named `source` in errors).
    ///
    /// # Errors
    /// Bytes that are not a tokenizer the crate reads, or an empty vocabulary.
    pub fn from_json(source: &str, bytes: &[u8]) -> Result<Self> {
        let mut inner = super::read_tokenizer(source, bytes)?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::data(source, e.to_string()))?;
        if inner.get_vocab_size(true) == 0 {
            return Err(Error::data(source, "the tokenizer has an empty vocabulary"));
        }
        Ok(Self {
            inner,
            json: bytes.to_vec(),
        })
    }

    /// A character-level tokenizer over the characters of `text` (sorted, after [`UNK`] at id
    /// 0): a `BPE` model without merges and the `Fuse` decoder, which transformers'
    /// `PreTrainedTokenizerFast` reads as it is.
    ///
    /// # Errors
    /// Empty text.
    pub fn char_level(source: &str, text: &str) -> Result<Self> {
        let chars: BTreeSet<char> = text.chars().collect();
        if chars.is_empty() {
            return Err(Error::data(source, "the text is empty"));
        }
        let mut vocab = serde_json::Map::new();
        vocab.insert(UNK.into(), 0.into());
        for (i, c) in chars.iter().enumerate() {
            vocab.insert(c.to_string(), (i + 1).into());
        }
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [{"id": 0, "content": UNK, "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Fuse"},
            "model": {"type": "BPE", "dropout": null, "unk_token": UNK,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": []},
        });
        let bytes = serde_json::to_vec(&json).map_err(|e| Error::data(source, e.to_string()))?;
        Self::from_json(source, &bytes)
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The `tokenizer.json` it was made from.
    pub fn to_json(&self) -> &[u8] {
        &self.json
    }

    /// The ids of `text` (no special tokens). Long texts are encoded line by line.
    ///
    /// # Errors
    /// A tokenizer failure (named).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len());
        for piece in text.split_inclusive('\n') {
            let e = self
                .inner
                .encode(piece, false)
                .map_err(|e| Error::data("tokenizer", format!("cannot encode the text ({e})")))?;
            ids.extend_from_slice(e.get_ids());
        }
        Ok(ids)
    }

    /// The text of `ids`.
    ///
    /// # Errors
    /// Ids outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::data("tokenizer", format!("cannot decode ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_level_round_trips_and_marks_unknown_characters() {
        let text = "To be, or not to be:\nthat is the question. Ünïcödé ok\n";
        let tok = LmTokenizer::char_level("input.txt", text).expect("tokenizer");
        let distinct: BTreeSet<char> = text.chars().collect();
        assert_eq!(tok.vocab_size(), distinct.len() + 1);
        let ids = tok.encode(text).expect("encode");
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(tok.decode(&ids).expect("decode"), text);
        assert_eq!(
            tok.encode("Tz").expect("unknown"),
            [tok.encode("T").expect("T")[0], 0]
        );
        // The written tokenizer.json loads again and behaves the same.
        let again = LmTokenizer::from_json("tokenizer.json", tok.to_json()).expect("reload");
        assert_eq!(again.encode(text).expect("encode"), ids);
        let err = LmTokenizer::from_json("tokenizer.json", b"{}").expect_err("bad");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        assert!(LmTokenizer::char_level("empty.txt", "").is_err());
    }
}
