"""The QA scoring benchmark's pieces (benchmarks/qa_scoring.py): both sides agree, the table."""

from __future__ import annotations

import argparse

from benchmarks import qa_scoring as bench


def test_ours_agrees_with_the_reference_on_real_questions_and_the_table_says_so():
    result = bench.measure("tiny", 3, [1, 2], "cpu")
    assert result["prompts"] == 3 and set(result["ours"]) == {1, 2}
    assert all(r["max_diff"] < 1e-5 for r in result["ours"].values())  # float rounding only
    args = argparse.Namespace(size="tiny", questions=3, batch_size=[1, 2], device="cpu")
    text = bench.report(args, result)
    assert "`python -m benchmarks.qa_scoring --size tiny --questions 3 --batch-size 1 2 --device cpu`" in text
    assert "| reference: a full row per answer, one question at a time |" in text
    assert text.count("| ours: one row per question (tree mask), -b ") == 2
