"""Readers, writers and batching helpers shared by the document commands."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biogpt.model.errors import BioGptError, InvalidOptionError, PathError
from biogpt.batching import Ordered, plan_batches, run_in_batches, run_windows
from biogpt.io import BadRecord, ReadOptions, Record, make_writer, read_inputs

from tests.helpers import FIXTURES, ROOT

IO = FIXTURES / "io"


def records(*paths, **kwargs):
    return list(read_inputs([str(p) for p in paths], **kwargs))


def test_pubtator_reader():
    items = records(IO / "sample.pubtator")
    assert [r.id for r in items] == ["8701013", "439781", "2894433"] or len(items) == 3
    first = items[0]
    assert isinstance(first, Record) and first.text.startswith(first.fields["title"])
    assert first.fields["entities"] and first.fields["relations"]
    e = first.fields["entities"][0]
    assert first.text[e["start"] : e["end"]] == e["text"]  # offsets index title + " " + abstract


def test_pubmed_xml_reader_with_inline_markup_and_sections():
    items = records(IO / "pubmed.xml")
    assert [r.id for r in items] == ["31234567", "31234568"]
    assert items[0].fields["title"] == "Naloxone reverses the antihypertensive effect of clonidine."
    assert "H2O intake" in items[0].text and [s["label"] for s in items[0].fields["sections"]] == ["BACKGROUND", "RESULTS"]
    assert items[1].text == "A title without an abstract."


def test_bioc_xml_and_json_give_the_same_records():
    xml, js = records(IO / "bioc.xml"), records(IO / "bioc.json")
    assert [(r.id, r.text) for r in xml] == [(r.id, r.text) for r in js]
    assert xml[0].fields["title"].startswith("Naloxone") and xml[0].fields["abstract"].startswith("In unanesthetized")


def test_paragraphs_lines_and_ids():
    paras = records(IO / "docs.paragraphs.txt", input_format="paragraphs")
    assert [r.text for r in paras] == ["First document line one still the first document.", "Second document."]
    assert paras[1].id.endswith("docs.paragraphs.txt:5")
    lines = records(IO / "docs.paragraphs.txt")
    assert len(lines) == 3 and lines[0].id.endswith(":1")


def test_a_pretty_printed_json_document_is_told_that_jsonl_is_expected(tmp_path):
    path = tmp_path / "ori_pqal.jsonl"
    path.write_text(json.dumps({"123": {"QUESTION": "Q?"}}, indent=2) + "\n")
    first = records(path, input_format="jsonl")[0]
    assert isinstance(first, BadRecord) and first.location.endswith(":1")
    assert "malformed JSON" in first.message and first.message.endswith("JSONL is expected: one JSON object per line")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "text": \n')
    assert "JSONL is expected" not in records(broken, input_format="jsonl")[0].message


def test_jsonl_text_key_id_key_title_abstract_and_bad_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"pmid": 1, "title": "T.", "abstract": "A."}),
                "{not json",
                json.dumps({"pmid": 2, "body": "x"}),
                json.dumps(["a", "list"]),
                json.dumps({"doc": "d3", "body": "Text three"}),
            ]
        )
        + "\n"
    )
    items = records(path)
    assert isinstance(items[0], Record) and items[0].id == "1" and items[0].text == "T. A."
    assert isinstance(items[1], BadRecord) and items[1].location.endswith("in.jsonl:2") and "malformed JSON" in items[1].message
    assert isinstance(items[2], BadRecord) and "'text' is missing" in items[2].message
    assert isinstance(items[3], BadRecord) and "expected a JSON object" in items[3].message
    keyed = records(path, options=ReadOptions(text_key="body", id_key="doc"))
    assert keyed[4].id == "d3" and keyed[4].text == "Text three"


def test_gzip_folders_and_detection(tmp_path):
    (tmp_path / "d").mkdir()
    with gzip.open(tmp_path / "d" / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "g1", "text": "gz text"}) + "\n")
    (tmp_path / "d" / "b.xml").write_bytes((IO / "pubmed.xml").read_bytes())
    (tmp_path / "d" / ".hidden").write_text("ignored")
    items = records(tmp_path / "d")
    assert [r.id for r in items] == ["g1", "31234567", "31234568"]


def test_missing_paths_and_unknown_formats_are_usage_errors(tmp_path):
    """A path or option the user got wrong raises (exit 2), before anything is read."""
    with pytest.raises(PathError, match="no such file"):
        records(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PathError, match="folder holds no files"):
        records(tmp_path / "empty")
    with pytest.raises(InvalidOptionError, match="--input-format nope"):
        records(IO / "bioc.xml", input_format="nope")


def test_unreadable_files_are_one_bad_record_each(tmp_path):
    """A file that cannot be read as text (binary, malformed XML, broken gzip) is one BadRecord
    naming it, so that --keep-going skips and counts it; the files around it are read."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("first\n")
    (tmp_path / "d" / "b.bin").write_bytes(b"\x7fELF\x00\x00\x01binary")
    (tmp_path / "d" / "c.xml").write_text("<PubmedArticleSet><PubmedArticle>")
    (tmp_path / "d" / "d.gz").write_bytes(gzip.compress(b"cut short\n" * 100)[:30])
    (tmp_path / "d" / "e.txt").write_text("last\n")
    items = records(tmp_path / "d")
    assert [type(i).__name__ for i in items] == ["Record", "BadRecord", "BadRecord", "BadRecord", "Record"]
    binary, xml, gz = items[1:4]
    assert binary.location.endswith("b.bin") and "binary file" in binary.message
    assert xml.location.endswith("c.xml") and "malformed XML" in xml.message
    assert gz.location.endswith("d.gz") and "gzip" in gz.message


