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

/// 40 labelled reviews over the tiny vocabulary and a fast recipe, in `dir`.
fn reviews(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
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
    (data, recipe)
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn text_fine_tunes_exports_and_continues() {
    let dir = std::env::temp_dir().join(format!("burnish-text-{}", std::process::id()));
    let model = dir.join("tiny");
    tiny_folder(&model);
    let (data, recipe) = reviews(&dir);
    let out = dir.join("tuned");
    let s = path;
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

/// The JSON lines of `burnish predict`, as class probabilities.
fn probabilities(stdout: &str) -> Vec<Vec<f64>> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            serde_json::from_value(v["classes"]["probabilities"].clone()).expect("probabilities")
        })
        .collect()
}

#[test]
fn lora_writes_a_peft_adapter_that_predicts_like_the_merged_model() {
    let dir = std::env::temp_dir().join(format!("burnish-lora-{}", std::process::id()));
    let model = dir.join("tiny");
    tiny_folder(&model);
    let (data, recipe) = reviews(&dir);
    let (adapter, merged) = (dir.join("adapter"), dir.join("merged"));
    let lora = [
        "--tuning",
        "lora",
        "--lora-rank",
        "4",
        "--lora-targets",
        "query,value,intermediate",
    ];
    let base = [
        "text".to_string(),
        path(&data),
        "--model".into(),
        path(&model),
        "--recipe".into(),
        path(&recipe),
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        burnish(&args)
    };
    let (a, m) = (path(&adapter), path(&merged));
    let (ok, stdout, stderr) = run(&[&lora[..], &["--adapter-out", &a, "--out", &m]].concat());
    assert!(ok, "{stdout}\n{stderr}");
    // 2 layers x (query 4 x 32 + value 4 x 32 + intermediate 4 x (16 + 32)) + head 17 x 2.
    assert!(
        stdout.contains("LoRA r=4 alpha=16 on query, value, intermediate: 930 of"),
        "{stdout}"
    );
    assert!(stdout.contains("training 930 parameters"), "{stdout}");
    assert!(
        stdout.contains("LoRA adapter (PEFT layout) written"),
        "{stdout}"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "burnish_adapter.json",
    ] {
        assert!(adapter.join(f).is_file(), "{f}");
    }

    // Base + adapter predicts what the merged folder predicts.
    let texts = ["the good film", "awful poor film", "fine"];
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&texts);
        let (ok, stdout, stderr) = burnish(&args);
        assert!(ok, "{stdout}\n{stderr}");
        probabilities(&stdout)
    };
    let with_adapter = predict(&["--model", &path(&model), "--adapter", &a]);
    let from_merged = predict(&["--model", &m]);
    assert_eq!(with_adapter.len(), 3);
    for (x, y) in with_adapter
        .iter()
        .flatten()
        .zip(from_merged.iter().flatten())
    {
        assert!((x - y).abs() < 1e-5, "{with_adapter:?} vs {from_merged:?}");
    }

    // Training goes on from the adapter, with its settings; other settings are refused.
    let (ok, stdout, stderr) = run(&[&lora[..], &["--adapter", &a]].concat());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("LoRA r=4 alpha=16 on query, value, intermediate onto"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(&["--adapter", &a, "--tuning", "lora", "--lora-rank", "8"]);
    assert!(!ok);
    assert!(
        stderr.contains("the current model's adapters have rank 4 on query, value, intermediate"),
        "{stderr}"
    );
    // Without LoRA there is no adapter to write.
    let (ok, _, stderr) = run(&[
        "--tuning",
        "head",
        "--adapter-out",
        &path(&dir.join("none")),
    ]);
    assert!(!ok);
    assert!(stderr.contains("has no LoRA adapter"), "{stderr}");
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
