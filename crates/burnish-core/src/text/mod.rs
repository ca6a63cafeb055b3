//! Text: tokenizers (Hugging Face `tokenizer.json`, through the `tokenizers` crate, which builds
//! for wasm with its `unstable_wasm` feature) and batches of token ids for the encoders.

mod lm_tokenizer;
mod tokenizer;

pub use lm_tokenizer::{LmTokenizer, UNK};
pub use tokenizer::{Encoding, TextTokenizer, pad_batch};
