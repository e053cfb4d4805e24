//! [`FusedAdamW`] gives Burn's AdamW: the fused step on `Autodiff<Flex>` matches Burn's
//! `AdamW` over several steps (with and without weight decay, on tensors of several parallel
//! chunks), the unfused path on another backend is Burn's step exactly, and optimizer records
//! written by Burn's Adam and AdamW resume in `FusedAdamW` (the checkpoints stay readable).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use sftvsrl_model::FusedAdamW;

mod common;

use common::{assert_close, values};

type Cpu = Autodiff<Flex>;

/// A 300 → 200 linear layer: a weight of 60,000 elements (several of the kernel's parallel
/// chunks, with a ragged tail) and a bias.
fn layer<B: AutodiffBackend>(device: &B::Device) -> Linear<B> {
    B::seed(device, 7);
    LinearConfig::new(300, 200).init(device)
}

/// One step of `optim` on a loss whose gradient changes with `step`.
fn train_step<B: AutodiffBackend, O: Optimizer<Linear<B>, B>>(
    model: Linear<B>,
    optim: &mut O,
    step: usize,
    device: &B::Device,
) -> Linear<B> {
    B::seed(device, 100 + step as u64);
    let x = Tensor::<B, 2>::random([8, 300], Distribution::Normal(0.0, 1.0), device);
    let loss = model.forward(x).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(1e-2, model, grads)
}

/// The layer's weight and bias after `steps` steps of each optimizer, side by side.
fn train<B: AutodiffBackend, O1, O2>(
    mut a: O1,
    mut b: O2,
    steps: usize,
) -> [(Vec<f32>, Vec<f32>); 2]
where
    O1: Optimizer<Linear<B>, B>,
    O2: Optimizer<Linear<B>, B>,
{
    let device = Default::default();
    let (mut ma, mut mb) = (layer::<B>(&device), layer::<B>(&device));
    for step in 0..steps {
        ma = train_step(ma, &mut a, step, &device);
        mb = train_step(mb, &mut b, step, &device);
    }
    [ma, mb].map(|m| {
        let m = m.valid();
        let bias = m.bias.expect("the layer has a bias").val();
        (values(m.weight.val()), values(bias))
    })
}

fn burn_adamw(weight_decay: f32) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_2(0.98)
        .with_epsilon(1e-7)
        .with_weight_decay(weight_decay)
}

#[test]
fn the_fused_step_matches_burns_adamw() {
    for weight_decay in [0.0, 0.1] {
        let fused = FusedAdamW::new(0.9, 0.98, 1e-7, weight_decay).init::<Cpu, Linear<Cpu>>();
        let burn = burn_adamw(weight_decay).init::<Cpu, Linear<Cpu>>();
        let [(w, b), (want_w, want_b)] = train(fused, burn, 4);
        let initial = values(layer::<Cpu>(&Default::default()).weight.val());
        let moved = w.iter().zip(&initial).filter(|(a, b)| a != b).count();
        assert!(
            moved > w.len() / 2,
            "the steps changed the weights ({moved} moved)"
        );
        assert_close(&w, &want_w, 1e-6, &format!("weight, decay {weight_decay}"));
        assert_close(&b, &want_b, 1e-6, &format!("bias, decay {weight_decay}"));
    }
}

#[test]
fn other_backends_take_burns_step_exactly() {
    type Other = Autodiff<NdArray<f32>>;
    let fused = FusedAdamW::new(0.9, 0.98, 1e-7, 0.1).init::<Other, Linear<Other>>();
    let burn = burn_adamw(0.1).init::<Other, Linear<Other>>();
    let [(w, b), (want_w, want_b)] = train(fused, burn, 3);
    assert_eq!(w, want_w);
    assert_eq!(b, want_b);
}

/// `optim`'s record written to a file as checkpoints write it, read back into `FusedAdamW`,
/// and both continued for two steps from the same weights: the weights must agree.
fn resumes_in_fused<O: Optimizer<Linear<Cpu>, Cpu>>(mut optim: O, weight_decay: f32, what: &str) {
    let device = Default::default();
    let mut model = layer::<Cpu>(&device);
    for step in 0..2 {
        model = train_step(model, &mut optim, step, &device);
    }
    let dir = std::env::temp_dir().join(format!("sftvsrl-adamw-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("optimizer");
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    Recorder::<Cpu>::record(&recorder, optim.to_record(), path.clone()).unwrap();
    let record = Recorder::<Cpu>::load(&recorder, path.with_extension("mpk"), &device)
        .unwrap_or_else(|e| panic!("{what}'s record does not load into FusedAdamW: {e}"));
    let mut fused = FusedAdamW::new(0.9, 0.98, 1e-7, weight_decay)
        .init::<Cpu, Linear<Cpu>>()
        .load_record(record);
    std::fs::remove_dir_all(&dir).unwrap();
    let (mut a, mut b) = (model.clone(), model);
    for step in 2..4 {
        a = train_step(a, &mut optim, step, &device);
        b = train_step(b, &mut fused, step, &device);
    }
    let (got, want) = (values(b.weight.val()), values(a.weight.val()));
    assert_close(&got, &want, 1e-6, what);
}

#[test]
fn burns_adam_and_adamw_records_resume_in_fused_adamw() {
    resumes_in_fused(burn_adamw(0.1).init(), 0.1, "AdamW");
    let adam = AdamConfig::new().with_beta_2(0.98).with_epsilon(1e-7);
    resumes_in_fused(adam.init(), 0.0, "Adam");
}
