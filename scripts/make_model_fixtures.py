#!/usr/bin/env python3
"""Golden fixtures for the model crate, made with the reference stack (PyTorch + transformers).

    python3 scripts/make_model_fixtures.py            # tiny random Llama and Qwen2 checkpoints
    python3 scripts/make_model_fixtures.py --smollm2  # also: top-1 tokens of the real SmolLM2 GGUF

The first run creates the virtual environment `.venv/` (git-ignored) with torch, transformers,
safetensors and gguf from PyPI, then re-runs itself inside it. Everything written goes to
model/tests/fixtures/ and is committed (a few hundred kB):

  tiny_llama/   Llama, f32, sharded (index json), untied output, llama3 RoPE scaling
  tiny_qwen2/   Qwen2, bf16, one file, tied output, q/k/v biases
  <name>/expected.safetensors  logits [2, T, vocab] for `input_ids` / `attention_mask`
  <name>/expected.json         inputs, greedy generations and their per-token log-probs
  smollm2_top1.json            (--smollm2) prompt ids and top-1 next tokens of SmolLM2-135M Q4_1
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
FIXTURES = ROOT / "model" / "tests" / "fixtures"
GGUF = ROOT / "assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGES = ["torch", "transformers", "accelerate", "safetensors", "gguf", "numpy"]


def ensure_venv():
    """Re-executes this script inside .venv, creating it first if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", *PACKAGES])
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


# Two rows of different lengths: the second is left-padded by 4 (as batched generation does).
INPUT_IDS = [
    [11, 25, 37, 142, 9, 250, 77, 3, 64, 199, 18, 5],
    [0, 0, 0, 0, 45, 46, 47, 100, 101, 230, 7, 290],
]
ATTENTION_MASK = [[1] * 12, [0, 0, 0, 0] + [1] * 8]
# Prompts for greedy generation (unpadded; the reference pads them on the left).
PROMPTS = [[11, 25, 37, 142, 9], [45, 46, 47, 100, 101, 230, 7, 290], [3]]
MAX_NEW_TOKENS = 12
STOP_TOKEN = 2


def randomize(model, torch, seed):
    """Gives every parameter a non-trivial value (HF initialises biases to 0 and norms to 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.15 * noise)


def make_tiny(torch, transformers, name, config, dtype, max_shard_size, seed):
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomize(model, torch, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    # Round the parameters to the storage dtype, then compute the reference in f32. (Casting
    # the whole module would also round RoPE's inverse-frequency buffer.)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    model.eval()
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)

    ids = torch.tensor(INPUT_IDS)
    mask = torch.tensor(ATTENTION_MASK)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    save_file(
        {"logits": logits.contiguous()},
        str(out / "expected.safetensors"),
    )

    # Greedy generation of a left-padded batch; stop token 2, pad token 0.
    width = max(len(p) for p in PROMPTS)
    batch = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    batch_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    with torch.no_grad():
        gen = model.generate(
            input_ids=batch,
            attention_mask=batch_mask,
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            eos_token_id=STOP_TOKEN,
            pad_token_id=0,
            output_logits=True,
            return_dict_in_generate=True,
        )
    generations = []
    for row in range(len(PROMPTS)):
        tokens, logprobs = [], []
        for step, step_logits in enumerate(gen.logits):
            token = int(gen.sequences[row, width + step])
            tokens.append(token)
            logprobs.append(float(torch.log_softmax(step_logits[row].float(), -1)[token]))
            if token == STOP_TOKEN:
                break
        generations.append({"prompt": PROMPTS[row], "tokens": tokens, "logprobs": logprobs})

    expected = {
        "made_by": "scripts/make_model_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "input_ids": INPUT_IDS,
        "attention_mask": ATTENTION_MASK,
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop_token": STOP_TOKEN,
        "greedy": generations,
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    model.to(dtype).save_pretrained(out, max_shard_size=max_shard_size)
    print(f"wrote {out.relative_to(ROOT)}")


def make_smollm2(torch, transformers):
    """Top-1 next tokens of the real SmolLM2-135M-Instruct Q4_1 GGUF, as transformers sees it."""
    if not GGUF.exists():
        sys.exit(f"{GGUF} is missing: run scripts/fetch_smollm2.sh first")
    tok = transformers.AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32
    ).eval()
    texts = [
        "The capital of France is",
        "1, 2, 3, 4, 5,",
        "def fibonacci(n):",
        "Cards: [5, 'K', 3, 'A']. Use each card once to make 24 with +, -, * and /.",
    ]
    chats = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Write one sentence about the sea."}],
    ]
    cases = [{"kind": "plain", "text": t, "ids": tok(t, add_special_tokens=False).input_ids} for t in texts]
    for chat in chats:
        rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False).input_ids
        cases.append({"kind": "chat", "messages": chat, "text": rendered, "ids": ids})
    for case in cases:
        with torch.no_grad():
            logits = model(torch.tensor([case["ids"]])).logits[0, -1]
        top = torch.topk(logits, 5)
        case["top5"] = [int(i) for i in top.indices]
        case["top1_logit"] = float(top.values[0])
        case["top2_logit"] = float(top.values[1])
    expected = {
        "made_by": "scripts/make_model_fixtures.py --smollm2",
        "transformers": transformers.__version__,
        "gguf_file": GGUF.name,
        "cases": cases,
    }
    path = FIXTURES / "smollm2_top1.json"
    path.write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main():
    ensure_venv()
    import torch
    import transformers

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    llama = transformers.LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 1024,
        },
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    qwen2 = transformers.Qwen2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    make_tiny(torch, transformers, "tiny_llama", llama, torch.float32, "150KB", seed=1)
    make_tiny(torch, transformers, "tiny_qwen2", qwen2, torch.bfloat16, "10MB", seed=2)
    if "--smollm2" in sys.argv[1:]:
        make_smollm2(torch, transformers)


if __name__ == "__main__":
    main()
