"""The tasks' file readers go through the package's one opener (biogpt.model.files): gzip by its
bytes, `file:line` for bad bytes, JSON that Python cannot hold or no UTF-8 output can write
refused where its line is known; and long sources are reported once per run, not per document."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from biogpt.model.errors import InputDataError, PathError
from biogpt.tasks.base import MalformedLine, TaskDataError, parse_json_line, read_json, read_jsonl
from biogpt.tasks.evaluate import read_predictions


def test_a_task_data_error_is_a_data_error():
    """So that every command maps a task's bad file to the same exit status (1) as bad input."""
    assert issubclass(TaskDataError, InputDataError)


@pytest.mark.parametrize(
    "line, why",
    [
        ("{oops", "malformed JSON"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"text": "\\ud800"}', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),  # in a key too
    ],
)
def test_parse_json_line_refuses_what_later_code_could_not_handle(line, why):
    with pytest.raises(MalformedLine, match=why):
        parse_json_line(line)


def test_parse_json_line_accepts_a_surrogate_pair():
    assert parse_json_line('{"t": "\\ud83d\\ude00"}') == {"t": "\U0001f600"}


def test_read_jsonl_reads_gzip_and_names_the_line(tmp_path: Path):
    path = tmp_path / "rows"  # no suffix: gzip is recognised by its bytes
    path.write_bytes(gzip.compress(b'{"a": 1}\n\n{"b": "\\ud800"}\n'))
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(TaskDataError, match=r"rows:3: a JSON string holds a lone surrogate"):
        next(rows)
    path.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(InputDataError, match=r"rows:2: bytes that are not UTF-8 \(at column 11\)"):
        list(read_jsonl(path))


def test_read_json_reads_gzip_and_refuses_deep_nesting(tmp_path: Path):
    path = tmp_path / "test.json"
    path.write_bytes(gzip.compress(json.dumps({"1": {"title": "x"}}).encode()))
    assert read_json(path) == {"1": {"title": "x"}}
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(TaskDataError, match="test.json: JSON nested too deeply"):
        read_json(path)
    with pytest.raises(PathError, match="no such file"):
        read_json(tmp_path / "missing.json")


def test_read_predictions_reads_gzip_and_counts_bad_lines(tmp_path: Path):
    """A gzip predictions file is read (it used to yield no prediction at all); a line nested too
    deeply or holding a lone surrogate is one malformed line, counted; bytes that are not UTF-8
    stop the reading with `file:line` (the file needs re-encoding, not a count)."""
    path = tmp_path / "p.jsonl.gz"
    lines = [b'{"id": "1", "output": "yes"}', b"[" * 200_000 + b"]" * 200_000, b'{"id": "3", "output": "\\ud800"}']
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    result = read_predictions(path)
    assert list(result.records) == ["1"] and result.lines == 3
    assert [m.split(":")[0] for m in result.malformed] == ["line 2", "line 3"]
    assert "nested too deeply" in result.malformed[0] and "lone surrogate" in result.malformed[1]
    path.write_bytes(gzip.compress(b'{"id": "1", "output": "yes"}\n{"id": "2", "output": "caf\xe9"}\n'))
    with pytest.raises(InputDataError, match=r"p.jsonl.gz:2: bytes that are not UTF-8"):
        read_predictions(path)
    with pytest.raises(PathError, match="is a directory, expected a file"):
        read_predictions(tmp_path)


# ------------------------------------------------------------------ one warning for many cut sources
class _Tokenizer:
    """Just enough of a tokenizer for encode_source: one id per word, `...` is id 9."""

    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [10 + len(w) for w in text.split()]}

    def convert_tokens_to_ids(self, token):
        return 9


def test_cut_sources_are_counted_into_one_summary_line(caplog):
    """`train re --from-scratch tiny` cut hundreds of sources and warned once per document; with
    a SourceCuts the run warns once, with the count and the longest cut."""
    from biogpt.tasks.runner import PromptRecipe, SourceCuts, encode_source

    cuts = SourceCuts()
    recipe = PromptRecipe(max_source_positions=4)
    with caplog.at_level(logging.WARNING):
        ids = [encode_source(_Tokenizer(), "w " * n, recipe, cuts=cuts) for n in (3, 6, 9, 5)]
        assert not caplog.records  # counted, not logged one by one
        cuts.report("training sources")
    assert [len(i) for i in ids] == [4, 5, 5, 5] and ids[1][-1] == 9  # cut to 4 tokens + </s>, "..." last
    (record,) = caplog.records
    assert record.getMessage().startswith("3 training sources cut to fit the model (longest: 9 tokens cut to 4")
