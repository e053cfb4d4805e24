//! The policy and its value head: one module, so that one optimizer trains the shared backbone
//! and the head together (paper-spec §4.1). The head is an MLP (`hidden → 1024 → ReLU → 512 →
//! ReLU → 1` in the reference) on the final hidden state of the last prompt token.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use sftvsrl_envs::Rng;
use sftvsrl_model::Backbone;

/// The value MLP.
#[derive(Module, Debug)]
pub struct ValueHead<B: Backend> {
    pub layers: Vec<Linear<B>>,
}

impl<B: Backend> ValueHead<B> {
    /// A head from `input` features through `hidden` ReLU layers to one value, initialised as
    /// PyTorch's `nn.Linear` (uniform in ±1/√fan_in) from `seed`.
    pub fn new(input: usize, hidden: &[usize], seed: u64, device: &B::Device) -> Self {
        let mut rng = Rng::new(seed);
        let widths: Vec<usize> = std::iter::once(input)
            .chain(hidden.iter().copied())
            .chain([1])
            .collect();
        let layers = widths
            .windows(2)
            .map(|w| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let bound = 1.0 / (fan_in as f64).sqrt();
                let mut uniform = |n: usize| -> Vec<f32> {
                    (0..n)
                        .map(|_| ((rng.unit_f64() * 2.0 - 1.0) * bound) as f32)
                        .collect()
                };
                let weight = uniform(fan_in * fan_out);
                let bias = uniform(fan_out);
                Linear {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(weight, [fan_in, fan_out]),
                        device,
                    )),
                    bias: Some(Param::from_tensor(Tensor::from_data(
                        TensorData::new(bias, [fan_out]),
                        device,
                    ))),
                }
            })
            .collect();
        ValueHead { layers }
    }

    /// Values `[batch]` of hidden states `[batch, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let last = self.layers.len() - 1;
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        let batch = x.dims()[0];
        x.reshape([batch])
    }
}

/// The policy (a causal language or vision-language model) and the value head that reads its
/// hidden states.
#[derive(Module, Debug)]
pub struct ActorCritic<B: Backend> {
    pub policy: Backbone<B>,
    pub value_head: ValueHead<B>,
}
