//! Cross-crate tests of burnish live in this package's `[[test]]` targets; the browser tests live
//! in `browser/` and run under Node (see `cargo xtask test`).
