#!/usr/bin/env python3
"""The reference side of the training benchmark: SFT steps of transformers' Llama in PyTorch eager
mode (forward with the masked loss, backward, AdamW) on a randomly initialised model of
SmolLM2-135M's shape (or the tiny study's, `--model tiny`), with the settings of
`benches/train.rs` and `sftvsrl bench train`.

    .venv/bin/python benches/train_reference.py --batch 4 --seq-len 256 --steps 3 --threads 2
    .venv/bin/python benches/train_reference.py --model tiny --batch 32 --seq-len 96 --layers 2 --threads 2

Prints one JSON object (the same fields as the Rust report). The virtual environment:
`python3 -m venv .venv && .venv/bin/pip install torch transformers` (CPU wheels:
`--index-url https://download.pytorch.org/whl/cpu` for torch, where that index is reachable).
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
import transformers

from smollm2_shape import smollm2_135m_config, tiny_study_config


def matmul_peak(n):
    """The best GFLOP/s of [n, n] x [n, n] f32 products over at least a second (and five runs)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    best, runs, started = 0.0, 0, time.perf_counter()
    while runs < 6 or time.perf_counter() - started < 1.0:
        start = time.perf_counter()
        torch.matmul(a, b)
        elapsed = time.perf_counter() - start
        if runs > 0:
            best = max(best, 2 * n**3 / elapsed / 1e9)
        runs += 1
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["smollm2-135m", "tiny"], default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--matmul-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    prompt_len = args.seq_len // 2 if args.prompt_len is None else args.prompt_len

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = smollm2_135m_config(args.layers) if args.model == "smollm2-135m" else tiny_study_config(args.layers)
    model = transformers.AutoModelForCausalLM.from_config(config).train()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq_len + 1))
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    # As in sftvsrl: position j predicts token j + 1; targets inside the prompt are not trained.
    targets[:, : prompt_len - 1] = -100
    mask = targets != -100
    n_targets = int(mask.sum())
    attention_mask = torch.ones_like(inputs)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.0)

    times = [0.0, 0.0, 0.0]
    for step in range(args.steps + 1):
        start = time.perf_counter()
        logits = model(input_ids=inputs, attention_mask=attention_mask).logits
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum") / n_targets
        # The statistics sftvsrl logs beside the loss: summed NLL and argmax accuracy.
        (logits.argmax(-1) == targets)[mask].sum().item()
        loss.item()
        forward = time.perf_counter() - start
        loss.backward()
        backward = time.perf_counter() - start - forward
        optim.step()
        optim.zero_grad(set_to_none=True)
        optimizer = time.perf_counter() - start - forward - backward
        if step > 0:
            for i, t in enumerate((forward, backward, optimizer)):
                times[i] += t / args.steps

    step_seconds = sum(times)
    parameters = sum(p.numel() for p in model.parameters())
    tokens_per_s = args.batch * args.seq_len / step_seconds
    model_gflops = 6 * parameters * tokens_per_s / 1e9
    peak = matmul_peak(args.matmul_size)
    report = {
        "device": f"torch {torch.__version__} cpu, transformers {transformers.__version__}, "
        f"attention {model.config._attn_implementation}",
        "threads": torch.get_num_threads(),
        "config": {**vars(args), "prompt_len": prompt_len},
        "parameters": parameters,
        "forward_seconds": times[0],
        "backward_seconds": times[1],
        "optimizer_seconds": times[2],
        "step_seconds": step_seconds,
        "tokens_per_s": tokens_per_s,
        "model_gflops": model_gflops,
        "matmul_peak_gflops": peak,
        "mfu": model_gflops / peak,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
