//! `burnish lm` and `burnish generate` end to end: a GPT trained from scratch on a small text,
//! written as a GPT-2 folder, loaded back to generate (greedy is deterministic); a file that is
//! not UTF-8 is named with its line.

use std::process::Command;

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
fn lm_trains_exports_and_generates() {
    let dir = std::env::temp_dir().join(format!("burnish-lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let text = "the cat sat on the mat.\nthe dog sat on the log.\n".repeat(40);
    let data = dir.join("rhymes.txt");
    std::fs::write(&data, &text).expect("write");
    let recipe = dir.join("recipe.json");
    std::fs::write(
        &recipe,
        r#"{"model": {"context": 24, "layers": 2, "heads": 2, "hidden": 32, "dropout": 0.0},
            "train": {"learning_rate": 0.01, "batch_size": 16, "steps": 120},
            "eval_every": 40, "sample_every": 60, "prompt": "the ", "sample": {"max_tokens": 30, "temperature": 0}}"#,
    )
    .expect("write");
    let out = dir.join("model");
    let p = |x: &std::path::Path| x.to_str().expect("utf-8").to_string();
    let (ok, stdout, stderr) =
        burnish(&["lm", &p(&data), "--recipe", &p(&recipe), "--out", &p(&out)]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("tokens in the vocabulary"), "{stdout}");
    assert!(stdout.contains("--- sample at step 60 ---"), "{stdout}");
    let perplexity: f64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("held-out loss ")?
                .split("perplexity ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("final perplexity");
    assert!(
        perplexity < 2.0,
        "two rhymes repeated are predictable: {perplexity}\n{stdout}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["n_positions"], 24);
    assert!(out.join("model.safetensors").is_file() && out.join("tokenizer.json").is_file());

    let generate = || {
        let (ok, stdout, stderr) = burnish(&[
            "generate",
            "--model",
            &p(&out),
            "--prompt",
            "the dog",
            "--max-tokens",
            "20",
            "--temperature",
            "0",
        ]);
        assert!(ok, "{stdout}\n{stderr}");
        stdout
    };
    let a = generate();
    assert_eq!(a, generate(), "greedy generation repeats");
    assert!(a.starts_with("the dog sat on the"), "{a}");

    std::fs::write(&data, b"fine line\nbad \xff byte\n").expect("write");
    let (ok, _, stderr) = burnish(&["lm", &p(&data)]);
    assert!(!ok);
    assert!(
        stderr.contains("rhymes.txt: line 2, column 5: not UTF-8"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
