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
