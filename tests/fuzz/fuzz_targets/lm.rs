//! Language-model inputs: a text to train on (character-level tokenizer built from it), or a
//! tokenizer.json given with a fixed text (the first byte picks).
#![no_main]

use burnish_core::session::lm::LmData;
use libfuzzer_sys::fuzz_target;

const TEXT: &[u8] = b"the cat sat on the mat. the dog sat on the log. the end of the text.";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        let _ = LmData::load("book.txt", bytes, None);
    } else {
        let _ = LmData::load("book.txt", TEXT, Some(bytes));
    }
});
