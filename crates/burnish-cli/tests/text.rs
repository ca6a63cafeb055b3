//! `burnish text` end to end on a tiny BERT-shaped model folder made here (random weights, a
//! word-level tokenizer.json): fine-tune, report, write a Hugging Face folder, then fine-tune that
//! folder again (its classification head is picked up), and clear errors for a broken folder.

use std::path::Path;
use std::process::Command;

use burn::prelude::Device;
use burnish_core::model::bert::{Bert, BertConfig, BertWeights};
use burnish_core::model::bert_classifier::{BertClassifier, Pooling};

/// A word-level tokenizer over a 12-word vocabulary (shared with the core's tests).
const TOKENIZER: &str = include_str!("../../../tests/fixtures/tiny-tokenizer.json");

fn tiny_folder(dir: &Path) {
    let config = BertConfig {
        vocab_size: 12,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: "gelu".into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    };
    let device = Device::flex();
    let bert = Bert::from_weights(&config, BertWeights::random(&config, 7), &device).expect("bert");
    // Written through the exporter, so the folder has transformers' names (`bert.` prefix).
    let model = BertClassifier::new(bert, 2, Pooling::Cls, 0.1, 1, &device);
    let folder = pollster::block_on(model.export_hf(
        &serde_json::to_vec(&config).expect("json"),
        TOKENIZER.as_bytes(),
        &["a".into(), "b".into()],
        16,
    ))
    .expect("folder");
    std::fs::create_dir_all(dir).expect("dir");
    for (name, bytes) in folder.files {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
}

fn burnish(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_burnish"))
        .args(args)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn text_fine_tunes_exports_and_continues() {
    let dir = std::env::temp_dir().join(format!("burnish-text-{}", std::process::id()));
    let model = dir.join("tiny");
    tiny_folder(&model);
    let mut csv = String::from("review,sentiment\n");
    for i in 0..40 {
        let (text, label) = match i % 4 {
            0 => ("the good film", "pos"),
            1 => ("great fine film", "pos"),
            2 => ("the bad film", "neg"),
            _ => ("awful poor film", "neg"),
        };
        csv += &format!("{text},{label}\n");
    }
    let data = dir.join("reviews.csv");
    std::fs::write(&data, csv).expect("write");
    let recipe = dir.join("recipe.json");
    std::fs::write(
        &recipe,
        r#"{"train": {"learning_rate": 0.01, "batch_size": 8, "schedule": {"decay": "constant", "warmup_fraction": 0}}, "fit": {"epochs": 10}}"#,
    )
    .expect("write");
    let out = dir.join("tuned");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let args = [
        "text".to_string(),
        s(&data),
        "--model".into(),
        s(&model),
        "--text".into(),
        "review".into(),
        "--label".into(),
        "sentiment".into(),
        "--recipe".into(),
        s(&recipe),
        "--pooling".into(),
        "mean".into(),
        "--out".into(),
        s(&out),
    ];
    let (ok, stdout, stderr) = burnish(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("40 texts, 2 classes (neg, pos)"),
        "{stdout}"
    );
    assert!(stdout.contains("weighted avg"), "{stdout}");
    assert!(stdout.contains("test accuracy: 1.0000"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["id2label"]["0"], "neg");
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert!(out.join("tokenizer.json").is_file() && out.join("model.safetensors").is_file());

    // The exported folder fine-tunes again, starting from its own head.
    let mut again = args.clone();
    again[3] = s(&out);
    again[13] = s(&dir.join("again"));
    let (ok, stdout, stderr) = burnish(&again.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("continuing with the folder's classification head"),
        "{stdout}"
    );

    std::fs::remove_file(model.join("tokenizer.json")).expect("remove");
    let (ok, _, stderr) = burnish(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok);
    assert!(stderr.contains("has no tokenizer.json"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Tagged sentences over the tiny vocabulary: positive words are `POS` entities, negative ones
/// `NEG`, two in a row are one entity (`B-` then `I-`).
fn conll(n: usize) -> String {
    let sentences: [&[(&str, &str)]; 4] = [
        &[("the", "O"), ("good", "B-POS"), ("film", "O")],
        &[("awful", "B-NEG"), ("poor", "I-NEG"), ("film", "O")],
        &[
            ("great", "B-POS"),
            ("fine", "I-POS"),
            ("the", "O"),
            ("film", "O"),
        ],
        &[("the", "O"), ("film", "O"), ("bad", "B-NEG")],
    ];
    let mut out = String::new();
    for i in 0..n {
        for (word, tag) in sentences[i % 4] {
            out += &format!("{word}\t{tag}\n");
        }
        // WNUT-16's separator: a line holding only a tab.
        out += "\t\n";
    }
    out
}

#[test]
fn text_tags_words_of_a_conll_file() {
    let dir = std::env::temp_dir().join(format!("burnish-ner-{}", std::process::id()));
    let model = dir.join("tiny");
    tiny_folder(&model);
    let data = dir.join("train.conll");
    std::fs::write(&data, conll(48)).expect("write");
    let recipe = dir.join("recipe.json");
    std::fs::write(
        &recipe,
        r#"{"train": {"learning_rate": 0.01, "batch_size": 8, "schedule": {"decay": "constant", "warmup_fraction": 0}}, "fit": {"epochs": 12}, "text": {"dropout": 0.0}}"#,
    )
    .expect("write");
    let out = dir.join("tagger");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let (ok, stdout, stderr) = burnish(&[
        "text",
        &s(&data),
        "--model",
        &s(&model),
        "--recipe",
        &s(&recipe),
        "--out",
        &s(&out),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("48 sentences (156 words), 5 classes (O, B-NEG, B-POS, I-NEG, I-POS)"),
        "{stdout}"
    );
    assert!(stdout.contains("micro avg"), "{stdout}");
    assert!(stdout.contains("entity F1: 1.0000"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["architectures"][0], "BertForTokenClassification");
    assert_eq!(config["id2label"]["3"], "I-NEG");
    assert!(config.get("problem_type").is_none(), "{config}");

    // A broken CoNLL line is named.
    let bad = dir.join("bad.conll");
    std::fs::write(&bad, "the\tO\ngood\n").expect("write");
    let (ok, _, stderr) = burnish(&["text", &s(&bad), "--model", &s(&model)]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.conll") && stderr.contains("line 2: expected `token<TAB>tag`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
