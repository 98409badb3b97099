"""One reader for every command (issue 26): gzip, bad bytes, binary files, deep JSON, lone
surrogates and PubTator's rules behave the same in `data`, `train`, `eval` and the batch
commands. Each bad input must give exactly one line on stderr, the documented exit code
(1 for bad data, 2 for a wrong path) and no traceback; with --keep-going, a bad record or an
unreadable file is skipped and counted instead of stopping the run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.helpers import biogpt

PUBTATOR = [
    "111|t|Lidocaine-induced cardiac asystole.",
    "111|a|Intravenous lidocaine was given.",
    "111\t0\t9\tLidocaine\tChemical\tD008012",
    "111\t18\t34\tcardiac asystole\tDisease\tD006323",
    "",
    "222|t|Sulpiride-induced tardive dystonia.",
    "222|a|",
    "222\t0\t9\tSulpiride\tChemical\tD013469",
    "",
]


def _pubtator(path: Path, lines: list[str] = PUBTATOR) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _one_error(result, code: int, *needles: str) -> str:
    """The run failed with `code` and one line on stderr naming every needle, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("biogpt: error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ data ner-from-pubtator
def test_data_reads_gzip_by_its_bytes_and_writes_the_output_whole(tmp_path):
    src = tmp_path / "x.gz"
    src.write_bytes(gzip.compress(("\n".join(PUBTATOR) + "\n").encode()))
    out = tmp_path / "train.jsonl"
    result = biogpt("data", "ner-from-pubtator", str(src), "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = _jsonl(out.read_text())
    assert [r["id"] for r in rows] == ["111", "222"] and [len(r["entities"]) for r in rows] == [2, 1]
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*.tmp"))  # no temporary left
    _one_error(biogpt("data", "ner-from-pubtator", str(src), "-o", str(out)), 2, "--force")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"111|t|caf\xe9\n", "x.txt:1: bytes that are not UTF-8 (at column 10)"),
        (b"\x7fELF\x00\x00\x01binary", "x.txt: looks like a binary file"),
        (b"\x1f\x8b\x08\x00broken", "x.txt: cannot read (broken gzip stream"),
        ("\n".join(PUBTATOR[:4] + ["333\t0\t3\tabc\tChemical\tD1"]).encode(), "x.txt:5: annotation line of pmid '333'"),
        ("\n".join(PUBTATOR[:2] + ["111\tzero\t9\tLidocaine\tChemical\tD1"]).encode(), "x.txt:3: expected 'pmid<TAB>start"),
    ],
    ids=["not-utf8", "binary", "broken-gzip", "orphan-mention", "malformed-line"],
)
def test_data_bad_input_is_a_data_error_naming_the_line(tmp_path, content, needle):
    src = tmp_path / "x.txt"
    src.write_bytes(content)
    _one_error(biogpt("data", "ner-from-pubtator", str(src)), 1, needle)


def test_data_wrong_paths_are_usage_errors(tmp_path):
    _one_error(biogpt("data", "ner-from-pubtator", str(tmp_path / "missing.txt")), 2, "missing.txt: no such file")
    _one_error(biogpt("data", "ner-from-pubtator", str(tmp_path)), 2, "is a directory, expected a file")


def test_data_repeated_pmids_warn_once_with_a_count_or_are_refused_with_strict(tmp_path):
    """Concatenated copies are not merged (the entities of 111 stay 2, not 24): the first copy is
    kept with one warning line; --strict refuses the first repeat, naming its line."""
    src = _pubtator(tmp_path / "dup.txt", PUBTATOR * 12)
    result = biogpt("data", "ner-from-pubtator", str(src))
    assert result.returncode == 0, result.stderr
    rows = _jsonl(result.stdout)
    assert [r["id"] for r in rows] == ["111", "222"] and len(rows[0]["entities"]) == 2
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and "22 documents repeat the pmid of an earlier one" in warnings[0], result.stderr
    _one_error(biogpt("data", "ner-from-pubtator", str(src), "--strict"), 1, "dup.txt:10: document 111 appears a second time")


def test_data_bad_offsets_are_skipped_with_one_warning(tmp_path):
    lines = PUBTATOR[:4] + ["111\t-4\t9\tLidocaine\tChemical\tD1", "111\t0\t9\tLidocain\tChemical\tD1", "111\t60\t99\tx\tChemical\tD1"] + PUBTATOR[4:]
    src = _pubtator(tmp_path / "off.txt", lines)
    result = biogpt("data", "ner-from-pubtator", str(src))
    assert result.returncode == 0 and [len(r["entities"]) for r in _jsonl(result.stdout)] == [2, 1]
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and "3 mentions whose offsets do not fit the text skipped (first: line 5" in warnings[0]
    _one_error(biogpt("data", "ner-from-pubtator", str(src), "--strict"), 1, "off.txt:5: mention 'Lidocaine' at -4-9 lies outside the text")


