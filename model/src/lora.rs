//! LoRA (Hu et al., 2021): trainable low-rank adapters on chosen linear projections of a
//! [`Llama`], for fine-tuning large models with few trainable parameters (Burn 0.21 has none).
//!
//! An adapted projection computes `y = x·W + (alpha / rank)·(x·A)·B`, with `A` random and `B`
//! zero, so the adapted model starts out computing exactly what the base model does.
//! [`apply_lora`] freezes every base parameter and attaches the adapters; [`merge_lora`] folds
//! them into the base weights (`W + (alpha / rank)·A·B`), giving an ordinary model again — which
//! is what [`crate::save_pretrained`] writes. Like Burn's linear weights, `A` and `B` are stored
//! as `[d_in, rank]` and `[rank, d_out]`: the transposes of HF peft's `lora_A` and `lora_B`.
//! [`apply_lora_vlm`] adapts the language model of a [`Vlm`].

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::decoder_layer::DecoderLayer;
use crate::kernel_matmul::matmul;
use crate::llama::Llama;
use crate::vlm::Vlm;
use crate::weights::named_rng;

/// Which projections get adapters, and their rank and scale (the `[lora]` section of a run's
/// TOML file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update `A·B`.
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// The projections adapted in every layer (HF names); the attention projections by default.
    #[serde(default = "default_targets")]
    pub targets: Vec<LoraTarget>,
}

fn default_targets() -> Vec<LoraTarget> {
    vec![
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
    ]
}

impl LoraConfig {
    /// Checks the values; the message names the offending field of the `[lora]` section.
    pub fn check(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("`lora.rank` must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err("`lora.alpha` must be a positive number".into());
        }
        if self.targets.is_empty() {
            return Err("`lora.targets` must name at least one projection".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(t) {
                let name = t.hf_name().rsplit('.').next().unwrap_or_default();
                return Err(format!("`lora.targets` names `{name}` twice"));
            }
        }
        Ok(())
    }

    /// The factor `alpha / rank` applied to the low-rank update.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// A linear projection of a decoder layer that can carry an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    QProj,
    /// `self_attn.k_proj`.
    KProj,
    /// `self_attn.v_proj`.
    VProj,
    /// `self_attn.o_proj`.
    OProj,
    /// `mlp.gate_proj`.
    GateProj,
    /// `mlp.up_proj`.
    UpProj,
    /// `mlp.down_proj`.
    DownProj,
}

impl LoraTarget {
    /// The projection's HF name inside a layer (`self_attn.q_proj`, `mlp.gate_proj`, …).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "self_attn.q_proj",
            LoraTarget::KProj => "self_attn.k_proj",
            LoraTarget::VProj => "self_attn.v_proj",
            LoraTarget::OProj => "self_attn.o_proj",
            LoraTarget::GateProj => "mlp.gate_proj",
            LoraTarget::UpProj => "mlp.up_proj",
            LoraTarget::DownProj => "mlp.down_proj",
        }
    }
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A` as `[d_in, rank]`: uniform in ±1/√d_in at first (peft's initialisation).
    pub a: Param<Tensor<B, 2>>,
    /// `B` as `[rank, d_out]`: zeros at first.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / rank`.
    pub scale: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter for a `[d_in, d_out]` projection; `A` is drawn from `seed` and `name`.
    pub fn new(
        d_in: usize,
        d_out: usize,
        config: &LoraConfig,
        seed: u64,
        name: &str,
        device: &B::Device,
    ) -> Self {
        let rank = config.rank;
        let bound = 1.0 / (d_in as f64).sqrt();
        let mut rng = named_rng(seed, name);
        let a: Vec<f32> = (0..d_in * rank)
            .map(|_| ((2.0 * rng.unit_f64() - 1.0) * bound) as f32)
            .collect();
        LoraAdapter {
            a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, rank]), device)),
            b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
            scale: config.scale(),
        }
    }

    /// The update `scale·(x·A)·B` for the rows of `x` (`[n, d_in]` → `[n, d_out]`).
    pub(crate) fn update(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul(matmul(x, self.a.val()) * self.scale, self.b.val())
    }

    /// The update as a weight, `scale·A·B` (`[d_in, d_out]`).
    fn weight_update(&self) -> Tensor<B, 2> {
        matmul(self.a.val() * self.scale, self.b.val())
    }
}

