//! A dense layer's product on wgpu, burnish's kernels (`shaders/linear*.wgsl`, no workgroup
//! tiling) against burn's tiled, autotuned matrix product, side by side in one run, at
//! all-MiniLM-L6-v2's layer shapes and a range of rows (tokens a batch): where should the
//! product kernels hand over to burn's (`burnish_core::gpu::set_product_kernel_limit`, 2^27
//! multiply-adds by default)? Prints ms per training step of the layer alone (forward, then the
//! input's, weights' and bias's gradients) and per forward pass, and the ratio. Run by
//! `cargo xtask bench` (or `cargo bench -p burnish-tests --bench products`); rows from
//! `BURNISH_BENCH_ROWS` (comma-separated) where set.

use std::time::Instant;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burnish_core::model::Masks;

/// all-MiniLM-L6-v2's dense layers: the attention output, the feed-forward pair (the packed
/// query/key/value projection, 384 x 1152, sits between them).
const LAYERS: [[usize; 2]; 3] = [[384, 384], [384, 1536], [1536, 384]];

/// What one measurement ran.
#[derive(Clone, Copy)]
enum Pass {
    /// Forward, then every gradient (the layer as a middle layer: the input's too).
    Train,
    /// Forward only, without autodiff (prediction, generation).
    Forward,
}

fn read(t: Tensor<1>) -> f32 {
    pollster::block_on(t.sum().into_scalar_async()).expect("read a scalar")
}

/// One pass of the layer on `x`; returns a value to read so the device has finished.
fn pass(layer: &Linear, x: &Tensor<2>, pass: Pass, fused: bool) -> Tensor<1> {
    let masks = Masks::none().with_fused_kernels(fused);
    let y = masks.linear(layer, x.clone(), false);
    match pass {
        Pass::Forward => y.sum(),
        Pass::Train => {
            let grads = y.sum().backward();
            let dx = x.grad(&grads).expect("the input's gradient");
            let dw = layer.weight.grad(&grads).expect("the weights' gradient");
            dx.sum() + dw.sum()
        }
    }
}

/// Mean ms per pass: one warm-up pass (pipeline compiles, burn's autotuning), then enough passes
/// for about 2^28 multiply-adds (3 to 50), timed to the last one's read.
fn time(device: &Device, [d_in, d_out]: [usize; 2], rows: usize, how: Pass, fused: bool) -> f64 {
    let device = match how {
        Pass::Train => device.clone().autodiff(),
        Pass::Forward => device.clone(),
    };
    let layer = LinearConfig::new(d_in, d_out).init(&device);
    let mut x = Tensor::<2>::random([rows, d_in], burn::tensor::Distribution::Default, &device);
    if matches!(how, Pass::Train) {
        x = x.require_grad();
    }
    read(pass(&layer, &x, how, fused));
    let passes = ((1u64 << 28) / (rows * d_in * d_out) as u64).clamp(3, 50) as usize;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..passes {
        last = Some(pass(&layer, &x, how, fused));
    }
    read(last.expect("at least one pass"));
    start.elapsed().as_secs_f64() * 1000.0 / passes as f64
}

fn main() {
    let device = match burnish_core::gpu::init() {
        Ok(d) => d,
        Err(err) => {
            println!("products bench: no wgpu adapter ({err}); nothing to compare");
            return;
        }
    };
    let adapter = burnish_core::gpu::adapter_of(&device).expect("the adapter just started");
    let cpu = adapter.device_type == "CPU renderer";
    let rows: Vec<usize> = match std::env::var("BURNISH_BENCH_ROWS") {
        Ok(list) => list
            .split(',')
            .map(|r| {
                r.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("BURNISH_BENCH_ROWS: {r:?} is not a row count"))
            })
            .collect(),
        // A CPU renderer runs ~1 GFLOP/s: 4,096 rows of the feed-forward layer would take minutes.
        Err(_) if cpu => vec![16, 64, 256, 1024],
        Err(_) => vec![64, 256, 1024, 4096, 16_384],
    };
    let default_limit = burnish_core::gpu::product_kernel_limit();
    // Both sides measured at every size: the kernels take every product for this run.
    burnish_core::gpu::set_product_kernel_limit(u64::MAX);
    println!("adapter: {adapter}");
    println!(
        "| layer | rows | multiply-adds | default takes | train: burn ms | burnish ms | speed-up | forward: burn ms | burnish ms | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // Per layer, the rows up to which burnish's kernels trained within 10% of burn's speed or
    // faster at every size measured (a place for the limit).
    let mut summary = Vec::new();
    for shape in LAYERS {
        let mut within: Option<usize> = None;
        let mut held = true;
        for &r in &rows {
            let macs = (r * shape[0] * shape[1]) as u64;
            let train = [false, true].map(|fused| time(&device, shape, r, Pass::Train, fused));
            let forward = [false, true].map(|fused| time(&device, shape, r, Pass::Forward, fused));
            held &= train[0] / train[1] >= 0.9;
            if held {
                within = Some(r);
            }
            println!(
                "| {} x {} | {r} | {macs} | {} | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} | {:.2}x |",
                shape[0],
                shape[1],
                if macs <= default_limit {
                    "burnish"
                } else {
                    "burn"
                },
                train[0],
                train[1],
                train[0] / train[1],
                forward[0],
                forward[1],
                forward[0] / forward[1],
            );
        }
        summary.push(match within {
            Some(r) => format!(
                "{} x {} up to {r} rows ({} multiply-adds)",
                shape[0],
                shape[1],
                r * shape[0] * shape[1]
            ),
            None => format!("{} x {} at none of the sizes measured", shape[0], shape[1]),
        });
    }
    println!(
        "\nburnish's kernels trained within 10% of burn's speed or faster: {}. The default limit: {default_limit} multiply-adds.",
        summary.join("; ")
    );
}
