//! Batched sampling: the log-probs recorded while generating equal those the training forward
//! pass recomputes, padding does not change a sequence's result, and a seed repeats a run.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use sftvsrl_model::device::{CpuBackend, NdArrayBackend};
use sftvsrl_model::{
    FinishReason, GenerateConfig, Generation, Llama, LlamaConfig, Sampling, generate,
    token_logprobs,
};

const PROMPTS: [&[u32]; 4] = [
    &[5, 17, 3, 99, 42, 7],
    &[8],
    &[61, 62, 63],
    &[120, 4, 4, 4, 9, 30, 2, 11, 77],
];

fn tiny_model<B: Backend>(device: &B::Device) -> Llama<B> {
    let mut config = LlamaConfig::tiny(128);
    config.hidden_size = 64;
    config.intermediate_size = 96;
    config.num_hidden_layers = 2;
    config.head_dim = 16;
    Llama::init(&config, 3, device)
}

fn prompts() -> Vec<Vec<u32>> {
    PROMPTS.iter().map(|p| p.to_vec()).collect()
}

fn sample<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    seed: u64,
    device: &B::Device,
) -> Generation<B> {
    let config = GenerateConfig {
        max_new_tokens: 10,
        sampling: Sampling {
            temperature: 0.8,
            top_p: 0.9,
        },
        stop_tokens: vec![0, 1],
        seed,
        pad_to_multiple_of: None,
    };
    generate(model, prompts, &config, device).unwrap()
}

/// Recomputes the log-probs of every generated token with one right-padded training forward.
fn recompute<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    out: &Generation<B>,
    temperature: f32,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&out.sequences)
        .map(|(p, s)| [p.as_slice(), &s.tokens].concat())
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap();
    let batch = rows.len();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in &rows {
        ids.extend(
            r.iter()
                .map(|&t| t as i64)
                .chain(std::iter::repeat_n(0, width - r.len())),
        );
        mask.extend((0..width).map(|j| j < r.len()));
    }
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, width]), device);
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [batch, width]), device);
    let logits = model.forward(ids.clone(), mask);
    // Position t predicts token t + 1.
    let vocab = logits.dims()[2];
    let logits = logits.slice([0..batch, 0..width - 1, 0..vocab]);
    let targets = ids.slice([0..batch, 1..width]);
    let lp: Vec<f32> = token_logprobs(logits, targets, temperature)
        .into_data()
        .to_vec()
        .unwrap();
    rows.iter()
        .zip(prompts)
        .enumerate()
        .map(|(i, (r, p))| {
            (p.len() - 1..r.len() - 1)
                .map(|t| lp[i * (width - 1) + t])
                .collect()
        })
        .collect()
}

fn tokens<B: Backend>(g: &Generation<B>) -> Vec<Vec<u32>> {
    g.sequences.iter().map(|s| s.tokens.clone()).collect()
}

