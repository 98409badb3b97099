"""Proof that training works: a small BioGPT trained from scratch on BC5CDR NER (chemicals and
diseases, CPU only), scored on the development set with seqeval (entity level, strict IOB2).

    python -m benchmarks.ner_from_scratch [--shared ../shared/data] [--max-steps 600] [--workdir DIR]

Everything goes through the product's own commands: `biogpt data ner-from-pubtator`,
`biogpt train ner --from-scratch CONFIG`, `biogpt eval ner -m OUT/model-best`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {  # ~6M parameters besides the embeddings: trainable on two CPU cores in minutes
    "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512,
    "max_position_embeddings": 256, "vocab_size": 42384,
}


def biogpt(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "biogpt", *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"biogpt {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    bc5 = args.shared / "BC5CDR"
    if not (bc5 / "CDR_TrainingSet.PubTator.txt").is_file():
        raise SystemExit(f"needs {bc5}/CDR_*Set.PubTator.txt (the shared reference data)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ner-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    biogpt("data", "ner-from-pubtator", str(bc5 / "CDR_TrainingSet.PubTator.txt"), "-o", str(work / "train.jsonl"), "--force")
    biogpt("data", "ner-from-pubtator", str(bc5 / "CDR_DevelopmentSet.PubTator.txt"), "-o", str(work / "dev.jsonl"), "--force")
    (work / "config.json").write_text(json.dumps(CONFIG))
    start = time.perf_counter()
    biogpt("train", "ner", str(work / "train.jsonl"), "-o", str(work / "out"), "--from-scratch", str(work / "config.json"),
           "--max-steps", str(args.max_steps), "-b", str(args.batch_size), "--lr", "1e-3", "--warmup-steps", "50",
           "--dropout", "0.1", "--eval-steps", str(args.max_steps), "--save-steps", str(args.max_steps), "--seed", "0")
    minutes = (time.perf_counter() - start) / 60
    metrics = json.loads(biogpt("eval", "ner", "-m", str(work / "out" / "model-last"), "--data", str(work / "dev.jsonl")))
    print(f"trained {args.max_steps} steps (batch {args.batch_size}) from scratch in {minutes:.1f} min on CPU; "
          f"BC5CDR dev entity-level (seqeval strict IOB2): P {metrics['precision']:.4f} R {metrics['recall']:.4f} F1 {metrics['f1']:.4f}")
    for label, row in (metrics.get("per_type") or {}).items():
        print(f"  {label}: F1 {row['f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
