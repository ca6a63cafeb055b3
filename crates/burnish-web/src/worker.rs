//! The Web Worker entry: the wasm start function, the message handler and the browser [`Host`].

use std::cell::RefCell;
use std::collections::HashMap;

use burn::prelude::Device;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use burnish_core::data::images::FolderFile;
use burnish_core::session::checkpoint::CheckpointInfo;
use burnish_core::session::lm;
use burnish_core::session::recipe::Recipe;
use burnish_core::session::text_session::predict_text;
use burnish_core::session::workspace::{evaluate_model, predict};
use burnish_core::session::{Command, Control, Event, Host, RunState, Workspace, run_demo};

#[cfg(target_family = "wasm")]
unsafe extern "C" {
    /// Runs the static constructors once. Without this call wasm-ld wraps every export so that
    /// each call from JS re-runs them all (cubecl registers kernels through `inventory`), which
    /// made a training step ~30x slower.
    fn __wasm_call_ctors();
}

thread_local! {
    /// The burn device, created on the first run and kept: a wgpu runtime initialises once.
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
    /// The control of each session's run in progress.
    static ACTIVE: RefCell<HashMap<u32, Control>> = RefCell::new(HashMap::new());
    /// Each session's data and model (the page uses session 0; every trainer of the JS API has
    /// its own, all on the one device of this worker).
    static WORKSPACES: RefCell<HashMap<u32, Workspace>> = RefCell::new(HashMap::new());
    /// The worker's GPU device (WebGPU's `GPUDevice`, seen by `watch_device_loss`), for
    /// `debug_lose_device`.
    static GPU_DEVICE: RefCell<Option<JsValue>> = const { RefCell::new(None) };
    /// Whether that device was lost (its `crashed` event is posted).
    static DEVICE_LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The wasm start function: constructors, panic hook, and, inside a dedicated worker, the
/// message handler. On a page (outside a worker) it does nothing more.
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called once, first, before any other wasm code runs.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
    if let Ok(scope) = js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>() {
        // A panic leaves the module unusable: say so to the page (which starts a fresh worker)
        // before the wasm traps, then log it as console_error_panic_hook does.
        std::panic::set_hook(Box::new(|info| {
            post(
                ALL,
                Event::Crashed {
                    message: info.to_string(),
                },
            );
            console_error_panic_hook::hook(info);
        }));
        watch_device_loss();
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(on_message);
        scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        handler.forget();
        post(
            ALL,
            Event::Ready {
                defaults: Box::default(),
                text_defaults: Box::new(Recipe::transformer()),
                lm_defaults: Box::default(),
            },
        );
    }
}

/// Property `key` of `object` (undefined where it has none).
fn property(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Shadow `object`'s method `name` (an own property over the prototype's) with a wrapper that
/// calls the method on `object` with the caller's argument and hands its result (a promise) to
/// `wrap` before returning it, unchanged, to the caller. Nothing happens where `object` has no
/// such method.
fn wrap_method(object: &JsValue, name: &str, wrap: impl Fn(js_sys::Promise) + 'static) {
    let Ok(original) = property(object, name).dyn_into::<js_sys::Function>() else {
        return;
    };
    let this = object.clone();
    let wrapper = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |argument: JsValue| {
        match original.call1(&this, &argument) {
            Ok(result) => {
                let promise = js_sys::Promise::resolve(&result);
                wrap(promise.clone());
                promise.into()
            }
            Err(err) => js_sys::Promise::reject(&err).into(),
        }
    });
    let _ = js_sys::Reflect::set(object, &name.into(), wrapper.as_ref());
    wrapper.forget();
}

/// Run `then` with the value `promise` resolves to, before the code awaiting it resumes: a
/// promise's callbacks run in the order they were added, and this one is added before the
/// promise is handed out. A rejection stays the caller's to handle.
fn on_resolve(promise: &js_sys::Promise, then: impl FnMut(JsValue) + 'static) {
    let then = Closure::<dyn FnMut(JsValue)>::new(then);
    let ignore = Closure::<dyn FnMut(JsValue)>::new(|_: JsValue| {});
    let _ = promise.then(&then).catch(&ignore);
    then.forget();
    ignore.forget();
}

