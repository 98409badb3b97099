"""A batch job the way users run one: many BC5CDR-length prompts, greedy, outputs of the gold
targets' lengths. Static length-sorted batches against continuous batching (finished rows
refilled with the next prompt), same model, same process, interleaved.

    python -m benchmarks.continuous [--device cpu|cuda] [--prompts 48] [--rows 8] [--dtype bfloat16] [--repeats 1]
    python -m benchmarks.continuous --write-lengths   # regenerate benchmarks/data/bc5cdr_lengths.json (needs ../shared)

Random weights cannot end where a fine-tuned model would, so each prompt decodes exactly its
gold target's length (end token disabled): a static batch then runs as long as its longest
target, as it would with real outputs, and continuous batching stops each row at its own. The
prompts are random tokens of the real prompt lengths (the decode cost does not depend on them).
Prompts are sorted by length for both methods.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = ROOT / "benchmarks" / "data" / "bc5cdr_lengths.json"


def load_lengths(n: int) -> list[tuple[int, int]]:
    """The first `n` (prompt, target) token lengths of the BC5CDR test documents, cycled."""
    pairs = [tuple(p) for p in json.loads(LENGTHS.read_text())["prompt_and_target_lengths"]]
    return [pairs[i % len(pairs)] for i in range(n)]  # type: ignore[misc]


def make_job(n: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    g = torch.Generator().manual_seed(seed)
    pairs = sorted(load_lengths(n))  # by prompt length, as the CLI's batching does
    prompts = [[2, *torch.randint(4, vocab, (p - 1,), generator=g).tolist()] for p, _ in pairs]
    return prompts, [t for _, t in pairs]


def run_static(generate: Callable[..., torch.Tensor], prompts: list[list[int]], targets: list[int], rows: int, device) -> int:
    """Length-sorted batches of `rows`, each decoding as long as its longest target. Returns the
    number of useful tokens (sum of targets)."""
    for start in range(0, len(prompts), rows):
        batch, want = prompts[start : start + rows], targets[start : start + rows]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[1] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        generate(ids, mask, max(want))
    return sum(targets)


def run_continuous(model, prompts: list[list[int]], targets: list[int], rows: int) -> int:
    from biogpt.model.continuous import generate_continuous

    produced = 0
    for done in generate_continuous(model, prompts, rows=rows, max_new_tokens=targets, eos_token_id=[]):
        produced += len(done.tokens)
    assert produced == sum(targets)
    return produced


def timed(fn: Callable[[], int]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def write_lengths() -> None:
    sys.path.insert(0, str(ROOT))
    from biogpt.model import BioGptTokenizer
    from biogpt.tasks import get_task
    from biogpt.tasks.runner import PromptRecipe, encode_source

    tokenizer = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    task = get_task("bc5cdr")
    examples = task.load(ROOT.parent / "shared" / "data" / "BC5CDR", "test")
    recipe = PromptRecipe(task="bc5cdr", max_source_positions=task.recipe.max_source_positions)
    pairs = [
        [
            len(encode_source(tokenizer, e.source, recipe)) + task.recipe.prompt_length,
            len(tokenizer(e.target, add_special_tokens=False)["input_ids"]) + 1,
        ]
        for e in examples
    ]
    source = (
        "BC5CDR test split (500 documents): tokens of </s> + source (cut at max_source_positions 640) + "
        "9 learned prompt tokens, and of the gold target + </s>, with BioGPT's tokenizer; written by "
        "benchmarks/continuous.py --write-lengths"
    )
    LENGTHS.write_text(json.dumps({"source": source, "prompt_and_target_lengths": pairs}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on a GPU, bfloat16 on a CPU")
    parser.add_argument("--prompts", type=int, default=None, help="default: 512 on a GPU, 48 on a CPU")
    parser.add_argument("--rows", type=int, default=None, help="default: 32 on a GPU, 8 on a CPU")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--write-lengths", action="store_true")
    args = parser.parse_args(argv)
    if args.write_lengths:
        write_lengths()
        return 0
    from biogpt.model import BioGptConfig, BioGptForCausalLM

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    dtype = getattr(torch, args.dtype or ("float16" if gpu else "bfloat16"))
    n = args.prompts or (512 if gpu else 48)
    rows = args.rows or (32 if gpu else 8)
    torch.manual_seed(0)
    model = BioGptForCausalLM(BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model = model.to(device=device, dtype=dtype).eval()
    prompts, targets = make_job(n, model.config.vocab_size)

    def ours_static(ids, mask, new):
        return model.generate(ids, attention_mask=mask, max_new_tokens=new, eos_token_id=[])

    static_fn = lambda: run_static(ours_static, prompts, targets, rows, device)  # noqa: E731
    cont_fn = lambda: run_continuous(model, prompts, targets, rows)  # noqa: E731
    static_fn() if gpu else None  # warm-up (graph capture) on a GPU; a CPU run is long enough
    cont_fn() if gpu else None
    static, cont = [], []
    for _ in range(args.repeats):
        static.append(timed(static_fn))
        cont.append(timed(cont_fn))
    steps_static = sum(max(targets[i : i + rows]) for i in range(0, n, rows))
    print(
        f"{n} prompts (mean {statistics.mean(len(p) for p in prompts):.0f} tokens), targets mean "
        f"{statistics.mean(targets):.1f} / max {max(targets)} tokens, {rows} rows, {dtype}, {device}: "
        f"static batches {statistics.median(static):.1f} tokens/s ({steps_static} decode steps), "
        f"continuous {statistics.median(cont):.1f} tokens/s (~{-(-sum(targets) // rows)} steps); "
        f"continuous / static {statistics.median(cont) / statistics.median(static):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