/// An adaptable projection of a layer with its adapter slot.
type Slot<'a, B> = (
    LoraTarget,
    &'a mut Linear<B>,
    &'a mut Option<LoraAdapter<B>>,
);

/// The adaptable projections of a layer.
fn slots<B: Backend>(layer: &mut DecoderLayer<B>) -> [Slot<'_, B>; 7] {
    let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
    [
        (LoraTarget::QProj, &mut a.q_proj, &mut a.q_lora),
        (LoraTarget::KProj, &mut a.k_proj, &mut a.k_lora),
        (LoraTarget::VProj, &mut a.v_proj, &mut a.v_lora),
        (LoraTarget::OProj, &mut a.o_proj, &mut a.o_lora),
        (LoraTarget::GateProj, &mut m.gate_proj, &mut m.gate_lora),
        (LoraTarget::UpProj, &mut m.up_proj, &mut m.up_lora),
        (LoraTarget::DownProj, &mut m.down_proj, &mut m.down_lora),
    ]
}

/// `model` with every base parameter frozen (no gradients, so the optimizer leaves it alone)
/// and fresh adapters on `config.targets` of every layer, `A` seeded by `seed`. Adapters the
/// model already carries are merged into its weights first.
pub fn apply_lora<B: Backend>(
    model: Llama<B>,
    config: &LoraConfig,
    seed: u64,
    device: &B::Device,
) -> Llama<B> {
    let mut model = merge_lora(model).no_grad();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for (target, linear, slot) in slots(layer) {
            if config.targets.contains(&target) {
                let [d_in, d_out] = linear.weight.val().dims();
                let name = format!("model.layers.{i}.{}.lora", target.hf_name());
                *slot = Some(LoraAdapter::new(d_in, d_out, config, seed, &name, device));
            }
        }
    }
    model
}

/// [`apply_lora`] on a vision-language model's language model, with the vision tower frozen
/// as well; the projector stays trainable (LLaVA's LoRA recipe). [`crate::save_vlm`] merges
/// the adapters as [`crate::save_pretrained`] does.
pub fn apply_lora_vlm<B: Backend>(
    model: Vlm<B>,
    config: &LoraConfig,
    seed: u64,
    device: &B::Device,
) -> Vlm<B> {
    let mut model = model.map_language_model(|lm| apply_lora(lm, config, seed, device));
    model.vision_tower = model.vision_tower.no_grad();
    model
}

/// `model` with its adapters folded into the base weights and removed: an ordinary model that
/// computes the same function. The merged weights keep their gradient setting.
pub fn merge_lora<B: Backend>(mut model: Llama<B>) -> Llama<B> {
    for layer in &mut model.layers {
        for (_, linear, slot) in slots(layer) {
            if let Some(adapter) = slot.take() {
                let update = adapter.weight_update();
                linear.weight = linear.weight.clone().map(|w| {
                    let require_grad = w.is_require_grad();
                    (w + update).detach().set_require_grad(require_grad)
                });
            }
        }
    }
    model
}

/// The number of adapter parameters in `model` (0 without adapters): with [`apply_lora`],
/// the trainable ones.
pub fn lora_params<B: Backend>(model: &Llama<B>) -> usize {
    let mut count = AdapterParams::default();
    model.visit(&mut count);
    count.params
}

/// Counts the elements of the parameters that belong to a [`LoraAdapter`].
#[derive(Default)]
struct AdapterParams {
    containers: Vec<String>,
    params: usize,
}

impl<B: Backend> ModuleVisitor<B> for AdapterParams {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.containers.last().map(String::as_str) == Some("Struct:LoraAdapter") {
            self.params += param.lazy_shape().num_elements();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::max_diff;
    use burn::tensor::{Bool, Int, Tensor, TensorData};