/// A lost GPU device leaves every tensor and kernel of this worker unusable, and a run in
/// progress fails on its next read-back: report the loss itself as a crash (the page drops this
/// worker, starts a fresh one, which gets a new device, and offers the run's last autosave).
/// burn does not expose the `GPUDevice`, so the worker wraps `navigator.gpu.requestAdapter`
/// and each adapter's `requestDevice` (wgpu looks both up on the objects at each call) to see
/// every device it creates, and listens to its `lost` promise, which settles when the browser
/// takes the device away (a driver reset, a GPU process crash, the system reclaiming it) or on
/// `destroy()`. Done in Rust, not a JS snippet: a snippet is one more file for the offline cache.
fn watch_device_loss() {
    let gpu = property(&property(&js_sys::global(), "navigator"), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return;
    }
    wrap_method(&gpu, "requestAdapter", |adapter| {
        on_resolve(&adapter, |adapter| {
            if adapter.is_object() {
                wrap_method(&adapter, "requestDevice", |device| {
                    on_resolve(&device, watch_device);
                });
            }
        });
    });
}

fn watch_device(device: JsValue) {
    GPU_DEVICE.set(Some(device.clone()));
    let Ok(lost) = property(&device, "lost").dyn_into::<js_sys::Promise>() else {
        return;
    };
    on_resolve(&lost, |info| {
        DEVICE_LOST.set(true);
        let reason = property(&info, "reason").as_string().unwrap_or_default();
        let message = property(&info, "message").as_string().unwrap_or_default();
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        post(
            ALL,
            Event::Crashed {
                message: format!("the GPU device was lost ({reason}{detail})"),
            },
        );
    });
}

/// `debug_lose_device`: WebGPU's `destroy()` on the worker's device, if it has one.
fn destroy_device() {
    let Some(device) = GPU_DEVICE.with_borrow(Clone::clone) else {
        return;
    };
    if let Ok(destroy) = property(&device, "destroy").dyn_into::<js_sys::Function>() {
        let _ = destroy.call0(&device);
    }
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Session `u32::MAX` addresses every session (a crash ends them all).
const ALL: u32 = u32::MAX;

/// `session`'s workspace, made on first use.
fn with_ws<T>(session: u32, f: impl FnOnce(&Workspace) -> T) -> T {
    WORKSPACES.with_borrow_mut(|all| f(all.entry(session).or_default()))
}

fn with_ws_mut<T>(session: u32, f: impl FnOnce(&mut Workspace) -> T) -> T {
    WORKSPACES.with_borrow_mut(|all| f(all.entry(session).or_default()))
}

/// The event as a JS object, tagged with its session (`-1`: all).
fn encode(session: u32, event: &Event) -> Option<JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    match serde::Serialize::serialize(event, &serializer) {
        Ok(value) => {
            let tag = if session == ALL {
                -1.0
            } else {
                f64::from(session)
            };
            let _ = js_sys::Reflect::set(&value, &"session".into(), &tag.into());
            Some(value)
        }
        Err(err) => {
            web_sys::console::error_1(&format!("burnish: cannot encode {event:?}: {err}").into());
            None
        }
    }
}

fn post(session: u32, event: Event) {
    if let Some(value) = encode(session, &event)
        && let Err(err) = scope().post_message(&value)
    {
        web_sys::console::error_2(&"burnish: postMessage failed".into(), &err);
    }
}

/// The files attached to a message (`files: [{path, bytes: Uint8Array}]`), taken off it so the
/// rest parses as a [`Command`].
fn take_files(data: &JsValue) -> Result<Vec<FolderFile>, String> {
    let key = JsValue::from_str("files");
    let files = js_sys::Reflect::get(data, &key).unwrap_or(JsValue::UNDEFINED);
    if files.is_undefined() {
        return Ok(Vec::new());
    }
    if let Some(object) = data.dyn_ref::<js_sys::Object>() {
        let _ = js_sys::Reflect::delete_property(object, &key);
    }
    let array: js_sys::Array = files
        .dyn_into()
        .map_err(|_| "`files` must be an array of {path, bytes}".to_string())?;
    array
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = js_sys::Reflect::get(&f, &"path".into())
                .ok()
                .and_then(|p| p.as_string())
                .ok_or_else(|| format!("file {i} has no `path`"))?;
            let bytes = js_sys::Reflect::get(&f, &"bytes".into())
                .ok()
                .and_then(|b| b.dyn_into::<js_sys::Uint8Array>().ok())
                .ok_or_else(|| format!("{path}: `bytes` must be a Uint8Array"))?;
            Ok(FolderFile {
                path,
                bytes: bytes.to_vec(),
            })
        })
        .collect()
}

