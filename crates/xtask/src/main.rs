//! `cargo xtask`: the project's task runner. The README's two commands are `cargo xtask serve`
//! and `cargo xtask test`; both install what is missing first.
//!
//! It has no dependencies, so it builds in seconds on a fresh machine.

mod fuzz;
mod serve;
mod setup;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Errors are plain sentences for the terminal.
type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  serve [--port N]   set up, build the page (release) and serve it on 127.0.0.1 (default port 8080)
  test               set up everything, then run the whole test suite: native unit and backend
                     tests, the release wasm build, and the browser tests in headless Chromium
  fuzz [--seconds N] run every fuzz target (tests/fuzz/) for N seconds (default 60), seeded with
                     the bad-input corpus; prints executions and crashes
  bench              benchmarks side by side (native flex and wgpu, the page in Chromium, TF.js in
                     the same browser): prints a table, writes bench-results/results.{md,json}
  build-web          build the page into dist/ with Trunk
  setup [--web]      install what is missing (all, or only what building the page needs), and
                     fetch the test data sets into .assets/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => port_arg(&args[1..]).and_then(|port| {
            setup::web()?;
            setup::assets()?;
            build_web()?;
            serve::serve(&root().join("dist"), port, true)
        }),
        Some("test") => test(),
        Some("bench") => bench(),
        Some("fuzz") => seconds_arg(&args[1..]).and_then(fuzz::fuzz),
        Some("build-web") => setup::web()
            .and_then(|()| setup::assets())
            .and_then(|()| build_web()),
        Some("setup") if args.get(1).is_some_and(|a| a == "--web") => setup::web(),
        Some("setup") => setup::web()
            .and_then(|()| setup::test())
            .and_then(|()| setup::assets()),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn port_arg(args: &[String]) -> Result<u16> {
    match args {
        [] => Ok(8080),
        [flag, port] if flag == "--port" => port
            .parse()
            .map_err(|_| format!("--port expects a number from 0 to 65535, found `{port}`")),
        _ => Err(USAGE.to_string()),
    }
}

fn seconds_arg(args: &[String]) -> Result<u64> {
    match args {
        [] => Ok(60),
        [flag, n] if flag == "--seconds" => n
            .parse()
            .map_err(|_| format!("--seconds expects a whole number, found `{n}`")),
        _ => Err(USAGE.to_string()),
    }
}

/// The workspace root (xtask lives in crates/xtask). Read at run time: cargo does not rebuild
/// when the same target directory serves clones at different paths, so a compiled-in path can
/// point at another clone.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the workspace root")
        .to_path_buf()
}

/// Run a command in the workspace root, echoing it; fail with its exit status.
fn run(program: &str, args: &[&str]) -> Result {
    run_with_env(program, args, &[])
}

fn build_web() -> Result {
    let start = std::time::Instant::now();
    run("trunk", &["build", "--release=true"])?;
    // The built-in demo's data (fetched by `setup::assets`, never committed) is served next to
    // the page, so the demo needs no files from the user and no other origin.
    let demo = root().join(".assets/digits.csv.gz");
    std::fs::copy(&demo, root().join("dist/digits.csv.gz"))
        .map_err(|e| format!("cannot copy the demo data {}: {e}", demo.display()))?;
    // The text demo: MiniLM's folder and the labelled snippets (hard links where possible: the
    // weights are 87 MiB).
    let minilm = root().join("dist/minilm");
    std::fs::create_dir_all(&minilm)
        .map_err(|e| format!("cannot create {}: {e}", minilm.display()))?;
    for (from, to) in [
        (".assets/minilm/config.json", "dist/minilm/config.json"),
        (
            ".assets/minilm/tokenizer.json",
            "dist/minilm/tokenizer.json",
        ),
        (
            ".assets/minilm/model.safetensors",
            "dist/minilm/model.safetensors",
        ),
        (".assets/movie_sentiment.csv", "dist/movie_sentiment.csv"),
        (".assets/tinyshakespeare.txt", "dist/tinyshakespeare.txt"),
    ] {
        let (from, to) = (root().join(from), root().join(to));
        let _ = std::fs::remove_file(&to);
        std::fs::hard_link(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            .map_err(|e| format!("cannot copy the text demo's {}: {e}", from.display()))?;
    }
    eprintln!(
        "xtask: page built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    report_wasm_size();
    Ok(())
}

fn report_wasm_size() {
    let path = root().join("dist/burnish-web_bg.wasm");
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    // gzip -9 is what a static host would serve; measured with the system's gzip if present.
    let gzipped = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -9 -c '{}' | wc -c", path.display()))
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        });
    eprintln!(
        "xtask: {} is {:.2} MB raw, {} gzipped",
        path.display(),
        bytes.len() as f64 / 1e6,
        gzipped.map_or("? MB".into(), |g| format!("{:.2} MB", g / 1e6))
    );
}

