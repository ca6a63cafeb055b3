//! The CLI end to end on the 8x8 digits (1,797 images, scikit-learn's copy, fetched from Debian's
//! python3-sklearn by `cargo xtask setup`): train, report, export; then import the export and
//! continue training. The test split must reach at least 90% accuracy.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

fn digits() -> PathBuf {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../.assets/digits.csv.gz");
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
    // On flex no device allocator: the process's resident peak alone (Linux).
    if cfg!(target_os = "linux") {
        let peak = out
            .lines()
            .find_map(|l| l.strip_prefix("peak memory: process resident "))
            .unwrap_or_else(|| panic!("no process peak in:\n{out}"));
        let mib: f64 = peak.trim_end_matches(" MiB").parse().expect("MiB");
        assert!(mib > 1.0 && mib < 4096.0, "{peak}");
    }

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
fn digits_as_images_train_a_cnn_with_a_user_test_file() {
    let dir = std::env::temp_dir().join(format!("burnish-cnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The user's own split: the last 300 rows are the test file.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(digits()).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    let lines: Vec<&str> = text.lines().collect();
    let (train_rows, test_rows) = lines.split_at(lines.len() - 300);
    let train = dir.join("train.csv");
    let test = dir.join("test.csv");
    std::fs::write(&train, train_rows.join("\n")).expect("write");
    std::fs::write(&test, test_rows.join("\n")).expect("write");
    let recipe = dir.join("recipe.json");
    std::fs::write(
        &recipe,
        r#"{"fit": {"epochs": 10, "patience": null}, "augment": {"enabled": true}, "split": {"validation": 0.15}}"#,
    )
    .expect("write");
    let model = dir.join("cnn.safetensors");
    let out = burnish(&[
        "train",
        train.to_str().expect("utf-8"),
        "--test",
        test.to_str().expect("utf-8"),
        "--no-header",
        "--image-shape",
        "1,8,8",
        "--max-value",
        "16",
        "--recipe",
        recipe.to_str().expect("utf-8"),
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    println!("{out}");
    assert!(out.contains("test.csv: 300 rows for Test"), "{out}");
    assert!(
        out.contains(", 300 test"),
        "the test file replaces the test share: {out}"
    );
    assert!(out.contains("report on 300 held-out rows"), "{out}");
    let acc = accuracy(&out);
    assert!(acc >= 0.85, "CNN after 10 epochs: {acc}");
    let bytes = std::fs::read(&model).expect("export");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + header_len]);
    assert!(
        header.contains(
            r#""convs.0.weight":{"data_offsets":[0,576],"dtype":"F32","shape":[16,1,3,3]}"#
        ),
        "{header}"
    );
    assert!(header.contains(r#"\"kind\":\"cnn\""#), "{header}");
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

/// On wgpu: `BURNISH_PRODUCT_KERNEL_LIMIT` (how large a product burnish's dense-layer kernels
/// take) that is not a number is a one-line error naming the variable, before any data is read;
/// a run with a limit reports its peak memory, the device allocator's and the process's, as a
/// JSON `memory` event.
#[test]
fn wgpu_runs_take_a_product_limit_and_report_peak_memory() {
    let dir = std::env::temp_dir().join(format!("burnish-wgpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let recipe = dir.join("recipe.json");
    std::fs::write(&recipe, r#"{"fit": {"epochs": 1}}"#).expect("write");
    let model = dir.join("m.safetensors");
    let run = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_burnish"))
            .args(["train", digits().to_str().expect("utf-8"), "--no-header"])
            .args(["--recipe", recipe.to_str().expect("utf-8")])
            .args([
                "--out",
                model.to_str().expect("utf-8"),
                "--device",
                "wgpu",
                "--json",
            ])
            .env("BURNISH_PRODUCT_KERNEL_LIMIT", limit)
            .output()
            .expect("run")
    };
    let out = run("0");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let memory: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == "memory")
        .unwrap_or_else(|| panic!("no memory event in:\n{stdout}"));
    let device = memory["device_peak_bytes"]
        .as_u64()
        .expect("wgpu reports its allocator");
    assert!(device > 0 && device < 1 << 30, "{memory}");
    if cfg!(target_os = "linux") {
        assert!(
            memory["process_peak_rss_bytes"]
                .as_u64()
                .is_some_and(|b| b > device / 4),
            "{memory}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);

    let out = run("lots");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().starts_with(
            "error: BURNISH_PRODUCT_KERNEL_LIMIT=\"lots\": expected a number of multiply-adds"
        ) && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}
