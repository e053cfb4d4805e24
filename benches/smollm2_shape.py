"""The benchmarked architectures as transformers configs, shared by the reference benchmarks:
SmolLM2-135M, and the tiny study's model (`LlamaConfig::tiny_study` with the training bench's
512-token vocabulary)."""

import transformers


def smollm2_135m_config(layers=30):
    return transformers.LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )


def tiny_study_config(layers=2, vocab=512):
    return transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