fn error(session: u32, message: impl ToString) {
    post(
        session,
        Event::Error {
            message: message.to_string(),
        },
    );
}

/// Post the events a command's `result` makes, or its error.
fn reply<T, E: IntoIterator<Item = Event>>(
    session: u32,
    result: burnish_core::Result<T>,
    events: impl FnOnce(T) -> E,
) {
    match result {
        Ok(value) => events(value).into_iter().for_each(|e| post(session, e)),
        Err(e) => error(session, e),
    }
}

/// The `session` a message is for (default 0), taken off it so the rest parses as a
/// [`Command`].
fn take_session(data: &JsValue) -> Result<u32, String> {
    let key = JsValue::from_str("session");
    let value = js_sys::Reflect::get(data, &key).unwrap_or(JsValue::UNDEFINED);
    if let Some(object) = data.dyn_ref::<js_sys::Object>() {
        let _ = js_sys::Reflect::delete_property(object, &key);
    }
    if value.is_undefined() || value.is_null() {
        return Ok(0);
    }
    value
        .as_f64()
        .filter(|v| v.fract() == 0.0 && (0.0..f64::from(u32::MAX)).contains(v))
        .map(|v| v as u32)
        .ok_or_else(|| "`session` must be a whole number from 0".to_string())
}

fn on_message(message: MessageEvent) {
    let data = message.data();
    let session = match take_session(&data) {
        Ok(session) => session,
        Err(message) => return error(0, message),
    };
    let files = match take_files(&data) {
        Ok(files) => files,
        Err(message) => return error(session, message),
    };
    let command: Command = match serde_wasm_bindgen::from_value(data) {
        Ok(command) => command,
        Err(err) => {
            return error(
                session,
                format!("the worker got a message it does not understand: {err}"),
            );
        }
    };
    let active = ACTIVE.with_borrow(|a| a.get(&session).cloned());
    let busy = || {
        error(
            session,
            "a training run is in progress: wait for it, or cancel it first",
        );
    };
    match command {
        Command::StartDemo { request } => {
            if active.is_some() {
                return busy();
            }
            spawn_run(session, move |control| async move {
                let device = device().await?;
                run_demo(&request, &device, &control, &BrowserHost(session))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(None)
            });
        }
        Command::Load { role, request } => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.load(role, &request, &files)),
                |preview| {
                    [Event::Loaded {
                        preview: Box::new(preview),
                    }]
                },
            );
        }
        Command::SetLabel { label } => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.set_label(&label)),
                |previews| {
                    previews.into_iter().map(|preview| Event::Loaded {
                        preview: Box::new(preview),
                    })
                },
            );
        }
        Command::Train {
            recipe,
            continue_training,
            limits,
        } => {
            if active.is_some() {
                return busy();
            }
            spawn_run(session, move |control| async move {
                let device = device().await?;
                let job = with_ws(session, |ws| ws.plan(&recipe, continue_training, &device))
                    .map_err(|e| e.to_string())?;
                if let Some(limits) = limits {
                    job.check_limits(&limits).map_err(|e| e.to_string())?;
                }
                let (export, _) = job
                    .run(&device, &control, &BrowserHost(session))
                    .await
                    .map_err(|e| e.to_string())?;
                let info = with_ws_mut(session, |ws| ws.set_model(export, "trained"));
                Ok(Some(Event::Model {
                    info: Box::new(info),
                }))
            });
        }
        Command::ResumeRun { limits } => {
            if active.is_some() {
                return busy();
            }
            let Some(file) = files.into_iter().next() else {
                return error(session, "resume_run: attach the autosave as the one file");
            };
            spawn_run(session, move |control| async move {
                let device = device().await?;
                let job = with_ws(session, |ws| {
                    ws.plan_resume(&file.path, &file.bytes, &device)
                })
                .map_err(|e| e.to_string())?;
                if let Some(limits) = limits {
                    job.check_limits(&limits).map_err(|e| e.to_string())?;
                }
                drop(file);
                let (export, _) = job
                    .run(&device, &control, &BrowserHost(session))
                    .await
                    .map_err(|e| e.to_string())?;
                let info = with_ws_mut(session, |ws| ws.set_model(export, "trained"));
                Ok(Some(Event::Model {
                    info: Box::new(info),
                }))
            });
        }
        Command::Predict { values } => {
            let prepared = with_ws(session, |ws| {
                let row = ws.input(values, files.first())?;
                Ok::<_, burnish_core::Error>((row, ws.model().cloned()))
            });
            let (row, Some(model)) = (match prepared {
                Ok(p) => p,
                Err(e) => return error(session, e),
            }) else {
                return error(session, "there is no trained or imported model yet");
            };
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    predict(&model, row, &device)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(prediction) => post(session, Event::Prediction { prediction }),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::Evaluate => {
            let prepared = with_ws(session, Workspace::evaluation);
            let (model, data, split) = match prepared {
                Ok(p) => p,
                Err(e) => return error(session, e),
            };
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    evaluate_model(&model, &data, &split, &device)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(report) => post(
                        session,
                        Event::Evaluated {
                            report: Box::new(report),
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::Close => {
            if let Some(control) = active {
                control.cancel();
            }
            WORKSPACES.with_borrow_mut(|all| all.remove(&session));
        }
        Command::Export => match with_ws(session, Workspace::export) {
            Ok(bytes) => post_export(session, &bytes),
            Err(e) => error(session, e),
        },
        Command::Import => {
            if active.is_some() {
                return busy();
            }
            let [file] = files.as_slice() else {
                return error(
                    session,
                    format!("import expects one .safetensors file, got {}", files.len()),
                );
            };
            reply(
                session,
                with_ws_mut(session, |ws| ws.import(&file.path, &file.bytes)),
                |info| {
                    [Event::Model {
                        info: Box::new(info),
                    }]
                },
            );
        }
        Command::LoadModel if lm::is_lm_folder(&files) => {
            if active.is_some() {
                return busy();
            }
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    with_ws_mut(session, |ws| ws.lm.load_model(&files, &device))
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(info) => post(
                        session,
                        Event::LmModel {
                            info: Box::new(info),
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::LoadLmText => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.lm.load_text(&files)),
                |preview| {
                    [Event::LmLoaded {
                        preview: Box::new(preview),
                    }]
                },
            );
        }
        Command::TrainLm {
            recipe,
            continue_training,
        } => {
            if active.is_some() {
                return busy();
            }
            spawn_run(session, move |control| async move {
                let device = device().await?;
                let (data, start) = with_ws(session, |ws| {
                    let start = continue_training.then(|| ws.lm.model().cloned()).flatten();
                    (ws.lm.data().cloned(), start)
                });
                let data = data.ok_or("load a text file (or the language-model demo) first")?;
                if continue_training && start.is_none() {
                    return Err("there is no language model to continue from".into());
                }
                let (trained, _) = lm::train_lm(
                    &data,
                    &recipe,
                    start,
                    &device,
                    &control,
                    &BrowserHost(session),
                )
                .await
                .map_err(|e| e.to_string())?;
                let info = with_ws_mut(session, |ws| ws.lm.set_model(trained, "trained"));
                Ok(Some(Event::LmModel {
                    info: Box::new(info),
                }))
            });
        }
        Command::Generate { prompt, sampling } => {
            if active.is_some() {
                return busy();
            }
            spawn_run(session, move |control| async move {
                let device = device().await?;
                let model = with_ws(session, |ws| ws.lm.model().cloned())
                    .ok_or("train or load a language model first")?;
                let start = BrowserHost(session).now_ms();
                let mut tokens = 0usize;
                let text = lm::sample_text(&model, &prompt, &sampling, &device, |piece| {
                    tokens += 1;
                    post(session, Event::LmToken { text: piece.into() });
                    control.get() != RunState::Cancelled
                })
                .await
                .map_err(|e| e.to_string())?;
                let seconds = (BrowserHost(session).now_ms() - start) / 1e3;
                Ok(Some(Event::Generated {
                    text,
                    tokens,
                    tokens_per_second: if seconds > 0.0 {
                        tokens as f64 / seconds
                    } else {
                        0.0
                    },
                    stopped: control.get() == RunState::Cancelled,
                }))
            });
        }
        Command::ExportLm { adapter } => {
            let Some(model) = with_ws(session, |ws| ws.lm.model().cloned()) else {
                return error(session, "train or load a language model first");
            };
            wasm_bindgen_futures::spawn_local(async move {
                let files = if adapter {
                    // The session's adapter export reads the model it holds; `model` is a
                    // clone of it, so reading either is the same.
                    let base = with_ws(session, |ws| ws.lm.base().to_string());
                    burnish_core::model::peft::export_gpt_adapter(&model.model, &base).await
                } else {
                    lm::export_lm(&model).await
                };
                match files {
                    Ok(files) => post_folder(
                        session,
                        files,
                        if adapter {
                            "burnish-gpt-lora"
                        } else {
                            "burnish-gpt"
                        },
                    ),
                    Err(e) => error(session, e.to_string()),
                }
            });
        }
        Command::LoadModel => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.text.load_model(&files)),
                |info| {
                    [Event::Folder {
                        info: Box::new(info),
                    }]
                },
            );
        }
        Command::LoadText {
            role,
            conll,
            columns,
        } => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.text.load(role, conll, columns, &files)),
                |preview| {
                    [Event::TextLoaded {
                        preview: Box::new(preview),
                    }]
                },
            );
        }
        Command::SetTextColumns { columns } => {
            if active.is_some() {
                return busy();
            }
            reply(
                session,
                with_ws_mut(session, |ws| ws.text.set_columns(&columns)),
                |previews| {
                    previews.into_iter().map(|preview| Event::TextLoaded {
                        preview: Box::new(preview),
                    })
                },
            );
        }
        Command::Estimate { recipe, limits } => {
            match with_ws(session, |ws| ws.text.estimate(&recipe)) {
                Ok(estimate) => {
                    let problem = with_ws(session, |ws| {
                        let folder = ws.text.folder()?;
                        estimate.problem(limits.as_ref()?, &folder.config)
                    });
                    post(
                        session,
                        Event::Memory {
                            estimate: Box::new(estimate),
                            problem,
                        },
                    );
                }
                Err(e) => error(session, e),
            }
        }
        Command::TrainText {
            recipe,
            continue_training,
            limits,
        } => {
            if active.is_some() {
                return busy();
            }
            spawn_run(session, move |control| async move {
                let device = device().await?;
                let job = with_ws(session, |ws| {
                    ws.text
                        .plan(&recipe, continue_training, limits.as_ref(), &device)
                })
                .map_err(|e| e.to_string())?;
                let (trained, _, _) = job
                    .run(&device, &control, &BrowserHost(session))
                    .await
                    .map_err(|e| e.to_string())?;
                let info = with_ws_mut(session, |ws| ws.text.set_model(trained));
                Ok(Some(Event::TextModel {
                    info: Box::new(info),
                }))
            });
        }
        Command::PredictText { text, pair } => {
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    let model = with_ws_mut(session, |ws| ws.text.current(&device))
                        .map_err(|e| e.to_string())?;
                    predict_text(&model, &text, pair.as_deref(), &device)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(prediction) => post(
                        session,
                        Event::TextPrediction {
                            prediction: Box::new(prediction),
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::LoadAdapter if lm::is_lm_adapter(&files) => {
            if active.is_some() {
                return busy();
            }
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    with_ws_mut(session, |ws| ws.lm.load_adapter(&files, &device))
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(info) => post(
                        session,
                        Event::LmModel {
                            info: Box::new(info),
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::LoadAdapter => {
            if active.is_some() {
                return busy();
            }
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    with_ws_mut(session, |ws| ws.text.load_adapter(&files, &device))
                        .map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(info) => post(
                        session,
                        Event::TextModel {
                            info: Box::new(info),
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::ExportText { adapter } => {
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = async {
                    let device = device().await?;
                    let model = with_ws_mut(session, |ws| ws.text.current(&device))
                        .map_err(|e| e.to_string())?;
                    let folder = if adapter {
                        model.export_adapter().await
                    } else {
                        model.export().await
                    };
                    folder.map_err(|e| e.to_string())
                }
                .await;
                match outcome {
                    Ok(folder) => post_folder(
                        session,
                        folder.files,
                        if adapter {
                            "burnish-lora-adapter"
                        } else {
                            "burnish-text-model"
                        },
                    ),
                    Err(message) => error(session, message),
                }
            });
        }
        Command::DebugPanic => panic!("a deliberate panic (the debug_panic command)"),
        Command::DebugLoseDevice => destroy_device(),
        Command::Pause | Command::Resume | Command::Cancel => match active {
            Some(control) => match command {
                Command::Pause => control.pause(),
                Command::Resume => control.resume(),
                _ => control.cancel(),
            },
            None => error(session, "no run is in progress"),
        },
    }
}

/// Start a run: a fresh [`Control`] becomes the active one (so `pause`/`cancel` reach it), `run`
/// is spawned, and when it ends the control is cleared and its event (if any) or error posted.
fn spawn_run<F, Fut>(session: u32, run: F)
where
    F: FnOnce(Control) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<Option<Event>, String>> + 'static,
{
    let control = Control::default();
    ACTIVE.with_borrow_mut(|a| a.insert(session, control.clone()));
    wasm_bindgen_futures::spawn_local(async move {
        let outcome = run(control).await;
        ACTIVE.with_borrow_mut(|a| a.remove(&session));
        match outcome {
            Ok(Some(event)) => post(session, event),
            Ok(None) => {}
            Err(message) => {
                // A lost device fails the run's pending read-back before WebGPU settles the
                // device's `lost` promise: give it a moment, and leave the error unsaid when the
                // loss (the `crashed` event, which names it) explains it.
                BrowserHost(session).sleep(50).await;
                if !DEVICE_LOST.get() {
                    error(session, message);
                }
            }
        }
    });
}

/// Post the `exported` event with the bytes attached as `data` (a transferred `Uint8Array`).
fn post_export(session: u32, bytes: &[u8]) {
    let event = Event::Exported {
        name: "burnish-model.safetensors".into(),
        size: bytes.len(),
    };
    post_with_bytes(session, event, bytes);
}

/// Post `event` with `bytes` attached as `data` (a transferred `Uint8Array`).
fn post_with_bytes(session: u32, event: Event, bytes: &[u8]) {
    let Some(value) = encode(session, &event) else {
        return error(session, "cannot encode the export");
    };
    let array = js_sys::Uint8Array::from(bytes);
    let _ = js_sys::Reflect::set(&value, &"data".into(), &array);
    let transfer = js_sys::Array::of1(&array.buffer());
    if let Err(err) = scope().post_message_with_transfer(&value, &transfer) {
        web_sys::console::error_2(&"burnish: postMessage failed".into(), &err);
    }
}

/// Post the `exported_folder` event with the files' bytes attached as `data` (transferred
/// `Uint8Array`s, in the order of `files`).
fn post_folder(session: u32, files: Vec<(String, Vec<u8>)>, name: &str) {
    let event = Event::ExportedFolder {
        name: name.into(),
        files: files.iter().map(|(n, b)| (n.clone(), b.len())).collect(),
    };
    let Some(value) = encode(session, &event) else {
        return error(session, "cannot encode the export");
    };
    let data = js_sys::Array::new();
    let transfer = js_sys::Array::new();
    for (_, bytes) in &files {
        let array = js_sys::Uint8Array::from(bytes.as_slice());
        transfer.push(&array.buffer());
        data.push(&array);
    }
    let _ = js_sys::Reflect::set(&value, &"data".into(), &data);
    if let Err(err) = scope().post_message_with_transfer(&value, &transfer) {
        web_sys::console::error_2(&"burnish: postMessage failed".into(), &err);
    }
}

/// The wgpu device, created on first use. The runtime asks the adapter for its own limits (not
/// WebGPU's defaults), so large buffers work where the hardware allows them.
async fn device() -> Result<Device, String> {
    if let Some(device) = DEVICE.with_borrow(Clone::clone) {
        return Ok(device);
    }
    let device = burnish_core::gpu::init_async().await.map_err(|err| {
        format!(
            "could not start WebGPU ({err}). Use a browser with WebGPU enabled (Chrome or Edge \
             113+, Safari 26+, Firefox 141+ on Windows); on Linux, Chromium may need \
             --enable-unsafe-webgpu."
        )
    })?;
    DEVICE.set(Some(device.clone()));
    Ok(device)
}

/// The browser side of [`Host`]: `performance.now()`, `postMessage` and `setTimeout`.
struct BrowserHost(u32);

impl Host for BrowserHost {
    fn now_ms(&self) -> f64 {
        scope()
            .performance()
            .map_or_else(js_sys::Date::now, |p| p.now())
    }

    fn post(&self, event: Event) {
        post(self.0, event);
    }

    fn autosaves(&self) -> bool {
        true
    }

    fn autosave(&self, info: CheckpointInfo, bytes: Vec<u8>) {
        post_with_bytes(
            self.0,
            Event::Autosaved {
                info,
                size: bytes.len(),
            },
            &bytes,
        );
    }

    async fn sleep(&self, ms: u32) {
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            let _ =
                scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

/// Whether a run is in progress (for the page's JS and tests).
#[wasm_bindgen(js_name = isRunning)]
pub fn is_running() -> bool {
    ACTIVE.with_borrow(|a| a.values().any(|c| c.get() != RunState::Cancelled))
}
