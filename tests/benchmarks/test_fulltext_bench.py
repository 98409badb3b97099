"""The full-text benchmark's pieces (benchmarks/fulltext_bench.py): its inputs and its table."""

from __future__ import annotations

import argparse

from benchmarks import fulltext_bench as bench


def test_inputs_repeat_the_three_articles(tmp_path):
    folder = bench.inputs(tmp_path, 2)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 6 and {n.split("-", 1)[1] for n in names} == {p.name for p in bench.ARTICLES.glob("*.nxml")}


def test_the_table_states_both_modes_and_their_ratio():
    args = argparse.Namespace(size="tiny", device="cpu", copies=1, max_new_tokens=8, constrained=True)
    results = {
        "truncate": {"documents": 3, "units": 3, "relations": 3, "seconds": 2.0, "units_per_s": 1.5, "relations_per_s": 1.5},
        "passages": {"documents": 3, "units": 30, "relations": 12, "seconds": 10.0, "units_per_s": 3.0, "relations_per_s": 1.2},
    }
    text = bench.report(args, results)
    assert "| truncate | 3 | 3 | 3 | 2.0 | 1.50 | 1.50 |" in text
    assert "| passages | 3 | 30 | 12 | 10.0 | 3.00 | 1.20 |" in text
    assert "10.0× the model inputs in 5.0× the wall time; inputs/s 2.00× truncation's" in text
    assert "--max-new-tokens 8 --constrained`" in text
    assert "relations written: 4.0× truncation's; relations/s 0.80× truncation's" in text