def test_deep_nesting_and_lone_surrogates_are_bad_records(tmp_path):
    """JSON that Python cannot hold (200,000 levels) or that no UTF-8 output can write (a lone
    surrogate) is a BadRecord of its line, not a crash later in the run."""
    path = tmp_path / "x.jsonl"
    deep = "[" * 200_000 + "]" * 200_000
    path.write_text("\n".join([
        json.dumps({"id": "a", "text": "fine"}),
        '{"id": "b", "text": ' + deep + "}",
        '{"id": "c", "text": "bad \\ud800 half"}',
        '{"id": "d", "text": "a pair \\ud83d\\ude00 is fine"}',
    ]) + "\n")
    items = records(path)
    assert [type(i).__name__ for i in items] == ["Record", "BadRecord", "BadRecord", "Record"]
    assert items[1].location.endswith(":2") and "nested too deeply" in items[1].message
    assert items[2].location.endswith(":3") and "lone surrogate" in items[2].message
    assert items[3].text == "a pair \U0001f600 is fine"


def test_non_utf8_line_is_a_bad_record(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok line\ncaf\xe9 au lait\n".encode("latin-1"))
    items = records(path)
    assert isinstance(items[0], Record)
    assert isinstance(items[1], BadRecord) and "not UTF-8" in items[1].message and items[1].location.endswith(":2")


# ------------------------------------------------------------------ property tests
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_bytes(tmp_path: Path, data: bytes, fmt: str, name: str = "x.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        items = records(path, input_format=fmt)
    except BioGptError:
        return None  # a clear whole-file error is an acceptable answer
    assert all(isinstance(i, (Record, BadRecord)) for i in items)
    return items


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["auto", "lines", "paragraphs", "jsonl", "pubtator", "bioc-json", "bioc-xml", "pubmed-xml"]))
def test_random_bytes_never_crash_any_reader(tmp_path, data, fmt):
    _read_bytes(tmp_path, data, fmt)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(st.lists(st.one_of(JSON_VALUES.map(json.dumps), st.dictionaries(st.sampled_from(["id", "text", "title", "abstract", "x"]), JSON_VALUES, max_size=4).map(json.dumps), st.text(max_size=30)), max_size=8))
def test_random_jsonl(tmp_path, lines):
    items = _read_bytes(tmp_path, ("\n".join(lines) + "\n").encode(), "jsonl", "x.jsonl")
    if items is not None:
        for item in items:
            if isinstance(item, Record):
                assert isinstance(item.text, str)


PUBTATOR_LINE = st.one_of(
    st.builds(lambda p, t: f"{p}|t|{t}", st.sampled_from(["1", "2", "123"]), st.text(max_size=20).map(lambda s: s.replace("\n", " "))),
    st.builds(lambda p, t: f"{p}|a|{t}", st.sampled_from(["1", "2", "123"]), st.text(max_size=20).map(lambda s: s.replace("\n", " "))),
    st.builds(lambda p, a, b, t: f"{p}\t{a}\t{b}\t{t}\tChemical\tD001", st.sampled_from(["1", "2"]), st.integers(0, 50), st.integers(0, 50), st.text(max_size=8).map(lambda s: s.replace("\n", " ").replace("\t", " "))),
    st.builds(lambda p: f"{p}\tCID\tD1\tD2", st.sampled_from(["1", "2"])),
    st.just(""),
    st.text(max_size=20).map(lambda s: s.replace("\n", " ")),
)


@SETTINGS
@given(st.lists(PUBTATOR_LINE, max_size=12))
def test_random_pubtator(tmp_path, lines):
    _read_bytes(tmp_path, ("\n".join(lines) + "\n").encode(), "pubtator", "x.pubtator")


