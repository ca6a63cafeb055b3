//! Starting burn's wgpu runtime, and saying which adapter it runs on.
//!
//! burn describes a wgpu device by how it was selected (`DefaultDevice`), not by what was found,
//! so a run's `started` event could not tell a GPU from a software renderer, nor one software
//! renderer from another (lavapipe and SwiftShader differ 2.3x in speed here). Starting the
//! runtime through [`init`] or [`init_async`] keeps the adapter's description, and
//! [`adapter_of`] gives it for a device.

use std::sync::OnceLock;

use burn::prelude::*;
use burn::tensor::wgpu::{WgpuInitError, WgpuSetup, wgpu};

/// What the wgpu adapter said about itself when the runtime started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// The adapter's name ("NVIDIA H100", "llvmpipe (LLVM 15.0.6, 256 bits)"); browsers may
    /// leave it empty.
    pub name: String,
    /// The graphics API (Vulkan, Metal, WebGPU, ...).
    pub backend: String,
    /// Discrete, integrated, virtual GPU, or a CPU renderer.
    pub device_type: String,
    /// The driver and its version, where the API says.
    pub driver: String,
    /// Whether the device offers `shader-f16`.
    pub shader_f16: bool,
    /// The largest storage buffer binding the runtime may use, in bytes.
    pub max_storage_binding: u64,
}

impl AdapterInfo {
    fn from_setup(setup: &WgpuSetup) -> Self {
        let info = setup.adapter.get_info();
        let driver = [info.driver.trim(), info.driver_info.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            name: info.name.trim().to_string(),
            backend: match info.backend {
                wgpu::Backend::Vulkan => "Vulkan",
                wgpu::Backend::Metal => "Metal",
                wgpu::Backend::Dx12 => "DirectX 12",
                wgpu::Backend::Gl => "OpenGL",
                wgpu::Backend::BrowserWebGpu => "WebGPU",
                wgpu::Backend::Noop => "no API",
            }
            .to_string(),
            device_type: match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete GPU",
                wgpu::DeviceType::IntegratedGpu => "integrated GPU",
                wgpu::DeviceType::VirtualGpu => "virtual GPU",
                wgpu::DeviceType::Cpu => "CPU renderer",
                wgpu::DeviceType::Other => "GPU",
            }
            .to_string(),
            driver,
            shader_f16: setup.device.features().contains(wgpu::Features::SHADER_F16),
            max_storage_binding: setup.device.limits().max_storage_buffer_binding_size,
        }
    }
}

impl std::fmt::Display for AdapterInfo {
    /// "llvmpipe (LLVM 15.0.6, 256 bits), CPU renderer on Vulkan, driver llvmpipe Mesa 22.3.6",
    /// with ", shader-f16" where the device has it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.name.is_empty() {
            "an unnamed adapter"
        } else {
            &self.name
        };
        write!(f, "{name}, {} on {}", self.device_type, self.backend)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
        }
        if self.shader_f16 {
            write!(f, ", shader-f16")?;
        }
        Ok(())
    }
}

/// The adapter the wgpu runtime started on, once [`init`] or [`init_async`] has run. A process
/// (or a worker) starts one runtime, so one description serves every wgpu device it hands out.
static ADAPTER: OnceLock<AdapterInfo> = OnceLock::new();

fn keep(setup: &WgpuSetup) {
    let _ = ADAPTER.set(AdapterInfo::from_setup(setup));
}

/// Start burn's wgpu runtime on the default adapter and keep its description (native only: the
/// browser must use [`init_async`]).
///
/// # Errors
/// When no adapter can be found or the runtime fails to start.
#[cfg(not(target_family = "wasm"))]
pub fn init() -> std::result::Result<Device, WgpuInitError> {
    let (device, setup) = Device::wgpu_options().init_with_setup()?;
    keep(&setup);
    Ok(device)
}

/// Start burn's wgpu runtime on the default adapter and keep its description.
///
/// # Errors
/// When no adapter can be found or the runtime fails to start.
pub async fn init_async() -> std::result::Result<Device, WgpuInitError> {
    let (device, setup) = Device::wgpu_options().init_with_setup_async().await?;
    keep(&setup);
    Ok(device)
}

/// The adapter a device runs on: the one the runtime started on, for a wgpu device (autodiff or
/// not); `None` for other backends.
pub fn adapter_of(device: &Device) -> Option<&'static AdapterInfo> {
    use burn::backend::DispatchDevice;
    let inner = device.clone().without_autodiff();
    match inner.as_dispatch() {
        DispatchDevice::Cube(_) => ADAPTER.get(),
        _ => None,
    }
}

/// Set the largest matrix product (`rows x d_in x d_out` multiply-adds) that burnish's own
/// dense-layer kernels (`shaders/linear*.wgsl`) take before handing over to burn's tiled,
/// autotuned product; layers of at most 65,536 weights always take them. The default,
/// 2^27 (MiniLM's feed-forward layers up to 227 tokens a batch), is a guess for GPUs; the
/// products bench (`tests/benches/products.rs`) times both kernels side by side on an adapter
/// to place it. For the whole process (a browser worker is one), for products computed after the call.
pub fn set_product_kernel_limit(multiply_adds: u64) {
    crate::kernels::linear::set_max_product(multiply_adds);
}

/// The limit [`set_product_kernel_limit`] sets.
pub fn product_kernel_limit() -> u64 {
    crate::kernels::linear::max_product()
}
