//! The bad-input corpus (`tests/corpus/`, written by `make_corpus.py`): every case goes through
//! the loader the page and the CLI use for its format, and must fail with an error that says
//! what its `expect` strings say (the file's name among them), without a panic, within a time
//! limit, and without any single allocation larger than the input justifies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use burn::prelude::Device;
use burnish_core::data::images::{FolderFile, ImageFolderConfig};
use burnish_core::model::gpt::GptConfig;
use burnish_core::session::lm::{LmSession, TrainedLm};
use burnish_core::session::recipe::Recipe;
use burnish_core::session::text_session::TextSession;
use burnish_core::session::workspace::{LoadRequest, Role, Workspace};
use burnish_core::text::LmTokenizer;

/// The system allocator, recording the largest single request.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("corpus")
}

/// Inputs too big to commit.
fn generated(kind: &str) -> Vec<u8> {
    match kind {
        // An 8 MB cell on one line: the message must not carry it whole.
        "huge-line" => {
            let mut text = "x,label\n1,a\n".to_string();
            text.push_str(&"7z".repeat(4_000_000));
            text.push_str(",b\n");
            text.into_bytes()
        }
        other => panic!("unknown generated input {other}"),
    }
}

/// The base model the GPT adapter cases go onto (the corpus's GPT-2 shape).
fn tiny_gpt(device: &Device) -> TrainedLm {
    let config = GptConfig {
        vocab_size: 5,
        context: 8,
        layers: 1,
        heads: 2,
        hidden: 4,
        dropout: 0.0,
    };
    TrainedLm {
        model: config.init(1, device).expect("tiny GPT"),
        config,
        tokenizer: LmTokenizer::char_level("base", "abc \n").expect("tokenizer"),
    }
}

/// Run `loader` on `files`; the error's text.
fn load(loader: &str, files: Vec<FolderFile>) -> Result<(), String> {
    let device = Device::flex();
    let s = |e: burnish_core::Error| e.to_string();
    match loader {
        "checkpoint" => {
            let f = &files[0];
            burnish_core::session::checkpoint::Checkpoint::from_bytes(&f.path, &f.bytes)
                .map(drop)
                .map_err(s)
        }
        "classifier" => {
            let f = &files[0];
            Workspace::new()
                .import(&f.path, &f.bytes)
                .map(drop)
                .map_err(s)
        }
        "table" => {
            let request = LoadRequest::Table {
                label: None,
                has_header: true,
                image: None,
            };
            Workspace::new()
                .load(Role::Train, &request, &files)
                .map(drop)
                .map_err(s)
        }
        "images" => {
            let request = LoadRequest::Images {
                config: ImageFolderConfig::default(),
            };
            Workspace::new()
                .load(Role::Train, &request, &files)
                .map(drop)
                .map_err(s)
        }
        "idx" => Workspace::new()
            .load(Role::Train, &LoadRequest::Idx, &files)
            .map(drop)
            .map_err(s),
        "text" => TextSession::default()
            .load(Role::Train, false, None, &files)
            .map(drop)
            .map_err(s),
        "text_validation" => {
            let mut session = TextSession::default();
            session
                .load(Role::Train, false, None, &files[..1])
                .map_err(|e| format!("the training file failed: {e}"))?;
            session
                .load(Role::Validation, false, None, &files[1..])
                .map(drop)
                .map_err(s)
        }
        "conll" => TextSession::default()
            .load(Role::Train, true, None, &files)
            .map(drop)
            .map_err(s),
        "text_model" => TextSession::default()
            .load_model(&files)
            .map(drop)
            .map_err(s),
        "lm_text" => LmSession::default().load_text(&files).map(drop).map_err(s),
        "lm_model" => LmSession::default()
            .load_model(&files, &device)
            .map(drop)
            .map_err(s),
        "lm_adapter" => {
            let mut session = LmSession::default();
            session.set_model(tiny_gpt(&device), "trained");
            session.load_adapter(&files, &device).map(drop).map_err(s)
        }
        "recipe" => serde_json::from_slice::<Recipe>(&files[0].bytes)
            .map(drop)
            .map_err(|e| format!("{}: {e}", files[0].path)),
        other => panic!("unknown loader {other}"),
    }
}

#[test]
fn every_bad_input_is_refused_by_name_without_panic_hang_or_huge_allocation() {
    let cases: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(root().join("cases.json")).expect("tests/corpus/cases.json"),
    )
    .expect("cases.json");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    let mut per_loader = std::collections::BTreeMap::<String, usize>::new();
    let mut largest_seen = (0usize, 0usize, String::new());
    for case in &cases {
        let name = case["name"].as_str().expect("name").to_string();
        let loader = case["loader"].as_str().expect("loader").to_string();
        *per_loader.entry(loader.clone()).or_default() += 1;
        let files: Vec<FolderFile> = case["files"]
            .as_object()
            .expect("files")
            .iter()
            .map(|(as_name, path)| {
                let path = path.as_str().expect("path");
                let bytes = match path.strip_prefix("generate:") {
                    Some(kind) => generated(kind),
                    None => std::fs::read(root().join("files").join(path))
                        .unwrap_or_else(|e| panic!("{path}: {e}")),
                };
                FolderFile {
                    path: as_name.clone(),
                    bytes,
                }
            })
            .collect();
        let input: usize = files.iter().map(|f| f.bytes.len()).sum();
        let expect: Vec<String> = case["expect"]
            .as_array()
            .expect("expect")
            .iter()
            .map(|e| e.as_str().expect("string").to_string())
            .collect();
        // Allowance: the decoded input several times over (text to strings to numbers, images
        // decoded to f32), plus what the tiny models themselves take.
        let allowance = 64 * input + (4 << 20);
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            LARGEST.store(0, Ordering::Relaxed);
            let outcome = std::panic::catch_unwind(|| load(&loader, files));
            let largest = LARGEST.load(Ordering::Relaxed);
            let _ = tx.send((outcome, largest));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Err(_) => {
                failures.push(format!("{name}: no answer within 30 s"));
                continue;
            }
            Ok((Err(_), _)) => failures.push(format!("{name}: panicked")),
            Ok((Ok(Ok(())), _)) => failures.push(format!("{name}: loaded without an error")),
            Ok((Ok(Err(message)), largest)) => {
                let missing: Vec<&String> = expect
                    .iter()
                    .filter(|e| !message.contains(e.as_str()))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!("{name}: {message:?} does not say {missing:?}"));
                }
                if largest > allowance {
                    failures.push(format!(
                        "{name}: a single allocation of {largest} bytes for {input} bytes of input"
                    ));
                }
                if largest > largest_seen.0 {
                    largest_seen = (largest, input, name.clone());
                }
                println!("{name}: {message}");
            }
        }
        let _ = worker.join();
    }
    println!("{} cases by loader: {per_loader:?}", cases.len());
    println!(
        "largest single allocation: {} bytes, for {} bytes of input ({})",
        largest_seen.0, largest_seen.1, largest_seen.2
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