    use super::*;
    use crate::config::LlamaConfig;
    use crate::device::CpuBackend;
    use crate::{load_pretrained, save_pretrained};

    type B = CpuBackend;

    const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// Two layers, grouped-query attention with q/k/v biases, an untied output head.
    fn config() -> LlamaConfig {
        LlamaConfig {
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            tie_word_embeddings: false,
            attention_bias: true,
            ..LlamaConfig::tiny(64)
        }
    }

    fn lora(rank: usize, targets: &[LoraTarget]) -> LoraConfig {
        LoraConfig {
            rank,
            alpha: 2.0 * rank as f64,
            targets: targets.to_vec(),
        }
    }

    /// Logits of two sequences, the second left-padded.
    fn logits(model: &Llama<B>) -> Vec<f32> {
        let device = Default::default();
        let ids = Tensor::<B, 2, Int>::from_ints([[1, 5, 9, 2, 7], [0, 0, 8, 3, 1]], &device);
        let mask =
            Tensor::<B, 2, Bool>::from_data([[true; 5], [false, false, true, true, true]], &device);
        model.forward(ids, mask).into_data().to_vec().unwrap()
    }

    /// Fills every adapter's `B` with deterministic non-zero values (as training would).
    fn trained<B: Backend>(mut model: Llama<B>) -> Llama<B> {
        let device = Default::default();
        for layer in &mut model.layers {
            for (k, (_, _, slot)) in slots(layer).into_iter().enumerate() {
                if let Some(adapter) = slot {
                    let [rank, d_out] = adapter.b.val().dims();
                    let values: Vec<f32> = (0..rank * d_out)
                        .map(|i| ((i * 7 + k * 3) % 13) as f32 * 0.02 - 0.12)
                        .collect();
                    adapter.b = Param::from_tensor(Tensor::from_data(
                        TensorData::new(values, [rank, d_out]),
                        &device,
                    ));
                }
            }
        }
        model
    }

    #[test]
    fn fresh_adapters_leave_the_logits_unchanged() {
        let device = Default::default();
        let base = Llama::<B>::init(&config(), 1, &device);
        let adapted = apply_lora(base.clone(), &lora(4, &ALL), 9, &device);
        assert_eq!(logits(&adapted), logits(&base));
        assert!(lora_params(&adapted) > 0);
    }

    #[test]
    fn merged_model_and_export_compute_what_the_adapted_model_does() {
        let device = Default::default();
        let base = Llama::<B>::init(&config(), 1, &device);
        let adapted = trained(apply_lora(base.clone(), &lora(3, &ALL), 9, &device));
        let expected = logits(&adapted);
        assert!(
            max_diff(&expected, &logits(&base)) > 1e-3,
            "B ≠ 0 changes the model"
        );

        let merged = merge_lora(adapted.clone());
        assert_eq!(lora_params(&merged), 0);
        assert_eq!(merged.num_params(), base.num_params());
        let worst = max_diff(&logits(&merged), &expected);
        assert!(worst < 1e-5, "merged logits differ by {worst}");

        let dir = std::env::temp_dir().join(format!("sftvsrl-lora-export-{}", std::process::id()));
        save_pretrained(&adapted, None, &[], &dir).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let names = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .len();
        let back = load_pretrained::<B>(&dir, &device).unwrap().model;
        std::fs::remove_dir_all(&dir).unwrap();
        // 2 layers × (4 projections + 3 biases + 3 MLP projections + 2 norms) + embedding,
        // final norm and output head: only base tensors, under their HF names.
        assert_eq!(names, 2 * 12 + 3);
        assert_eq!(back.num_params(), base.num_params());
        let worst = max_diff(&logits(&back), &expected);
        assert!(worst < 1e-5, "exported logits differ by {worst}");
    }

