//! Data sets, as typed values the trainer consumes. Parsers of file formats take bytes and give
//! these; the built-in demo data is generated here.

pub mod augment;
pub mod conll;
mod dataset;
pub mod demo;
pub mod idx;
pub mod images;
pub mod split;
pub mod table;
pub mod text;

pub use dataset::ClassificationDataset;

/// A cell or name as an error message shows it: at most 60 characters, cut with an ellipsis, so
/// a pathological input cannot make a message as large as itself.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}\u{2026}", &text[..cut]),
        None => text.to_string(),
    }
}
