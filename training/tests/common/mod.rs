//! Helpers shared by the training crate's end-to-end tests.

use std::path::PathBuf;

/// A fresh folder under the system temp dir, unique to this test process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sftvsrl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every float parameter's values of `module`, in visiting order, as one list.
#[allow(dead_code)] // not every test file uses every helper
pub fn param_values<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    module: &M,
) -> Vec<f32> {
    struct Values(Vec<f32>);
    impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for Values {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
        ) {
            let data = param.val().into_data().convert::<f32>();
            self.0.extend(data.to_vec::<f32>().unwrap());
        }
    }
    let mut values = Values(Vec::new());
    module.visit(&mut values);
    values.0
}

/// A tiny actor-critic over an 8-token vocabulary on the CPU, the same weights every time.
#[allow(dead_code)] // not every test file uses every helper
pub fn tiny_actor_critic()
-> sftvsrl_training::rl::ActorCritic<burn::backend::Autodiff<sftvsrl_model::device::CpuBackend>> {
    use sftvsrl_model::{Backbone, Llama, LlamaConfig};
    let device = Default::default();
    let shape = LlamaConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        ..LlamaConfig::tiny(8)
    };
    sftvsrl_training::rl::ActorCritic {
        policy: Backbone::Text(Llama::init(&shape, 1, &device)),
        value_head: sftvsrl_training::rl::ValueHead::new(8, &[4], 1, &device),
    }
}