fn check_recorded_logprobs<B: Backend>(device: &B::Device) {
    let model = tiny_model::<B>(device);
    let prompts = prompts();
    let out = sample(&model, &prompts, 11, device);
    let recomputed = recompute(&model, &prompts, &out, 0.8, device);
    let mut n = 0;
    for (seq, again) in out.sequences.iter().zip(&recomputed) {
        assert_eq!(seq.logprobs.len(), again.len());
        for (a, b) in seq.logprobs.iter().zip(again) {
            assert!((a - b).abs() < 1e-4, "recorded {a}, recomputed {b}");
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} tokens generated");
}

#[test]
fn recorded_logprobs_match_training_forward_on_flex() {
    check_recorded_logprobs::<CpuBackend>(&Default::default());
}

#[test]
fn recorded_logprobs_match_training_forward_on_ndarray() {
    check_recorded_logprobs::<NdArrayBackend>(&Default::default());
}

#[test]
fn seed_repeats_a_run_and_changes_it() {
    type B = CpuBackend;
    let device = Default::default();
    let model = tiny_model::<B>(&device);
    let a = sample(&model, &prompts(), 5, &device);
    let b = sample(&model, &prompts(), 5, &device);
    let c = sample(&model, &prompts(), 6, &device);
    assert_eq!(a.sequences, b.sequences);
    assert_ne!(a.sequences, c.sequences);
    // The same seed gives the same tokens on NdArray (host-side random numbers).
    let nd_device = Default::default();
    let nd = sample(
        &tiny_model::<NdArrayBackend>(&nd_device),
        &prompts(),
        5,
        &nd_device,
    );
    assert_eq!(tokens(&a), tokens(&nd));
}

#[test]
fn padding_does_not_change_a_sequence() {
    type B = CpuBackend;
    let device = Default::default();
    let model = tiny_model::<B>(&device);
    let greedy = GenerateConfig {
        max_new_tokens: 8,
        sampling: Sampling::GREEDY,
        stop_tokens: vec![],
        seed: 0,
        pad_to_multiple_of: None,
    };
    let batch = generate(&model, &prompts(), &greedy, &device).unwrap();
    let hidden: Vec<f32> = batch.prompt_hidden.clone().into_data().to_vec().unwrap();
    let dim = model.config().hidden_size;
    for (i, p) in prompts().iter().enumerate() {
        let alone = generate(&model, std::slice::from_ref(p), &greedy, &device).unwrap();
        assert_eq!(alone.sequences[0].tokens, batch.sequences[i].tokens);
        assert_eq!(alone.sequences[0].finish, FinishReason::Length);
        let h: Vec<f32> = alone.prompt_hidden.into_data().to_vec().unwrap();
        for (a, b) in h.iter().zip(&hidden[i * dim..(i + 1) * dim]) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}

/// Rounding the prompt width and the cache up, and attending over the whole cache while
/// decoding, changes shapes only: the same tokens, log-probs and prompt states come out.
#[test]
fn bucketed_shapes_give_the_same_generation() {
    type B = CpuBackend;
    let device = Default::default();
    let model = tiny_model::<B>(&device);
    let sampled = |pad_to_multiple_of| GenerateConfig {
        max_new_tokens: 12,
        sampling: Sampling {
            temperature: 0.8,
            top_p: 0.9,
        },
        stop_tokens: vec![],
        seed: 5,
        pad_to_multiple_of,
    };
    let exact = generate(&model, &prompts(), &sampled(Some(1)), &device).unwrap();
    let exact_hidden: Vec<f32> = exact.prompt_hidden.clone().into_data().to_vec().unwrap();
    for multiple in [4, 7, 32] {
        let bucketed = generate(&model, &prompts(), &sampled(Some(multiple)), &device).unwrap();
        for (a, b) in exact.sequences.iter().zip(&bucketed.sequences) {
            assert_eq!(a.tokens, b.tokens, "multiple {multiple}");
            assert_eq!(a.finish, b.finish);
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!((x - y).abs() < 1e-5, "multiple {multiple}: {x} vs {y}");
            }
        }
        let hidden: Vec<f32> = bucketed.prompt_hidden.into_data().to_vec().unwrap();
        for (x, y) in exact_hidden.iter().zip(&hidden) {
            assert!((x - y).abs() < 1e-5, "multiple {multiple}: {x} vs {y}");
        }
    }
    // The CPU backends take exact lengths unless asked.
    let default = generate(&model, &prompts(), &sampled(None), &device).unwrap();
    assert_eq!(tokens(&default), tokens(&exact));
}

#[test]
fn stop_tokens_end_sequences_and_bad_requests_are_errors() {
    type B = CpuBackend;
    let device = Default::default();
    let model = tiny_model::<B>(&device);
    let greedy = GenerateConfig {
        max_new_tokens: 6,
        sampling: Sampling::GREEDY,
        stop_tokens: vec![],
        seed: 0,
        pad_to_multiple_of: None,
    };
    let free = generate(&model, &prompts(), &greedy, &device).unwrap();
    // Make the second greedy token of the first sequence a stop token.
    let stop = free.sequences[0].tokens[1];
    let config = GenerateConfig {
        stop_tokens: vec![stop],
        ..greedy.clone()
    };
    let out = generate(&model, &prompts(), &config, &device).unwrap();
    let first = &out.sequences[0];
    let end = first.tokens.iter().position(|&t| t == stop).unwrap();
    assert_eq!(first.tokens, free.sequences[0].tokens[..=end].to_vec());
    assert_eq!(first.finish, FinishReason::Stop);
    assert_eq!(first.logprobs.len(), first.tokens.len());

    let err = |prompts: &[Vec<u32>], config: &GenerateConfig| {
        generate(&model, prompts, config, &device)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[vec![]], &greedy).contains("prompt 0 is empty"));
    assert!(err(&[vec![1, 500]], &greedy).contains("outside the vocabulary"));
    assert!(err(&[], &greedy).contains("no prompts"));
    let hot = GenerateConfig {
        sampling: Sampling {
            temperature: -1.0,
            top_p: 1.0,
        },
        ..greedy
    };
    assert!(err(&prompts(), &hot).contains("temperature"));
}