# ------------------------------------------------------------------ writers
def test_writers_flush_one_record_at_a_time():
    buf = io.StringIO()
    w = make_writer("jsonl", buf)
    w.write({"id": "1", "x": 1})
    assert buf.getvalue() == '{"id": "1", "x": 1}\n'
    buf = io.StringIO()
    w = make_writer("tsv", buf)
    w.write({"id": "1", "rows": [{"id": "1", "head": "a", "tail": "b"}, {"id": "1", "head": "c", "tail": "d\te"}]})
    assert buf.getvalue() == "id\thead\ttail\n1\ta\tb\n1\tc\td e\n"
    buf = io.StringIO()
    make_writer("pubtator", buf).write(
        {"id": "9", "title": "T", "abstract": "A", "entities": [{"start": 0, "end": 1, "text": "T", "label": "Chemical", "id": "D1"}],
         "relations": [{"type": "CID", "head": "D1", "tail": "D2"}]}
    )
    assert buf.getvalue() == "9|t|T\n9|a|A\n9\t0\t1\tT\tChemical\tD1\n9\tCID\tD1\tD2\n\n"
    with pytest.raises(InvalidOptionError, match="--format xml"):
        make_writer("xml", io.StringIO())


# ------------------------------------------------------------------ batching
def test_plan_batches_sorts_and_respects_budgets():
    lengths = [5, 1, 9, 3, 7, 2]
    batches = plan_batches(lengths, batch_size=2, max_tokens=None)
    assert batches == [[1, 5], [3, 0], [4, 2]]
    batches = plan_batches(lengths, batch_size=10, max_tokens=12)
    assert all(max(lengths[i] for i in b) * len(b) <= 12 or len(b) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(6))


@given(st.lists(st.integers(1, 50), max_size=60), st.integers(1, 7), st.integers(1, 20))
def test_run_in_batches_restores_input_order(lengths, batch_size, window):
    items = [("bad" if n % 11 == 0 else "ok", n, i) for i, n in enumerate(lengths)]
    seen_batches = []

    def process(batch):
        seen_batches.append(batch)
        return [f"done:{i}" for _, _, i in batch]

    out = list(run_in_batches(items, process, length=lambda x: x[1], passthrough=lambda x: f"bad:{x[2]}" if x[0] == "bad" else None,
                              batch_size=batch_size, window=window))
    assert out == [f"{'bad' if k == 'bad' else 'done'}:{i}" for k, _, i in items]
    assert all(len(b) <= batch_size for b in seen_batches)


@given(st.lists(st.integers(1, 50), max_size=60), st.integers(1, 20), st.randoms(use_true_random=False))
def test_run_windows_restores_input_order_from_any_completion_order(lengths, window, rng):
    items = [("bad" if n % 11 == 0 else "ok", n, i) for i, n in enumerate(lengths)]
    windows = []

    def process(chunk):  # results in a shuffled order, as continuous batching finishes them
        windows.append(chunk)
        order = list(range(len(chunk)))
        rng.shuffle(order)
        return ((k, f"done:{chunk[k][2]}") for k in order)

    out = list(run_windows(items, process, passthrough=lambda x: f"bad:{x[2]}" if x[0] == "bad" else None, window=window))
    assert out == [f"{'bad' if k == 'bad' else 'done'}:{i}" for k, _, i in items]
    assert all(len(w) <= window for w in windows)


def test_ordered_releases_contiguous_prefix():
    o = Ordered()
    assert list(o.add(1, "b")) == []
    assert list(o.add(0, "a")) == ["a", "b"]


# ------------------------------------------------------------------ memory
@pytest.mark.slow
def test_reading_a_large_input_keeps_memory_flat(tmp_path):
    """~300 MB of JSONL (gzip-compressed on disk) streams with a small, constant footprint."""
    path = tmp_path / "big.jsonl.gz"
    line = json.dumps({"id": "x", "text": "word " * 300}) + "\n"
    with gzip.open(path, "wt", compresslevel=1) as f:
        for _ in range(200_000):
            f.write(line)
    code = textwrap.dedent(
        f"""
        import resource
        from biogpt.io import read_inputs
        n = 0
        for i, rec in enumerate(read_inputs([{str(path)!r}])):
            n += 1
            if i == 1000:
                base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(n, (peak - base) / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    n, growth_mb = out.stdout.split()
    assert int(n) == 200_000
    assert float(growth_mb) < 20, f"memory grew by {growth_mb} MB while streaming"


def test_pubtator_input_follows_the_one_offset_and_duplicate_rule(tmp_path, caplog):
    """What `tag`/`extract-relations` read: a mention whose offsets do not fit is skipped (the
    document is kept; it used to stop those commands), a repeated pmid is processed again, and
    each is reported by one warning for the file."""
    path = tmp_path / "x.pubtator"
    doc = ["7|t|Aspirin and asthma.", "7|a|Aspirin induced asthma.", "7\t0\t7\tAspirin\tChemical\tD1", "7\t-2\t7\tAspirin\tChemical\tD1", ""]
    path.write_text("\n".join(doc + doc) + "\n")
    with caplog.at_level("WARNING"):
        items = records(path)
    assert [(type(i).__name__, i.id) for i in items] == [("Record", "7"), ("Record", "7")]
    assert [e["start"] for e in items[0].fields["entities"]] == [0]
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert len(warnings) == 2
    assert "1 document repeats the pmid of an earlier one (first: 7 at line 6, first at line 1); every copy is processed" in warnings[0]
    assert "2 mentions whose offsets do not fit the text skipped (first: line 4" in warnings[1]
