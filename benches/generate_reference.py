#!/usr/bin/env python3
"""The reference side of the generation benchmark: transformers `generate` on a randomly
initialised model of SmolLM2-135M's shape, with the settings of `benches/generate.rs`.

    .venv/bin/python benches/generate_reference.py --batch 16 --prompt-len 128 --new-tokens 64

Prints one JSON object (the same fields as the Rust report). The virtual environment is the one
`scripts/make_model_fixtures.py` creates (torch + transformers from PyPI).
"""

import argparse
import json
import os
import time

import torch
import transformers

from smollm2_shape import smollm2_135m_config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.AutoModelForCausalLM.from_config(smollm2_135m_config()).eval()
    prompts = torch.randint(0, 49152, (args.batch, args.prompt_len))
    mask = torch.ones_like(prompts)
    settings = dict(
        do_sample=True,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=0,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        pad_token_id=0,
    )

    with torch.inference_mode():
        model.generate(input_ids=prompts[:2], attention_mask=mask[:2], **{**settings, "max_new_tokens": 2, "min_new_tokens": 2})
        start = time.perf_counter()
        model(input_ids=prompts, attention_mask=mask, logits_to_keep=1)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(input_ids=prompts, attention_mask=mask, **settings)
        total = time.perf_counter() - start
    generated = out.shape[1] - args.prompt_len
    assert generated == args.new_tokens, generated
    decode = total - prefill
    report = {
        "device": f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads, transformers {transformers.__version__}",
        "config": vars(args),
        "parameters": sum(p.numel() for p in model.parameters()),
        "prefill_seconds": prefill,
        "prefill_tokens_per_s": args.batch * args.prompt_len / prefill,
        "decode_seconds": decode,
        "decode_tokens_per_s": args.batch * (args.new_tokens - 1) / decode,
        "total_seconds": total,
        "tokens_per_s": args.batch * args.new_tokens / total,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
