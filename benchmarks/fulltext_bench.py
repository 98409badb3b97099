"""Full-text articles read whole against truncation (issue 29, item 4).

    python -m benchmarks.fulltext_bench [--size tiny|347m] [--device cpu|cuda] [--copies 1]
                                        [--max-new-tokens 32] [--constrained] [--markdown F]

The three PMC Open Access articles shipped in tests/fixtures/pmc (JATS) go through
`biogpt extract-relations --task bc5cdr` twice, with the same random-weight model folder (the
tiny preset over the real vocabulary, or the 347M shapes): `--long-documents truncate` (today's
official input: the first ~1,000 tokens of each article) and `--long-documents passages` (every
passage; long ones split at sentences). Units of all articles share the continuous batches.
`--copies N` repeats the articles N times (more work per run on a fast device).

Per mode: model inputs ("units": one per article when truncating), wall time of the whole command
(start-up and model loading included, the same for both), units/s and relations/s as written
to the output. With random weights free decoding rarely writes the task's sentence, so
`--constrained` (names copied from the document, extract-relations' option) is what gives
relations to merge: their count measures the parsing, grounding and merge's work, not
extraction quality. Every number is measured in
this run; ratios compare the two modes of the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "tests" / "fixtures" / "pmc"
MODES = ("truncate", "passages")


def random_model(size: str) -> Any:
    """A seeded random-weight causal LM over the real vocabulary, without dropout: the 347M
    shapes, or the tiny preset with 1,024 positions (room for a whole abstract)."""
    import torch

    from biogpt.model import BioGptConfig, BioGptForCausalLM

    torch.manual_seed(0)
    if size == "347m":
        config = BioGptConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    else:
        config = BioGptConfig.from_preset("tiny", vocab_size=42384, max_position_embeddings=1024, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0)
    return BioGptForCausalLM(config).eval()


def make_model(directory: Path, size: str) -> None:
    from biogpt.model import BioGptTokenizer

    random_model(size).save_pretrained(directory, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))


def inputs(work: Path, copies: int) -> Path:
    """The articles, `copies` times each (distinct file names; the ids repeat, which is fine)."""
    folder = work / "articles"
    folder.mkdir()
    for n in range(copies):
        for article in sorted(ARTICLES.glob("*.nxml")):
            shutil.copy(article, folder / f"{n}-{article.name}")
    return folder


def run_mode(mode: str, articles: Path, model: Path, out: Path, *, device: str, max_new_tokens: int, constrained: bool) -> dict[str, float]:
    argv = [sys.executable, "-m", "biogpt", "-q", "extract-relations", str(articles), "--task", "bc5cdr", "-m", str(model),
            "--long-documents", mode, "--max-new-tokens", str(max_new_tokens), "--device", device, "-o", str(out), "--force",
            *(["--constrained"] if constrained else [])]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{mode}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    units = sum(len(r.get("units") or [None]) for r in records)
    relations = sum(len(r["relations"]) for r in records)
    return {"documents": len(records), "units": units, "relations": relations, "seconds": seconds,
            "units_per_s": units / seconds, "relations_per_s": relations / seconds}


def report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> str:
    from .run import environment

    t, p = results["truncate"], results["passages"]
    lines = [
        f"Machine: {environment()}",
        f"Command: `python -m benchmarks.fulltext_bench --size {args.size} --device {args.device} --copies {args.copies} "
        f"--max-new-tokens {args.max_new_tokens}{' --constrained' if args.constrained else ''}`",
        "",
        "| --long-documents | articles | model inputs | relations written | wall s (whole command) | inputs/s | relations/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = results[mode]
        lines.append(f"| {mode} | {r['documents']:.0f} | {r['units']:.0f} | {r['relations']:.0f} | {r['seconds']:.1f} | "
                     f"{r['units_per_s']:.2f} | {r['relations_per_s']:.2f} |")
    lines += [
        "",
        f"- passages ÷ truncate: {p['units'] / t['units']:.1f}× the model inputs in {p['seconds'] / t['seconds']:.1f}× the wall "
        f"time; inputs/s {p['units_per_s'] / t['units_per_s']:.2f}× truncation's.",
    ]
    if t["relations"] and p["relations"]:
        lines.append(f"- relations written: {p['relations'] / t['relations']:.1f}× truncation's; relations/s "
                     f"{p['relations_per_s'] / t['relations_per_s']:.2f}× truncation's.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "347m"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--constrained", action="store_true", help="extract-relations --constrained (names copied from the document)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fulltext-bench-") as tmp:
        work = Path(tmp)
        make_model(work / "model", args.size)
        articles = inputs(work, args.copies)
        results = {mode: run_mode(mode, articles, work / "model", work / f"{mode}.jsonl", device=args.device,
                                  max_new_tokens=args.max_new_tokens, constrained=args.constrained) for mode in MODES}
    text = report(args, results)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
