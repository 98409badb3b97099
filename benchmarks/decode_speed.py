"""Batch-1 greedy decoding speed of one checkout, for A/B runs between commits on a noisy machine.

    python -m benchmarks.decode_speed --mode bfloat16|int8 [--checkout DIR] [--repeats 2]

Prints tokens/s for an 8-token prompt and 64 new tokens (random 347M weights), `--repeats`
timings after one warm-up. `--checkout` imports `model` from another working tree (e.g. a
`git worktree` of an older commit), so two commits can be run alternately in fresh processes:

    for i in 1 2 3 4 5; do
      python -m benchmarks.decode_speed --mode int8 --checkout /tmp/old
      python -m benchmarks.decode_speed --mode int8
    done
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["float32", "bfloat16", "int8"], default="bfloat16")
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout.resolve()))
    from biogpt.model import BioGptConfig, BioGptForCausalLM

    torch.manual_seed(0)
    model = BioGptForCausalLM(BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    if args.mode == "int8":
        try:  # since 0.2.0: an int8 copy built beside the model
            from biogpt.model.fast.quantize import quantize_int8
        except ImportError:  # older checkouts: the model's own method
            model = model.quantize("int8")
        else:
            model = quantize_int8(model)
    elif args.mode == "bfloat16":
        model = model.to(torch.bfloat16)
    ids = torch.randint(4, model.config.vocab_size, (1, 8))
    ids[:, 0] = 2
    model.generate(ids, max_new_tokens=8)  # warm-up
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=64, min_new_tokens=64)
        rates.append(64 / (time.perf_counter() - start))
    print(f"{args.checkout.resolve()} {args.mode}: " + " ".join(f"{r:.1f}" for r in rates) + " tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
