//! The Web Worker entry: the wasm start function, the message handler and the browser [`Host`].

use std::cell::RefCell;

use burn::prelude::Device;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use burnish_core::session::{Command, Control, Event, Host, RunState, run_demo};

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
    /// The control of the run in progress, if any.
    static ACTIVE: RefCell<Option<Control>> = const { RefCell::new(None) };
}

/// The wasm start function: constructors, panic hook, and, inside a dedicated worker, the
/// message handler. On a page (outside a worker) it does nothing more.
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called once, first, before any other wasm code runs.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
    if let Ok(scope) = js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>() {
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(on_message);
        scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        handler.forget();
        post(Event::Ready);
    }
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(event: Event) {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    match serde::Serialize::serialize(&event, &serializer) {
        Ok(value) => {
            if let Err(err) = scope().post_message(&value) {
                web_sys::console::error_2(&"burnish: postMessage failed".into(), &err);
            }
        }
        Err(err) => {
            web_sys::console::error_1(&format!("burnish: cannot encode {event:?}: {err}").into())
        }
    }
}

fn on_message(message: MessageEvent) {
    let command: Command = match serde_wasm_bindgen::from_value(message.data()) {
        Ok(command) => command,
        Err(err) => {
            post(Event::Error {
                message: format!("the worker got a message it does not understand: {err}"),
            });
            return;
        }
    };
    let active = ACTIVE.with_borrow(Clone::clone);
    match command {
        Command::StartDemo { request } => {
            if active.is_some() {
                post(Event::Error {
                    message: "a run is already in progress: cancel it first".into(),
                });
                return;
            }
            let control = Control::default();
            ACTIVE.set(Some(control.clone()));
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = match device().await {
                    Ok(device) => run_demo(&request, &device, &control, &BrowserHost)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(message) => Err(message),
                };
                ACTIVE.set(None);
                if let Err(message) = outcome {
                    post(Event::Error { message });
                }
            });
        }
        Command::Pause | Command::Resume | Command::Cancel => match active {
            Some(control) => match command {
                Command::Pause => control.pause(),
                Command::Resume => control.resume(),
                _ => control.cancel(),
            },
            None => post(Event::Error {
                message: "no run is in progress".into(),
            }),
        },
    }
}

/// The wgpu device, created on first use. The runtime asks the adapter for its own limits (not
/// WebGPU's defaults), so large buffers work where the hardware allows them.
async fn device() -> Result<Device, String> {
    if let Some(device) = DEVICE.with_borrow(Clone::clone) {
        return Ok(device);
    }
    let device = Device::wgpu_options().init_async().await.map_err(|err| {
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
struct BrowserHost;

impl Host for BrowserHost {
    fn now_ms(&self) -> f64 {
        scope()
            .performance()
            .map_or_else(js_sys::Date::now, |p| p.now())
    }

    fn post(&self, event: Event) {
        post(event);
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
    ACTIVE.with_borrow(|a| a.as_ref().is_some_and(|c| c.get() != RunState::Cancelled))
}
