//! The optimizer step alone, fused WGSL kernels (`shaders/adam.wgsl`, `shaders/sgd.wgsl`) against burn's composed
//! operations, side by side in one run, on parameters shaped like all-MiniLM-L6-v2 (22.6 M
//! values in 103 tensors) and like a small CNN (13.7 k values in 8 tensors). Prints ms per
//! optimizer step and the ratio. Run by `cargo xtask bench` (or
//! `cargo bench -p burnish-tests --bench optimizer`).

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burnish_core::train::optim::Optimizer;
use burnish_core::train::optimizer::OptimizerKind;

/// A stack of parameters of the given shapes.
#[derive(Module, Debug)]
struct Stack {
    params: Vec<Param<Tensor<2>>>,
}

fn stack(shapes: &[[usize; 2]], device: &Device) -> Stack {
    Stack {
        params: shapes
            .iter()
            .map(|&s| {
                Param::from_tensor(Tensor::random(
                    s,
                    burn::tensor::Distribution::Default,
                    device,
                ))
            })
            .collect(),
    }
}

struct Ids(Vec<(ParamId, [usize; 2])>);
impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let s = param.shape();
        self.0.push((param.id, [s[0], s[1]]));
    }
}

fn grads(model: &Stack, device: &Device) -> GradientsParams {
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    let mut grads = GradientsParams::new();
    for (id, shape) in ids.0 {
        grads.register(
            id,
            Tensor::<2>::random(shape, burn::tensor::Distribution::Default, device),
        );
    }
    grads
}

/// Mean ms per optimizer step over `steps` steps after two warm-up steps (shader compiles),
/// ending with one read so the device has finished.
fn time(
    shapes: &[[usize; 2]],
    kind: OptimizerKind,
    fused: bool,
    steps: usize,
    device: &Device,
) -> f64 {
    let mut model = stack(shapes, device);
    let mut optim = Optimizer::new(kind, 0.01, 0.9);
    optim.set_fused_kernels(fused);
    let sync = |m: &Stack| {
        let _: f32 = pollster::block_on(m.params[0].val().sum().into_scalar_async()).expect("read");
    };
    for _ in 0..2 {
        let g = grads(&model, device);
        model = optim.step(1e-3, model, g, None);
    }
    sync(&model);
    // The gradients are made before the clock starts: only the update is timed.
    let all: Vec<GradientsParams> = (0..steps).map(|_| grads(&model, device)).collect();
    sync(&model);
    let start = Instant::now();
    for g in all {
        model = optim.step(1e-3, model, g, None);
    }
    sync(&model);
    start.elapsed().as_secs_f64() * 1000.0 / steps as f64
}

fn minilm() -> Vec<[usize; 2]> {
    let mut shapes = vec![[30_522, 384], [512, 384], [2, 384], [1, 384], [1, 384]];
    for _ in 0..6 {
        for _ in 0..4 {
            shapes.extend([[384, 384], [1, 384]]);
        }
        shapes.extend([
            [1, 384],
            [1, 384],
            [384, 1536],
            [1, 1536],
            [1536, 384],
            [1, 384],
            [1, 384],
            [1, 384],
        ]);
    }
    shapes.extend([[384, 2], [1, 2]]);
    shapes
}

fn cnn() -> Vec<[usize; 2]> {
    vec![
        [16, 9],
        [1, 16],
        [32, 144],
        [1, 32],
        [128, 64],
        [1, 64],
        [64, 10],
        [1, 10],
    ]
}

fn main() {
    let device = match Device::wgpu_options().init() {
        Ok(d) => d,
        Err(err) => {
            println!("optimizer bench: no wgpu adapter ({err}); nothing to compare");
            return;
        }
    };
    println!("| parameters | optimizer | composed ms/step | fused ms/step | fused speed-up |");
    println!("|---|---|---|---|---|");
    for (name, shapes, steps) in [
        ("a CNN-sized set", cnn(), 50),
        ("all-MiniLM-L6-v2", minilm(), 5),
    ] {
        let values: usize = shapes.iter().map(|s| s[0] * s[1]).sum();
        for kind in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            let composed = time(&shapes, kind, false, steps, &device);
            let fused = time(&shapes, kind, true, steps, &device);
            println!(
                "| {name} ({values} values, {} tensors) | {kind:?} | {composed:.2} | {fused:.2} | {:.2}x |",
                shapes.len(),
                composed / fused
            );
        }
    }
}
