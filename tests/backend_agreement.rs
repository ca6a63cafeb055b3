//! The same seeded training run on flex (CPU) and on wgpu (a real or software Vulkan adapter,
//! such as Debian's lavapipe) must agree: same data order, same initial weights (drawn on the
//! host), same dropout masks (drawn on the host too), so the losses differ only by floating-point
//! rounding. Checked for both model families: the MLP on the spirals and the CNN on small images
//! (with augmentation and dropout on).

use burn::prelude::Device;
use burnish_core::data::ClassificationDataset;
use burnish_core::data::augment::AugmentConfig;
use burnish_core::data::demo::SpiralsConfig;
use burnish_core::model::{CnnConfig, MlpConfig, ModelConfig};
use burnish_core::train::{TrainConfig, Trainer};

/// Largest allowed |loss_flex - loss_wgpu| over the run. Measured here: about 1e-6.
const TOLERANCE: f32 = 1e-4;
const STEPS: usize = 30;

/// 1x8x8 images of a vertical or a horizontal bar at varying positions.
fn bars() -> ClassificationDataset {
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for i in 0..64 {
        let (class, k) = (i % 2, 1 + (i / 2) % 6);
        for y in 0..8 {
            for x in 0..8 {
                let on = if class == 0 { x == k } else { y == k };
                features.push(if on { 1.0 } else { 0.1 * ((x + y) % 3) as f32 });
            }
        }
        labels.push(class as u32);
    }
    ClassificationDataset::new("bars", features, labels, 64, vec!["v".into(), "h".into()])
        .and_then(|d| d.with_image_shape([1, 8, 8]))
        .expect("valid bars")
}

fn losses(device: &Device, model: &ModelConfig, data: &ClassificationDataset) -> (Vec<f32>, f64) {
    let config = TrainConfig {
        steps: STEPS,
        learning_rate: 0.02,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let augment = AugmentConfig {
        enabled: true,
        ..AugmentConfig::default()
    };
    let mut trainer = Trainer::new(model, config, data.clone(), device)
        .and_then(|t| t.with_augment(&augment))
        .expect("valid run");
    let losses = (0..STEPS)
        .map(|_| pollster::block_on(trainer.step()).expect("step").loss)
        .collect();
    let accuracy = pollster::block_on(trainer.evaluate(data))
        .expect("evaluate")
        .report
        .accuracy;
    (losses, accuracy)
}

#[test]
fn flex_and_wgpu_agree_step_by_step() {
    let wgpu = burnish_core::gpu::init().unwrap_or_else(|err| {
        panic!(
            "\n\n*** NO WGPU ADAPTER: {err}\n*** This test needs a Vulkan driver; on Debian install \
             mesa-vulkan-drivers (lavapipe), which `cargo xtask test` does.\n\n"
        )
    });
    // The adapter is named for wgpu devices, autodiff or not (a run's `started` event says where
    // it ran), and for nothing else.
    let adapter = burnish_core::gpu::adapter_of(&wgpu.clone().autodiff())
        .expect("the wgpu runtime was started through burnish_core::gpu");
    println!("wgpu adapter: {adapter}");
    assert!(
        !adapter.name.is_empty() && adapter.backend == "Vulkan",
        "{adapter:?}"
    );
    assert!(adapter.max_storage_binding >= 128 << 20, "{adapter:?}");
    assert_eq!(
        burnish_core::gpu::adapter_of(&Device::flex().autodiff()),
        None
    );
    let spirals = SpiralsConfig::default().generate().expect("demo data");
    let bars = bars();
    let runs = [
        (
            "MLP on spirals",
            ModelConfig::Mlp(
                MlpConfig::new(2, 3)
                    .with_hidden(vec![32, 32])
                    .with_dropout(0.2),
            ),
            spirals,
        ),
        (
            "CNN on bars",
            ModelConfig::Cnn(CnnConfig {
                filters: vec![8, 8],
                hidden: vec![16],
                dropout: 0.2,
                ..CnnConfig::new([1, 8, 8], 2)
            }),
            bars,
        ),
    ];
    for (name, model, data) in runs {
        let (flex, flex_accuracy) = losses(&Device::flex(), &model, &data);
        let (gpu, gpu_accuracy) = losses(&wgpu, &model, &data);
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
            "{name}: flex vs wgpu over {STEPS} steps: max |loss difference| {worst:.3e} at step {}; \
             accuracy {flex_accuracy} vs {gpu_accuracy}",
            worst_step + 1
        );
        assert!(
            worst <= TOLERANCE,
            "{name}, step {}: flex loss {} vs wgpu loss {} (difference {worst:.3e} > {TOLERANCE:.0e})",
            worst_step + 1,
            flex[worst_step],
            gpu[worst_step]
        );
        assert!(
            flex[STEPS - 1] < flex[0],
            "{name}: the loss should fall: {flex:?}"
        );
        assert!(
            (flex_accuracy - gpu_accuracy).abs() <= 1.0 / data.len() as f64,
            "{name}: {flex_accuracy} vs {gpu_accuracy}"
        );
    }
}
