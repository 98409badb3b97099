"""Scoring PubMedQA's three answers: one row per prompt (the candidates under a tree-shaped mask)
against one full row per candidate (the prompt computed three times, as `biogpt qa` did before).

    python -m benchmarks.qa_scoring [--size tiny|347m] [--questions 64] [--batch-size 1 8]
                                    [--device cpu] [--markdown F]

Both sides score the same prompts with the same random-weight model in the same process:
`tasks.runner.candidate_probabilities_batch` over length-sorted batches of `--batch-size`
prompts, and the reference, `tasks.runner.token_logprobs` on the three sequences prompt + answer
+ `</s>` of each question (full-vocabulary teacher forcing; each question alone). Prompts are
the first `--questions` PubMedQA questions with their contexts (../shared/data/PubMedQA, else
the test fixture), built as `biogpt qa` builds them (reasoning-required). Reported: seconds,
questions/s, the ratio, and the largest difference of any probability (the two must agree to
float rounding). No time is asserted anywhere; tests check the pieces and the agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOGPT_SHARED", ROOT.parent / "shared")) / "data" / "PubMedQA" / "ori_pqal.json"
FIXTURE = ROOT / "tests" / "fixtures" / "tasks" / "PubMedQA" / "ori_pqal.json"


def load(size: str, device: str) -> tuple[Any, Any, Any, Any]:
    """The task, a random-weight causal LM of `size` over the real vocabulary, its tokenizer, its recipe."""
    from biogpt.model import BioGptTokenizer
    from biogpt.tasks import get_task
    from biogpt.tasks.runner import read_recipe

    from .fulltext_bench import random_model

    model = random_model(size).to(device)
    tokenizer = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    task = get_task("pubmedqa")
    return task, model, tokenizer, read_recipe(model, tokenizer, task)


def prompts(task: Any, model: Any, tokenizer: Any, recipe: Any, count: int) -> list[list[int]]:
    """The model inputs `biogpt qa` gives the first `count` questions (one unit each when they fit)."""
    from biogpt.commands.qa import plan_question
    from biogpt.io import Record

    data = json.loads((SHARED if SHARED.exists() else FIXTURE).read_text(encoding="utf-8"))
    out = []
    for key, value in list(data.items())[:count]:
        record = Record(key, value["QUESTION"], {"context": value["CONTEXTS"]})
        plan = plan_question(task, tokenizer, recipe, record, positions=model.config.max_position_embeddings, context_key="context",
                             long_answer_key="long_answer", setting="reasoning-required")
        out.extend(reading.input_ids for reading in plan.readings)
    return out


def reference(model: Any, tokenizer: Any, inputs: list[list[int]], targets: list[str]) -> list[list[float]]:
    """Each question alone, one full row per candidate: the former scoring."""
    import torch

    from biogpt.tasks.runner import token_logprobs

    answers = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id] for t in targets]
    out = []
    for source in inputs:
        logps = token_logprobs(model, [source + answer for answer in answers], tokenizer.pad_token_id)
        out.append(torch.softmax(torch.tensor([sum(lp[len(source) - 1 :]) for lp in logps]), 0).tolist())
    return out


def ours(model: Any, tokenizer: Any, inputs: list[list[int]], targets: list[str], batch_size: int) -> list[list[float]]:
    """Length-sorted batches of `batch_size` prompts, as `biogpt qa -b` runs them."""
    from biogpt.batching import plan_batches
    from biogpt.tasks.runner import candidate_probabilities_batch

    out: list[list[float]] = [[] for _ in inputs]
    for batch in plan_batches([len(s) for s in inputs], batch_size=batch_size, max_tokens=None):
        for i, probs in zip(batch, candidate_probabilities_batch(model, tokenizer, [inputs[i] for i in batch], targets)):
            out[i] = probs
    return out


def measure(size: str, questions: int, batch_sizes: list[int], device: str) -> dict[str, Any]:
    task, model, tokenizer, recipe = load(size, device)
    inputs = prompts(task, model, tokenizer, recipe, questions)
    targets = [target for _, target in task.answer_candidates()]
    ours(model, tokenizer, inputs[:2], targets, 2)  # warm-up: kernels, allocator
    reference(model, tokenizer, inputs[:2], targets)
    started = time.perf_counter()
    want = reference(model, tokenizer, inputs, targets)
    result: dict[str, Any] = {"prompts": len(inputs), "tokens": sum(len(s) for s in inputs),
                              "reference_s": time.perf_counter() - started, "ours": {}}
    for b in batch_sizes:
        started = time.perf_counter()
        got = ours(model, tokenizer, inputs, targets, b)
        seconds = time.perf_counter() - started
        diff = max(abs(p - q) for row_got, row_want in zip(got, want) for p, q in zip(row_got, row_want))
        result["ours"][b] = {"seconds": seconds, "max_diff": diff}
    return result


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    from .run import environment

    n, ref = result["prompts"], result["reference_s"]
    lines = [
        f"Machine: {environment()}",
        f"Command: `python -m benchmarks.qa_scoring --size {args.size} --questions {args.questions} "
        f"--batch-size {' '.join(map(str, args.batch_size))} --device {args.device}`",
        f"Prompts: {n} PubMedQA questions with their contexts, {result['tokens'] / max(n, 1):.0f} tokens on average; three answers each.",
        "",
        "| scoring | seconds | questions/s | ours ÷ reference (questions/s) | largest probability difference |",
        "|---|---|---|---|---|",
        f"| reference: a full row per answer, one question at a time | {ref:.2f} | {n / ref:.2f} | 1.00× | 0 |",
    ]
    for b, r in result["ours"].items():
        lines.append(f"| ours: one row per question (tree mask), -b {b} | {r['seconds']:.2f} | {n / r['seconds']:.2f} | "
                     f"**{ref / r['seconds']:.2f}×** | {r['max_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "347m"), default="tiny")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    text = report(args, measure(args.size, args.questions, args.batch_size, args.device))
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
