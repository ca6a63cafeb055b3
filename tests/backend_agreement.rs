//! The same seeded training run on flex (CPU) and on wgpu (a real or software Vulkan adapter,
//! such as Debian's lavapipe) must agree: same data order, same initial weights (drawn on the
//! host), so the losses differ only by floating-point rounding.

use burn::prelude::Device;
use burnish_core::data::demo::SpiralsConfig;
use burnish_core::model::MlpConfig;
use burnish_core::train::{TrainConfig, Trainer};

/// Largest allowed |loss_flex - loss_wgpu| over the run. Measured here: about 1e-6.
const TOLERANCE: f32 = 1e-4;
const STEPS: usize = 30;

fn losses(device: &Device) -> (Vec<f32>, f64) {
    let data = SpiralsConfig::default().generate().expect("demo data");
    let model = MlpConfig::new(2, 3).with_hidden(vec![32, 32]);
    let config = TrainConfig {
        steps: STEPS,
        learning_rate: 0.02,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&model, config, data.clone(), device).expect("valid demo");
    let losses = (0..STEPS)
        .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
        .collect();
    let accuracy = pollster::block_on(trainer.evaluate(&data))
        .expect("evaluate")
        .report
        .accuracy;
    (losses, accuracy)
}

#[test]
fn flex_and_wgpu_agree_step_by_step() {
    let wgpu = Device::wgpu_options().init().unwrap_or_else(|err| {
        panic!(
            "\n\n*** NO WGPU ADAPTER: {err}\n*** This test needs a Vulkan driver; on Debian install \
             mesa-vulkan-drivers (lavapipe), which `cargo xtask test` does.\n\n"
        )
    });
    let (flex, flex_accuracy) = losses(&Device::flex());
    let (gpu, gpu_accuracy) = losses(&wgpu);
    let (worst_step, worst) = flex
        .iter()
        .zip(&gpu)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        );
    println!(
        "flex vs wgpu over {STEPS} steps: max |loss difference| {worst:.3e} at step {}; \
         accuracy {flex_accuracy} vs {gpu_accuracy}",
        worst_step + 1
    );
    assert!(
        worst <= TOLERANCE,
        "step {}: flex loss {} vs wgpu loss {} (difference {worst:.3e} > {TOLERANCE:.0e})",
        worst_step + 1,
        flex[worst_step],
        gpu[worst_step]
    );
    assert!(flex[STEPS - 1] < flex[0], "the loss should fall: {flex:?}");
    assert!(
        (flex_accuracy - gpu_accuracy).abs() <= 1.0 / 300.0,
        "{flex_accuracy} vs {gpu_accuracy}"
    );
}
