"""Tokenizer throughput, ours vs transformers' BioGptTokenizer, from a cold start.

Why fresh subprocesses: both tokenizers memoise (BPE per word, and ours Moses per chunk), and
the issue's number is for a new process that tokenizes the BC5CDR test abstracts once. Each
measurement therefore starts a new Python process, builds the tokenizer (timed separately, not
part of the throughput), then encodes every `title + " " + abstract` once. Runs alternate
ours / transformers (A B A B ...) so drifting machine load hits both alike; we report medians.

    python -m benchmarks.tokenizer_speed [--repeats 5]

`measure(n_repeats)` returns {"ours": [abstracts/s...], "theirs": [...], "ratio": median ÷
median, ...}; benchmarks/run.py calls it. No time is asserted anywhere (tests check ids).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOGPT_SHARED", ROOT.parent / "shared")) / "data"
BC5CDR_TEST = SHARED / "BC5CDR" / "test.json"
BUNDLED = ROOT / "model" / "vocab" / "biogpt"

# Run in the child: build the tokenizer, then time one pass over the abstracts.
_CHILD = r"""
import json, sys, time
which, data, hf_dir = sys.argv[1], sys.argv[2], sys.argv[3]
texts = [d["title"] + " " + d["abstract"] for d in json.load(open(data, encoding="utf-8")).values()]
t0 = time.perf_counter()
if which == "ours":
    from biogpt.model.tokenizer import BioGptTokenizer
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
else:
    import transformers
    tok = transformers.BioGptTokenizer(hf_dir + "/vocab.json", hf_dir + "/merges.txt")
t1 = time.perf_counter()
n_ids = 0
for text in texts:
    n_ids += len(tok(text)["input_ids"])
t2 = time.perf_counter()
print(json.dumps({"abstracts_per_s": len(texts) / (t2 - t1), "load_s": t1 - t0, "n": len(texts), "ids": n_ids}))
"""


def _write_hf_vocab(out: Path) -> Path:
    """vocab.json + merges.txt of the hub tokenizer from the bundled fairseq files (the rule of
    ../shared/data/README.md), so transformers needs no network."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for line in (BUNDLED / "dict.txt").read_text(encoding="utf-8").splitlines():
        word = line.rsplit(" ", 1)[0]
        vocab[word[:-2] if word.endswith("@@") else word + "</w>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_bytes((BUNDLED / "bpecodes").read_bytes())
    return out


def _run_child(which: str, hf_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONHASHSEED="0")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(BC5CDR_TEST), str(hf_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{which} tokenizer benchmark failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(n_repeats: int = 5) -> dict[str, Any]:
    """Cold-start abstracts/s of ours and transformers', `n_repeats` fresh processes each,
    interleaved; raises FileNotFoundError without the BC5CDR data."""
    if not BC5CDR_TEST.is_file():
        raise FileNotFoundError(f"{BC5CDR_TEST}: BC5CDR test abstracts needed for the tokenizer benchmark")
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = _write_hf_vocab(Path(tmp))
        for _ in range(max(1, n_repeats)):
            ours.append(_run_child("ours", hf_dir))
            theirs.append(_run_child("theirs", hf_dir))
    if ours[0]["ids"] != theirs[0]["ids"]:
        raise RuntimeError(f"id counts differ: ours {ours[0]['ids']}, transformers {theirs[0]['ids']}")
    a = [r["abstracts_per_s"] for r in ours]
    b = [r["abstracts_per_s"] for r in theirs]
    return {
        "unit": "abstracts/s",
        "abstracts": ours[0]["n"],
        "ours": a,
        "theirs": b,
        "ours_median": statistics.median(a),
        "theirs_median": statistics.median(b),
        "ratio": statistics.median(a) / statistics.median(b),
        "ours_load_s": statistics.median(r["load_s"] for r in ours),
        "theirs_load_s": statistics.median(r["load_s"] for r in theirs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    r = measure(args.repeats)

    def spread(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.0f} (min {min(xs):.0f}, max {max(xs):.0f})"

    print(f"BC5CDR test, {r['abstracts']} abstracts, cold start, {args.repeats} fresh processes each (A B A B)")
    print(f"ours:         {spread(r['ours'])} abstracts/s   (tokenizer build {r['ours_load_s']:.2f} s, not timed)")
    print(f"transformers: {spread(r['theirs'])} abstracts/s   (tokenizer build {r['theirs_load_s']:.2f} s, not timed)")
    print(f"ratio ours / transformers (medians): {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