# ------------------------------------------------------------------ train
@pytest.mark.parametrize("command", ["ner", "classify", "lm"])
def test_train_bad_bytes_are_a_data_error_naming_the_line(tmp_path, command):
    src = tmp_path / "train.jsonl"
    src.write_bytes(b'{"text": "fine", "label": "a", "entities": []}\n{"text": "caf\xe9"}\n')
    _one_error(biogpt("train", command, str(src), "-o", str(tmp_path / "run")), 1, "train.jsonl:2: bytes that are not UTF-8")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "line, needle",
    [("{oops", "malformed JSON"), ("[" * 200_000 + "]" * 200_000, "nested too deeply"), ('{"text": "\\ud800"}', "lone surrogate")],
    ids=["malformed", "deep", "surrogate"],
)
def test_train_malformed_jsonl_is_a_data_error(tmp_path, line, needle):
    src = tmp_path / "train.jsonl.gz"  # gzip read like any file
    src.write_bytes(gzip.compress(('{"text": "fine", "label": "a"}\n' + line + "\n").encode()))
    _one_error(biogpt("train", "classify", str(src), "-o", str(tmp_path / "run")), 1, "train.jsonl.gz:2: ", needle)


def test_training_readers_take_gzip(tmp_path):
    """`train ner x.jsonl.gz` (and classify, lm) read gzip as the inference commands do."""
    from biogpt.training.data import classify_rows, corpus_texts, ner_documents

    row = {"id": "1", "text": "Aspirin helps.", "label": "yes", "entities": [{"start": 0, "end": 7, "label": "Chemical"}]}
    src = tmp_path / "x.jsonl.gz"
    src.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    assert ner_documents(src) == [("1", "Aspirin helps.", [(0, 7, "Chemical")])]
    assert classify_rows(src) == ([("Aspirin helps.", ["yes"])], False)
    assert corpus_texts(src) == ["Aspirin helps."]


def test_train_binary_input_is_a_data_error(tmp_path):
    src = tmp_path / "corpus.txt"
    src.write_bytes(b"\x00\x01\x02binary")
    _one_error(biogpt("train", "lm", str(src), "-o", str(tmp_path / "run")), 1, "corpus.txt: looks like a binary file")


# ------------------------------------------------------------------ eval
def test_eval_ner_reads_gzip_data_and_predictions(tmp_path):
    data = tmp_path / "x.pubtator.gz"
    data.write_bytes(gzip.compress(("\n".join(PUBTATOR) + "\n").encode()))
    predictions = tmp_path / "p.jsonl.gz"
    gold = {"111": [(0, 9, "Chemical"), (18, 34, "Disease")], "222": [(0, 9, "Chemical")]}
    rows = [{"id": k, "entities": [{"start": s, "end": e, "label": t} for s, e, t in v]} for k, v in gold.items()]
    predictions.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    result = biogpt("-q", "eval", "ner", "--data", str(data), "--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["f1"] == 1.0 and metrics["counts"]["predictions_used"] == 2


def test_eval_predictions_folder_is_not_a_missing_file(tmp_path):
    data = _pubtator(tmp_path / "x.pubtator")
    _one_error(biogpt("eval", "ner", "--data", str(data), "--predictions", str(tmp_path)), 2, "is a directory, expected a file")


def test_eval_ner_bad_data_is_a_data_error(tmp_path):
    data = tmp_path / "x.pubtator"
    data.write_bytes(b"111|t|caf\xe9\n")
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": "111", "entities": []}\n')
    _one_error(biogpt("eval", "ner", "--data", str(data), "--predictions", str(predictions)), 1, "x.pubtator:1: bytes that are not UTF-8")


def test_eval_lm_bad_corpus_fails_before_the_model_loads(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"fine line\ncaf\xe9\n")
    # the model does not exist: the corpus is read first, so its error is the one reported
    _one_error(biogpt("eval", "lm", "-m", str(tmp_path / "no-model"), str(corpus)), 1, "corpus.txt:2: bytes that are not UTF-8")


# ------------------------------------------------------------------ --keep-going in a batch command
def test_keep_going_skips_and_counts_deep_json_surrogates_and_binary_files(tmp_path, tagger):
    """A folder of inputs: one good document per file around three bad ones. Without
    --keep-going the first bad one stops the run with one line (exit 1); with it each is one
    counted failure and the good documents are tagged."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"id": "a", "text": "Aspirin helps."}\n' + '{"id": "deep", "text": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    (folder / "b.jsonl").write_text('{"id": "s", "text": "half \\ud800 a pair"}\n')
    (folder / "c.bin").write_bytes(b"\x00\x01binary\xff")
    (folder / "d.jsonl.gz").write_bytes(gzip.compress(b'{"id": "d", "text": "Lidocaine too."}\n'))
    _one_error(biogpt("tag", "-m", str(tagger), str(folder)), 1, "a.jsonl:2: JSON nested too deeply", "--keep-going")
    result = biogpt("tag", "-m", str(tagger), str(folder), "--keep-going")
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in _jsonl(result.stdout)] == ["a", "d"]
    assert "3 documents skipped" in result.stderr and "Traceback" not in result.stderr
