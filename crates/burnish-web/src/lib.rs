//! burnish-web: the thin layer between the browser and [`burnish_core`].
//!
//! It holds only what needs a browser: the wasm start function, which runs the static
//! constructors once and, inside a dedicated worker, installs the message handler; the browser
//! side of the session [`Host`](burnish_core::session::Host) (clock, `postMessage`, `setTimeout`);
//! and the WebGPU device. The protocol and the run loop live in
//! [`burnish_core::session`], where they are tested natively.

#![warn(missing_docs)]

#[cfg(target_family = "wasm")]
mod worker;
