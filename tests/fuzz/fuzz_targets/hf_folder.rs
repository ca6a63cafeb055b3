//! A Hugging Face BERT folder through the page's loader: the first byte picks which of
//! config.json, tokenizer.json and model.safetensors is the input (the others are valid).
#![no_main]

use burnish_core::data::images::FolderFile;
use burnish_core::session::text_session::TextSession;
use libfuzzer_sys::fuzz_target;

const CONFIG: &[u8] = include_bytes!("../../corpus/files/bert/tensor-shape/config.json");
const TOKENIZER: &[u8] = include_bytes!("../../fixtures/tiny-tokenizer.json");
const WEIGHTS: &[u8] = include_bytes!("../../corpus/files/bert/no-tokenizer/model.safetensors");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let mut files = vec![
        FolderFile {
            path: "m/config.json".into(),
            bytes: CONFIG.to_vec(),
        },
        FolderFile {
            path: "m/tokenizer.json".into(),
            bytes: TOKENIZER.to_vec(),
        },
        FolderFile {
            path: "m/model.safetensors".into(),
            bytes: WEIGHTS.to_vec(),
        },
    ];
    files[usize::from(pick % 3)].bytes = bytes.to_vec();
    let _ = TextSession::default().load_model(&files);
});
