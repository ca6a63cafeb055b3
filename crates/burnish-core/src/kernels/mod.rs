//! burnish's hand-written WGSL kernels (`shaders/*.wgsl`), for hot paths where burn's generated
//! kernels leave speed on the table.
//!
//! Each kernel is one `.wgsl` file, loaded with `include_str!` here and nowhere else, and
//! specialised with template items (`{{ name }}`): the uniform struct generated from its Rust
//! definition (so the two layouts cannot drift), the workgroup size and constants such as a mode.
//! CubeCL compiles a kernel once per kernel id, which is keyed by the kernel's
//! name and every template item, and caches the pipeline under it.
//!
//! A kernel runs only on tensors that live on a wgpu device (the browser's WebGPU, or wgpu
//! natively), are `f32` and contiguous; otherwise the caller falls back to burn's composed
//! operations, which compute the same thing. Every kernel has that composed reference beside it
//! and tests comparing the two (outputs, and gradients for a kernel on the autodiff path), on wgpu.
//!
//! Without the `wgpu` feature nothing here launches and every entry point answers "not here".

pub(crate) mod adam;
pub(crate) mod attention;
pub(crate) mod clip;
pub(crate) mod conv_pool;
pub(crate) mod cross_entropy;
pub(crate) mod dropout;
pub(crate) mod gelu;
pub(crate) mod layer_norm;
pub(crate) mod linear;
pub(crate) mod lora;
pub(crate) mod qkv;
#[cfg(feature = "wgpu")]
mod registry;
pub(crate) mod self_attention;
pub(crate) mod sgd;
#[cfg(all(test, feature = "wgpu"))]
pub(crate) use registry::LAUNCHES;
#[cfg(feature = "wgpu")]
pub(crate) use registry::Uniform;

use burn::prelude::*;

/// Whether the kernels can run on these tensors: all `f32` on a wgpu device (with autodiff or
/// without).
pub(crate) fn applies<const D: usize>(tensors: &[&Tensor<D>]) -> bool {
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::DispatchDevice;
        use burn::tensor::DType;
        tensors.iter().all(|t| {
            t.dtype() == DType::F32
                && matches!(
                    t.device().without_autodiff().as_dispatch(),
                    DispatchDevice::Cube(_)
                )
        })
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = tensors;
        false
    }
}

/// Whether `device` (with autodiff or without) is a wgpu adapter with `shader-f16`, where burn's
/// matrix products can take half-precision inputs.
pub(crate) fn has_f16(device: &Device) -> bool {
    #[cfg(feature = "wgpu")]
    {
        crate::gpu::adapter_of(device).is_some_and(|a| a.shader_f16)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = device;
        false
    }
}

/// `value` made safe for a kernel to write in place while the caller keeps clones of the result
/// where it belongs (a module's parameter, which then sees the update): contiguous and held by
/// nobody else, else a copy (so a clone kept elsewhere, such as the best epoch's weights, keeps
/// its values). Off wgpu, `value` itself.
pub(crate) fn writable(value: Tensor<1>) -> Tensor<1> {
    #[cfg(feature = "wgpu")]
    {
        registry::burn_tensor(registry::owned(value))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        value
    }
}

/// Parameters one grouped optimizer launch (`adam.wgsl`, `sgd.wgsl`) takes.
pub(crate) fn group_slots() -> usize {
    #[cfg(feature = "wgpu")]
    {
        registry::GROUP_SLOTS
    }
    #[cfg(not(feature = "wgpu"))]
    {
        1
    }
}

/// The largest storage buffer one kernel may bind on `device`, in bytes: the adapter's limit
/// as the runtime requested it, WebGPU's default (128 MiB) where it is not known.
pub(crate) fn max_storage_binding(device: &Device) -> u64 {
    #[cfg(feature = "wgpu")]
    {
        crate::gpu::adapter_of(device).map_or(128 << 20, |a| a.max_storage_binding)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = device;
        128 << 20
    }
}

/// Defines a uniform block shared by Rust and WGSL from one field list: a `#[repr(C)]` Rust
/// struct, its WGSL declaration (`WGSL`) and its bytes as CubeCL's info words. Fields are 4-byte
/// scalars (`f32`, `u32`), so the two layouts agree field for field; the byte size is padded to
/// WGSL's 16-byte uniform alignment.
macro_rules! uniform {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        #[repr(C)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        const _: () = {
            $(assert!(::core::mem::size_of::<$ty>() == 4);)*
        };

        #[cfg(feature = "wgpu")]
        impl $crate::kernels::Uniform for $name {
            const WGSL: &'static str = concat!(
                "struct ", stringify!($name), " {\n",
                $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)*
                "}\n"
            );

            fn bytes(&self) -> Vec<u8> {
                let mut bytes = Vec::with_capacity(::core::mem::size_of::<Self>());
                $(bytes.extend_from_slice(&self.$field.to_le_bytes());)*
                bytes
            }
        }
    };
}
pub(crate) use uniform;

/// The wgpu device of this test process: the runtime starts once per process, so every test
/// that needs wgpu shares it.
#[cfg(all(test, feature = "wgpu"))]
pub(crate) fn test_device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            crate::gpu::init().unwrap_or_else(|err| {
                panic!("no wgpu adapter ({err}); `cargo xtask test` installs Mesa's lavapipe")
            })
        })
        .clone()
}

/// What the kernels' tests share: reading a tensor back, counting launches, and comparing a
/// kernel's values with the composed reference's.
#[cfg(all(test, feature = "wgpu"))]
pub(crate) mod test_util {
    use burn::prelude::*;

    /// The tensor's values (f32).
    pub(crate) fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        pollster::block_on(t.into_data_async())
            .expect("read")
            .try_to_vec()
            .expect("f32")
    }

    /// Every parameter's gradient in `grads` (from `GradientsParams::from_grads`), in the
    /// module's visiting order; an empty list for a parameter without one.
    pub(crate) fn param_grads<M: burn::module::Module>(
        module: &M,
        grads: &burn::optim::GradientsParams,
    ) -> Vec<Vec<f32>> {
        struct Collect<'a> {
            grads: &'a burn::optim::GradientsParams,
            out: Vec<Vec<f32>>,
        }
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let grad = self.grads.get::<D>(param.id).map(read).unwrap_or_default();
                self.out.push(grad);
            }
        }
        let mut collect = Collect {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut collect);
        collect.out
    }

    /// Kernels launched from this thread so far.
    pub(crate) fn launched() -> usize {
        super::LAUNCHES.with(std::cell::Cell::get)
    }

    /// Every value within `tol` relative to its reference value, or to `floor` times the
    /// reference's largest magnitude where that is more (rounding errors scale with the largest
    /// values, not with each tiny one), naming the worst index.
    pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32, floor: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let largest = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
        let (i, worst) = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(floor * largest))
            .enumerate()
            .fold((0, 0.0f32), |w, (i, d)| if d > w.1 { (i, d) } else { w });
        assert!(
            worst <= tol,
            "{what}: index {i} differs: fused {} vs composed {} (relative {worst:.2e})",
            got[i],
            want[i]
        );
    }
}
