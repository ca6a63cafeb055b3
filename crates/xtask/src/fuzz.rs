//! `cargo xtask fuzz [--seconds N]`: every coverage-guided fuzz target in `tests/fuzz/` (cargo
//! fuzz, libFuzzer, stable Rust with `--sanitizer none`) for N seconds each, seeded with the
//! bad-input corpus (`tests/corpus/files/`), and a table of executions and crashes. A crash fails
//! it; libFuzzer leaves the input under `tests/fuzz/artifacts/<target>/`. `cargo xtask test` runs
//! it briefly; longer runs are for hunting.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, root, run};

/// The targets, each with how the corpus seeds it: (directory under `tests/corpus/files`, file
/// name filter, the first byte the target reads as its selector, if any).
const TARGETS: &[(&str, &[(&str, &str, Option<u8>)])] = &[
    (
        "tables",
        &[
            ("tables", ".csv", Some(0)),
            ("tables", ".tsv", Some(1)),
            ("tables", ".jsonl", Some(2)),
            ("tables", ".gz", Some(3)),
            ("texts", ".csv", Some(0)),
            ("texts", ".jsonl", Some(2)),
        ],
    ),
    (
        "safetensors",
        &[
            ("safetensors", ".safetensors", Some(0)),
            ("adapters", "adapter_model.safetensors", Some(2)),
            ("autosaves", ".ckpt", Some(3)),
        ],
    ),
    ("conll", &[("conll", ".conll", None)]),
    ("idx", &[("idx", ".idx3", None)]),
    (
        "images",
        &[("images", ".png", None), ("images", ".jpg", None)],
    ),
    (
        "hf_folder",
        &[
            ("bert", "config.json", Some(0)),
            ("bert", "tokenizer.json", Some(1)),
            ("bert", "model.safetensors", Some(2)),
        ],
    ),
    (
        "lm",
        &[
            ("lm", ".txt", Some(0)),
            ("lm", ".json", Some(1)),
            ("gpt", "tokenizer.json", Some(1)),
        ],
    ),
];

/// Every file under `dir`, recursively, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Write `target`'s seeds into `out` (cleared first).
fn seed(target: &str, out: &Path) -> Result<usize> {
    let corpus = root().join("tests/corpus/files");
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let (_, sources) = TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .ok_or("unknown target")?;
    let mut n = 0;
    for (dir, suffix, selector) in *sources {
        for path in files(&corpus.join(dir)) {
            if !path.to_string_lossy().ends_with(suffix) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut input: Vec<u8> = selector.iter().copied().collect();
            if target == "idx" {
                // The target splits at a little-endian u16: images, then the labels file.
                let labels = std::fs::read(corpus.join("idx/labels.idx1"))
                    .map_err(|e| format!("idx/labels.idx1: {e}"))?;
                input.extend((bytes.len().min(u16::MAX as usize) as u16).to_le_bytes());
                input.extend(&bytes);
                input.extend(labels);
            } else {
                input.extend(&bytes);
            }
            n += 1;
            let name = out.join(format!("seed-{n:03}"));
            std::fs::write(&name, input).map_err(|e| format!("{}: {e}", name.display()))?;
        }
    }
    Ok(n)
}

/// Executions libFuzzer reports at the end (`stat::number_of_executed_units: N`).
fn executions(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Build the targets and run each for `seconds`.
pub fn fuzz(seconds: u64) -> Result {
    crate::setup::fuzz()?;
    let fuzz_dir = root().join("tests/fuzz");
    let fuzz_dir_s = fuzz_dir.to_string_lossy().to_string();
    // Instrumented builds live apart from the project's (another target triple directory).
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || fuzz_dir.join("target"),
        |d| PathBuf::from(d).join("fuzz"),
    );
    let target_dir_s = target_dir.to_string_lossy().to_string();
    let started = std::time::Instant::now();
    run(
        "cargo",
        &[
            "fuzz",
            "build",
            "--fuzz-dir",
            &fuzz_dir_s,
            "--sanitizer",
            "none",
            "--release",
            "--target-dir",
            &target_dir_s,
        ],
    )?;
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (target, _) in TARGETS {
        let seeds = target_dir.join("fuzz-seeds").join(target);
        let seeded = seed(target, &seeds)?;
        // What libFuzzer finds interesting is kept between runs on this machine.
        let corpus = target_dir.join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        let output = Command::new("cargo")
            .current_dir(root())
            .args([
                "fuzz",
                "run",
                "--fuzz-dir",
                &fuzz_dir_s,
                "--sanitizer",
                "none",
                "--release",
                "--target-dir",
                &target_dir_s,
                target,
            ])
            .arg(&corpus)
            .arg(&seeds)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
                "-malloc_limit_mb=1024",
                "-timeout=10",
                "-print_final_stats=1",
            ])
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let execs = executions(&log);
        let crashed = !output.status.success();
        rows.push((target, seeded, execs, crashed));
        if crashed {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "xtask: fuzz target `{target}` failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            failed.push(*target);
        }
    }
    println!("\n| fuzz target | seeds | seconds | executions | crashes |");
    println!("|---|---|---|---|---|");
    for (target, seeded, execs, crashed) in &rows {
        println!(
            "| {target} | {seeded} | {seconds} | {} | {} |",
            execs.map_or("?".into(), |e| e.to_string()),
            u8::from(*crashed)
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets crashed: {} (inputs under tests/fuzz/artifacts/)",
            failed.join(", ")
        ))
    }
}