/// Seconds per fuzz target in `cargo xtask test` (`cargo xtask fuzz` runs longer).
const FUZZ_SECONDS: u64 = 15;

fn test() -> Result {
    setup::web()?;
    setup::test()?;
    setup::assets()?;
    let start = std::time::Instant::now();
    run("cargo", &["test", "--workspace"])?;
    let native = start.elapsed().as_secs_f64();
    // A short fuzzing round: every parser's target, seeded with the bad-input corpus.
    let fuzz_start = std::time::Instant::now();
    fuzz::fuzz(FUZZ_SECONDS)?;
    let fuzzing = fuzz_start.elapsed().as_secs_f64();
    build_web()?;
    let server = serve::spawn(&root().join("dist"))?;
    let url = format!("http://127.0.0.1:{}/", server.port);
    eprintln!("xtask: browser tests against {url}");
    let browser_start = std::time::Instant::now();
    // The CLI that `cargo test` just built: the browser tests load its exports in the page and
    // the page's exports in it.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let cli = target.join("debug/burnish");
    let cli = cli.to_string_lossy();
    let outcome = run_with_env(
        "node",
        &["--test", "--test-reporter=spec", "tests/browser/"],
        &[("BURNISH_URL", url.as_str()), ("BURNISH_CLI", &cli)],
    );
    eprintln!(
        "xtask: native tests {native:.0} s, fuzzing {fuzzing:.0} s, browser tests {:.0} s",
        browser_start.elapsed().as_secs_f64()
    );
    outcome
}

/// The benchmarks: the release CLI natively, the page and TF.js in Chromium, one run.
fn bench() -> Result {
    setup::web()?;
    setup::test()?;
    setup::assets()?;
    run("cargo", &["build", "--release", "-p", "burnish-cli"])?;
    build_web()?;
    // TF.js (pinned in tests/bench/package-lock.json) and its reference page, served with the app.
    let bench = root().join("tests/bench");
    if !bench
        .join("node_modules/@tensorflow/tfjs/package.json")
        .exists()
    {
        setup::npm_ci(&bench)?;
    }
    let out = root().join("dist/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (from, to) in [
        ("tests/bench/tfjs.html", "tfjs.html"),
        ("tests/bench/tfjs.js", "tfjs.js"),
        (
            "tests/bench/node_modules/@tensorflow/tfjs/dist/tf.min.js",
            "tf.min.js",
        ),
        (
            "tests/bench/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js",
            "tf-backend-webgpu.min.js",
        ),
    ] {
        std::fs::copy(root().join(from), out.join(to))
            .map_err(|e| format!("cannot copy {from}: {e}"))?;
    }
    let server = serve::spawn(&root().join("dist"))?;
    let url = format!("http://127.0.0.1:{}/", server.port);
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let cli = target.join("release/burnish");
    let paths = [
        cli.to_string_lossy().into_owned(),
        root().join(".assets").to_string_lossy().into_owned(),
        root().join("dist").to_string_lossy().into_owned(),
        root().join("bench-results").to_string_lossy().into_owned(),
    ];
    run_with_env(
        "node",
        &["tests/bench/bench.mjs"],
        &[
            ("BURNISH_URL", url.as_str()),
            ("BURNISH_CLI", &paths[0]),
            ("BURNISH_ASSETS", &paths[1]),
            ("BURNISH_DIST", &paths[2]),
            ("BURNISH_BENCH_OUT", &paths[3]),
        ],
    )
}

/// [`run`] with extra environment variables.
fn run_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .envs(setup::tool_env())
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}
