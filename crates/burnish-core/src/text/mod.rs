//! Text: tokenizers (Hugging Face `tokenizer.json`, through the `tokenizers` crate, which builds
//! for wasm with its `unstable_wasm` feature) and batches of token ids for the encoders.

mod lm_tokenizer;
mod tokenizer;

pub use lm_tokenizer::{LmTokenizer, UNK};
pub use tokenizer::{Encoding, TextTokenizer, pad_batch};

/// The `tokenizers` crate read from a `tokenizer.json` (named `source` in errors), checked as
/// JSON first: tokenizers 0.23 panics (`expect("Helper")` in its decoder deserializer) on a
/// syntax error inside `decoder`, and a panic in the browser kills the worker.
///
/// # Errors
/// Not JSON (line and column named), or not a tokenizer the crate reads.
pub(crate) fn read_tokenizer(source: &str, bytes: &[u8]) -> crate::Result<tokenizers::Tokenizer> {
    // A full parse (not `IgnoredAny`, which skips UTF-8 and escape checks inside strings).
    serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| {
        crate::Error::data(
            source,
            format!("not a valid tokenizer.json: not JSON ({e})"),
        )
    })?;
    tokenizers::Tokenizer::from_bytes(bytes)
        .map_err(|e| crate::Error::data(source, format!("not a valid tokenizer.json ({e})")))
}
