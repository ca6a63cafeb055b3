//! The CLI end to end on the 8x8 digits (1,797 images, scikit-learn's copy, fetched from Debian's
//! python3-sklearn by `cargo xtask setup`): train, report, export; then import the export and
//! continue training. The test split must reach at least 90% accuracy.

use std::path::PathBuf;
use std::process::Command;

fn digits() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.assets/digits.csv.gz");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` (it fetches the test assets)",
        path.display()
    );
    path
}

fn burnish(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_burnish"))
        .args(args)
        .output()
        .expect("run burnish");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "burnish {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn accuracy(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in:\n{stdout}"))
}

#[test]
fn digits_train_export_import_continue() {
    let dir = std::env::temp_dir().join(format!("burnish-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let data = digits();
    let model = dir.join("digits.safetensors");
    let out = burnish(&[
        "train",
        data.to_str().expect("utf-8"),
        "--no-header",
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    let first = accuracy(&out);
    println!("{out}");
    assert!(first >= 0.90, "test accuracy {first} < 0.90");
    assert!(out.contains("weighted avg"), "the report is printed");
    assert!(out.contains("1797 rows, 64 features, 10 classes"), "{out}");

    let recipe = dir.join("recipe.json");
    std::fs::write(&recipe, r#"{"fit": {"epochs": 2}}"#).expect("write");
    let again = dir.join("again.safetensors");
    let out = burnish(&[
        "train",
        data.to_str().expect("utf-8"),
        "--no-header",
        "--import",
        model.to_str().expect("utf-8"),
        "--recipe",
        recipe.to_str().expect("utf-8"),
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    let continued = accuracy(&out);
    assert!(
        continued >= 0.90,
        "continuing from the export starts from its weights: {continued}"
    );
    assert!(out.contains("epoch 1/2"), "{out}");
    assert!(again.is_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_files_get_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("burnish-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2,3\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_burnish"))
        .args(["train", bad.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: invalid data in bad.csv: line 2: expected 2 cells as in the header, found 3"
    );
    let _ = std::fs::remove_dir_all(dir);
}
