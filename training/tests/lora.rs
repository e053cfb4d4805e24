//! LoRA training: optimizer steps through the SFT loss move only the adapters; every base
//! weight stays bit-identical and only adapter parameters receive gradients.

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use sftvsrl_model::device::CpuBackend;
use sftvsrl_model::{Llama, LlamaConfig, LoraConfig, LoraTarget, apply_lora, lora_params};
use sftvsrl_training::{Sequence, SftBatch, masked_loss};

type A = Autodiff<CpuBackend>;

/// Every float parameter's values in visiting order, flagged when it belongs to an adapter.
#[derive(Default)]
struct Snapshot {
    containers: Vec<String>,
    params: Vec<(bool, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for Snapshot {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let adapter = self.containers.last().map(String::as_str) == Some("Struct:LoraAdapter");
        let values = param.val().into_data().convert::<f32>().to_vec().unwrap();
        self.params.push((adapter, values));
    }
}

fn snapshot(model: &Llama<A>) -> Vec<(bool, Vec<f32>)> {
    let mut s = Snapshot::default();
    model.visit(&mut s);
    s.params
}

#[test]
fn training_moves_only_the_adapters() {
    let device = Default::default();
    let config = LlamaConfig {
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        ..LlamaConfig::tiny(40)
    };
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec![LoraTarget::QProj, LoraTarget::VProj, LoraTarget::DownProj],
    };
    let mut model = apply_lora(Llama::<A>::init(&config, 5, &device), &lora, 1, &device);
    let before = snapshot(&model);
    let adapters = before.iter().filter(|(a, _)| *a).count();
    assert_eq!(adapters, 2 * 3 * 2, "A and B for 3 projections in 2 layers");
    // The trainable count is what the rank implies: r·(d_in + d_out) per adapted projection.
    assert_eq!(
        lora_params(&model),
        2 * 2 * ((32 + 32) + (32 + 16) + (48 + 32))
    );

    let sequences = [
        Sequence::text(vec![1, 7, 3, 9, 12, 2], 3),
        Sequence::text(vec![1, 4, 20, 21, 2], 2),
    ];
    let batch = SftBatch::<A>::new(&sequences.iter().collect::<Vec<_>>(), 1, &device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.1)
        .init::<A, Llama<A>>();
    let mut losses = Vec::new();
    for _ in 0..4 {
        let out = masked_loss(&model, &batch, batch.target_tokens).unwrap();
        losses.push(out.stats.loss());
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        assert_eq!(
            grads.len(),
            adapters,
            "only adapter parameters get gradients"
        );
        model = optim.step(1e-2, model, grads);
    }
    assert!(losses[3] < losses[0], "the adapters learn: {losses:?}");

    let after = snapshot(&model);
    assert_eq!(after.len(), before.len());
    for ((adapter, old), (_, new)) in before.iter().zip(&after) {
        if *adapter {
            assert_ne!(old, new, "every adapter tensor is updated");
        } else {
            assert_eq!(old, new, "base weights stay bit-identical");
        }
    }
}
