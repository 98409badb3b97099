"""`biogpt tag --format pubtator`: title and abstract on their own lines, offsets still valid."""

from __future__ import annotations

import json

import pytest

from biogpt.commands.tag import pubtator_record
from biogpt.io import Record

from tests.helpers import biogpt
from tests.helpers import FIXTURES

SAMPLE = FIXTURES / "io" / "sample.pubtator"


def test_pubtator_record_splits_title_and_abstract_and_moves_offsets():
    item = Record("1", "Aspirin. Asthma.", {"title": "Aspirin.", "abstract": "Asthma."})
    ent = {"start": 9, "end": 15, "text": "Asthma", "label": "Disease", "score": 0.9}
    out = pubtator_record(item, [ent])
    assert (out["title"], out["abstract"]) == ("Aspirin.", "Asthma.")
    assert out["entities"][0]["start"] == 9
    alone = pubtator_record(Record("2", "Asthma.", {"title": "", "abstract": "Asthma."}), [{**ent, "start": 0, "end": 6}])
    written = f"{alone['title']} {alone['abstract']}"
    assert written[alone["entities"][0]["start"] : alone["entities"][0]["end"]] == "Asthma"




def test_tag_pubtator_output_keeps_the_abstract_line(tagger):
    result = biogpt("-q", "tag", "-m", str(tagger), str(SAMPLE), "-f", "pubtator")
    assert result.returncode == 0, result.stderr
    blocks = [b.splitlines() for b in result.stdout.split("\n\n") if b.strip()]
    titles = [l.split("|", 2)[2] for l in SAMPLE.read_text().splitlines() if "|t|" in l]
    assert [b[0].split("|", 2)[2] for b in blocks] == titles
    mentions = 0
    for lines in blocks:
        assert lines[1].split("|", 2)[1] == "a" and lines[1].split("|", 2)[2]
        text = lines[0].split("|", 2)[2] + " " + lines[1].split("|", 2)[2]
        for line in lines[2:]:
            cols = line.split("\t")
            assert text[int(cols[1]) : int(cols[2])] == cols[3]
            mentions += 1
    assert mentions > 0  # the random tagger finds some, so the offsets were checked


# ---------------------------------------------------------------------------- long documents (issue 29)
PMC = FIXTURES / "pmc" / "pntd.0002065.nxml"


def _article():
    from biogpt.documents import passages_of
    from biogpt.io import ReadOptions, read_inputs

    (record,) = list(read_inputs([str(PMC)], input_format="auto", options=ReadOptions()))
    return record, passages_of(record)


def _jsonl(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_pmc_article_is_tagged_whole_with_document_offsets_and_read_back_from_bioc(tagger, tmp_path):
    record, passages = _article()
    (out,) = _jsonl(biogpt("-q", "tag", "-m", str(tagger), str(PMC)))
    entities = out["entities"]
    assert entities and out["provenance"]["long_documents"] == "auto"
    for e in entities:
        assert record.text[e["start"] : e["end"]] == e["text"]
        home = passages[e["passage"]]  # inside its passage: never across a boundary
        assert home["offset"] <= e["start"] and e["end"] <= home["offset"] + len(home["text"])
        assert e["section"] == home["section"]
    assert [e["start"] for e in entities] == sorted({e["start"] for e in entities})  # each once, in order
    late = {e["passage"] for e in entities}
    assert max(late) >= len(passages) - 3 and any(passages[i]["section_type"] == "discussion" for i in late)
    # BioC JSON: the package's reader gives back the same document, passages and entity spans
    path = tmp_path / "tagged.bioc.json"
    assert biogpt("-q", "tag", "-m", str(tagger), str(PMC), "-f", "bioc-json", "-o", str(path)).returncode == 0
    (back,) = _records(path)
    from biogpt.documents import passages_of

    assert back.id == record.id and back.text == record.text and passages_of(back) == passages
    assert [(e["start"], e["end"], e["text"], e["label"]) for e in back.fields["entities"]] == \
        [(e["start"], e["end"], e["text"], e["label"]) for e in entities]


def _records(path):
    from biogpt.io import ReadOptions, read_inputs

    return list(read_inputs([str(path)], input_format="auto", options=ReadOptions()))


def test_pubtator_of_a_pmc_article_keeps_title_abstract_lines_and_exact_document_spans(tagger):
    record, passages = _article()
    result = biogpt("-q", "tag", "-m", str(tagger), str(PMC), "-f", "pubtator")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip("\n").splitlines()
    front = record.text.split("\n\n", 1)[0]
    assert lines[0] == f"{record.id}|t|{passages[0]['text']}" and lines[1] == f"{record.id}|a|{front[len(passages[0]['text']) + 1:]}"
    spans = [line.split("\t") for line in lines[2:]]
    assert spans and all(record.text[int(s[1]) : int(s[2])] == s[3] for s in spans)
    assert max(int(s[1]) for s in spans) > len(front)  # mentions beyond the abstract, at document offsets


def test_long_document_modes_of_tag_document(tagger):
    from biogpt.commands.tag import load_tagger
    from biogpt.heads import tag_document, tag_text

    model, tokenizer = load_tagger(str(tagger), device="cpu")
    record, passages = _article()
    front = passages[1]["offset"] + len(passages[1]["text"])
    first = tag_document(model, tokenizer, record.text, passages, mode="truncate")
    assert first and max(e["end"] for e in first) < front  # the first window ends inside the abstract
    whole = tag_document(model, tokenizer, record.text, passages, mode="windows")
    assert whole == tag_text(model, tokenizer, record.text) and "passage" not in whole[0]
    assert max(e["end"] for e in whole) > len(record.text) - 200  # windows read to the end
    short = "Aspirin induced ulcers. Cisplatin caused nephrotoxicity."
    assert tag_document(model, tokenizer, short, [{"type": "text", "section": "", "section_type": "other", "offset": 0, "text": short}]) \
        == tag_text(model, tokenizer, short)  # auto on plain text: today's output


def test_split_passage_overlap_keeps_each_word_once(tokenizer, monkeypatch):
    """Units of one passage share sentences; an entity in the overlap comes from one unit only."""
    import re
    from types import SimpleNamespace

    import biogpt.heads as heads

    def every_word(model, reading, probs):
        return [{"start": m.start(), "end": m.end(), "text": m.group(), "label": "X", "score": 1.0} for m in re.finditer(r"\S+", reading.text)]

    monkeypatch.setattr(heads, "tag_batch", lambda model, inputs: [None] * len(inputs))  # no model: every_word decides
    monkeypatch.setattr(heads, "tag_entities", every_word)
    body = " ".join(f"Sentence {i} names aspirin and ulcers." for i in range(40))
    title = "A title."
    text = f"{title}\n\n{body}"
    passages = [{"type": "title", "section": "", "section_type": "title", "offset": 0, "text": title},
                {"type": "paragraph", "section": "Results", "section_type": "results", "offset": len(title) + 2, "text": body}]
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=40))
    from biogpt.longdocs import plan_units

    units = plan_units(text, passages, mode="passages", budget=heads.head_budget(model, tokenizer), fits=lambda: True)
    assert len(units) > 3 and any(b.offset < a.end for a, b in zip(units, units[1:]))  # the overlap is there
    entities = heads.tag_document(model, tokenizer, text, passages, mode="passages")
    assert [(e["start"], e["end"]) for e in entities] == [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    assert {e["passage"] for e in entities} == {0, 1} and entities[-1]["section"] == "Results"


def test_tag_refuses_an_unknown_mode_and_bad_sections_in_one_line(tagger):
    for args, needle in ((("--long-documents", "pages"), "--long-documents pages"), (("--sections", "results,nope"), "--sections nope")):
        result = biogpt("tag", "-m", str(tagger), str(PMC), *args)
        assert result.returncode == 2 and result.stdout == "" and needle in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- shared batches (issue 29)
SHORT = "Aspirin induced ulcers.\nCisplatin caused nephrotoxicity in rats treated for ten days.\nNaloxone reversed it.\n"
# batched rows are padded (a masked attention pass): scores, rounded to 6 digits, may differ by float rounding
SCORE_TOLERANCE = 1e-5


def _spans(entities: list[dict]) -> list[tuple]:
    return [(e["start"], e["end"], e["text"], e["label"], e.get("passage"), e.get("section")) for e in entities]


def _same_entities(a: list[dict], b: list[dict]) -> None:
    assert _spans(a) == _spans(b)
    assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=SCORE_TOLERANCE)