    #[test]
    fn vlm_lora_trains_adapters_and_projector_and_exports_base_names() {
        use burn::backend::Autodiff;

        use crate::vision::tests::pixels;
        use crate::vlm::tests::{left_padded, prompts};
        use crate::vlm_config::tests::tiny_vlm;
        use crate::{ImageProcessor, load_vlm, save_vlm};

        type A = Autodiff<B>;
        let device = Default::default();
        let base = Vlm::<A>::init(&tiny_vlm(), 3, &device);
        let adapted = apply_lora_vlm(base.clone(), &lora(2, &ALL), 9, &device);
        let adapted = adapted.map_language_model(trained::<A>);
        assert!(lora_params(adapted.language_model()) > 0);

        let (padded, ids, mask) = left_padded::<A>(&prompts());
        let rows: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let spans = adapted.image_spans(&rows, 3).unwrap();
        let images = pixels::<A>(&adapted.config().vision_config, 3, 0);
        let forward = |m: &Vlm<A>| {
            m.forward(ids.clone(), mask.clone(), Some((images.clone(), &spans)))
                .unwrap()
        };
        let logits = forward(&adapted);
        let grads = logits.clone().sum().backward();
        let layer = &adapted.language_model.layers[0];
        assert!(
            layer
                .self_attn
                .q_lora
                .as_ref()
                .unwrap()
                .b
                .grad(&grads)
                .is_some()
        );
        assert!(layer.self_attn.q_proj.weight.grad(&grads).is_none());
        assert!(
            adapted
                .multi_modal_projector
                .linear_1
                .weight
                .grad(&grads)
                .is_some()
        );
        let patch = &adapted.vision_tower.embeddings.patch_embedding.weight;
        assert!(patch.grad(&grads).is_none());

        let dir = std::env::temp_dir().join(format!("sftvsrl-vlm-lora-{}", std::process::id()));
        save_vlm(&adapted, &ImageProcessor::new([16, 24]), None, &[], &dir).unwrap();
        let back = load_vlm::<A>(&dir, &device).unwrap().model;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.num_params(), base.num_params());
        let expected: Vec<f32> = logits.into_data().to_vec().unwrap();
        let worst = max_diff(&forward(&back).into_data().to_vec().unwrap(), &expected);
        assert!(worst < 1e-5, "exported logits differ by {worst}");
    }

    #[test]
    fn adapter_parameters_follow_the_rank() {
        let device = Default::default();
        let c = config();
        let (h, q, kv, inner) = (32, 4 * 8, 2 * 8, c.intermediate_size);
        let base = Llama::<B>::init(&c, 1, &device);
        let attention = (h + q) + 2 * (h + kv) + (q + h);
        let mlp = 2 * (h + inner) + (inner + h);
        for (rank, targets, per_rank) in [
            (1, &default_targets()[..], attention),
            (5, &default_targets()[..], attention),
            (2, &ALL[..], attention + mlp),
            (3, &[LoraTarget::DownProj][..], inner + h),
        ] {
            let adapted = apply_lora(base.clone(), &lora(rank, targets), 0, &device);
            let expected = c.num_hidden_layers * rank * per_rank;
            assert_eq!(lora_params(&adapted), expected, "rank {rank}, {targets:?}");
            assert_eq!(adapted.num_params(), base.num_params() + expected);
        }
        assert_eq!(lora_params(&base), 0);
    }

    #[test]
    fn config_check_names_the_field() {
        let ok = lora(8, &ALL);
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.scale(), 2.0);
        let bad = [
            (
                LoraConfig {
                    rank: 0,
                    ..ok.clone()
                },
                "lora.rank",
            ),
            (
                LoraConfig {
                    alpha: f64::NAN,
                    ..ok.clone()
                },
                "lora.alpha",
            ),
            (
                LoraConfig {
                    targets: vec![],
                    ..ok.clone()
                },
                "lora.targets",
            ),
            (
                lora(
                    2,
                    &[LoraTarget::UpProj, LoraTarget::QProj, LoraTarget::UpProj],
                ),
                "`up_proj` twice",
            ),
        ];
        for (config, field) in bad {
            let e = config.check().unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
