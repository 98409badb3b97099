"""Does multiprocessing pay for tokenizing large inputs? One process against a pool, on every
distinct abstract of ../shared (BC5CDR train/valid/test, PubMedQA contexts, HoC), same ids.

    python -m benchmarks.tokenizer_processes [--processes 2] [--repeats 3]

Each pass builds its tokenizers fresh inside the workers (a pipeline's cost), forked from a
parent that has imported the package but not built a tokenizer.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

from benchmarks.tokenizer_speed import SHARED


def texts() -> list[str]:
    out: list[str] = []
    for split in ("train", "valid", "test"):
        docs = json.loads((SHARED / "BC5CDR" / f"{split}.json").read_text(encoding="utf-8"))
        out += [d["title"] + " " + d["abstract"] for d in docs.values()]
    pubmedqa = json.loads((SHARED / "PubMedQA" / "ori_pqal.json").read_text(encoding="utf-8"))
    out += [" ".join(v["CONTEXTS"]) for v in pubmedqa.values()]
    out += [line.split("\t")[-1] for line in (SHARED / "HoC" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return out


def encode(chunk: list[str]) -> list[list[int]]:
    from biogpt.model.tokenizer import BioGptTokenizer

    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    return [tok(t)["input_ids"] for t in chunk]


def run(data: list[str], processes: int) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    n = len(data)
    chunks = [data[i * n // processes : (i + 1) * n // processes] for i in range(processes)]
    with mp.get_context("fork").Pool(processes) as pool:  # a fresh worker per pass, also for 1
        ids = [x for part in pool.map(encode, chunks) for x in part]
    return time.perf_counter() - start, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = texts()
    one, many = [], []
    for _ in range(args.repeats):  # A B A B
        t1, ids1 = run(data, 1)
        tn, idsn = run(data, args.processes)
        assert ids1 == idsn, "different ids"
        one.append(t1)
        many.append(tn)
    print(f"{len(data)} texts; 1 process {statistics.median(one):.2f} s (min {min(one):.2f}), "
          f"{args.processes} processes {statistics.median(many):.2f} s (min {min(many):.2f}); "
          f"speed-up {statistics.median(one) / statistics.median(many):.2f}x; identical ids")


if __name__ == "__main__":
    main()