def test_tag_in_shared_batches_equals_one_input_at_a_time_and_tag_document(tagger, tmp_path):
    from biogpt.commands.tag import load_tagger
    from biogpt.documents import passages_of
    from biogpt.heads import tag_document

    short = tmp_path / "short.txt"
    short.write_text(SHORT)
    runs = {b: _jsonl(biogpt("-q", "tag", "-m", str(tagger), str(short), str(PMC), "--long-documents", "passages", "-b", b))
            for b in ("1", "16")}
    records = _records(short) + [_article()[0]]
    assert [r["id"] for r in runs["1"]] == [r["id"] for r in runs["16"]] == [r.id for r in records]  # input order
    model, tokenizer = load_tagger(str(tagger), device="cpu")
    for one, many, record in zip(runs["1"], runs["16"], records):
        alone = tag_document(model, tokenizer, record.text, passages_of(record), mode="passages")
        _same_entities(one["entities"], many["entities"])
        _same_entities(one["entities"], alone)
    assert runs["1"][-1]["entities"] and {e["passage"] for e in runs["1"][-1]["entities"]} != {0}  # the article's units ran


def test_tag_documents_runs_many_inputs_per_forward_pass(tagger, tmp_path, monkeypatch):
    import biogpt.heads as heads
    from biogpt.commands.tag import load_tagger

    model, tokenizer = load_tagger(str(tagger), device="cpu")
    short = tmp_path / "short.txt"
    short.write_text(SHORT)
    records = _records(short) + [_article()[0]]
    calls: list[list[list[int]]] = []
    real = heads.tag_batch

    def counted(model, inputs):
        calls.append(list(inputs))
        return real(model, inputs)

    monkeypatch.setattr(heads, "tag_batch", counted)
    results = {}
    for batch_size, max_tokens in ((1, None), (16, None), (16, 600)):
        calls.clear()
        results[batch_size, max_tokens] = list(heads.tag_documents(model, tokenizer, records, mode="passages",
                                                                   batch_size=batch_size, max_tokens=max_tokens))
        sizes = [len(c) for c in calls]
        if batch_size == 1:
            inputs = len(sizes)
            assert set(sizes) == {1} and inputs > 20  # the article's units, each a pass
        else:
            assert sum(sizes) == inputs and len(sizes) < inputs / 4 and max(sizes) <= batch_size
        if max_tokens is not None:  # a batch of more than one input keeps to the padded-token budget
            assert all(len(c) == 1 or len(c) * max(map(len, c)) <= max_tokens for c in calls) and max(sizes) < 16
    assert [r.id for r, _ in results[1, None]] == [r.id for r in records]
    for key in ((16, None), (16, 600)):
        for (_, a), (_, b) in zip(results[1, None], results[key]):
            _same_entities(a, b)
