"""Long documents (issue 29): units the model runs on (--long-documents), sentence splitting,
the merge of relations across units (--min-support), BioC output and PubTator spans. Documents
with passages are built by hand here (the JATS reader has its own tests)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from biogpt.bioc import BiocJsonWriter, BiocXmlWriter, bioc_document
from biogpt.commands.extract_relations import pubtator_record
from biogpt.io import Record, read_inputs
from biogpt.longdocs import Budget, Unit, merge_relations, pack, plan_units, sentence_spans, split_passage, supported
from biogpt.tasks import get_task

from tests.helpers import biogpt

LONG = " ".join(f"Sentence {i} says that famotidine caused delirium in patient {i}, as Smith et al. noted (Fig. {i})." for i in range(30))


def full_text(parts: list[tuple[str, str, str, str]]) -> tuple[str, list[dict]]:
    """The contract's text rule: title and abstract joined by a space, later passages after a
    blank line; each passage at its offset."""
    text, passages = "", []
    for i, (kind, section, section_type, body) in enumerate(parts):
        text += "" if i == 0 else " " if kind == "abstract" and parts[i - 1][0] == "title" else "\n\n"
        passages.append({"type": kind, "section": section, "section_type": section_type, "offset": len(text), "text": body})
        text += body
    return text, passages


PARTS = [
    ("title", "", "title", "Famotidine-associated delirium."),
    ("abstract", "", "abstract", "Famotidine is a histamine H2-receptor antagonist used in inpatient settings."),
    ("paragraph", "Introduction", "introduction", "Delirium is common in elderly patients."),
    ("paragraph", "Results > Cases", "results", LONG),
    ("fig_caption", "Results", "results", "Fig. 1. Timeline of aspirin and asthma."),
]
TEXT, PASSAGES = full_text(PARTS)
WORDS = Budget(40, lambda text: len(text.split()))  # a word a token: sizes easy to reason about


def article_record() -> Record:
    return Record("PMC1", TEXT, {"title": PARTS[0][3], "abstract": PARTS[1][3], "passages": PASSAGES})


# ------------------------------------------------------------------ splitting
def test_sentences_keep_biomedical_abbreviations_together():
    text = "Smith et al. reported it, e.g. in mice. See Fig. 2 for the 5 mg/kg i.v. dose. Done."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Smith et al. reported it, e.g. in mice.", "See Fig. 2 for the 5 mg/kg i.v. dose.", "Done."]


def test_a_long_passage_splits_at_sentence_boundaries_with_overlap_and_exact_offsets():
    sentences = sentence_spans(LONG)
    starts, ends = {s for s, _ in sentences}, {e for _, e in sentences}
    pieces = split_passage(LONG, WORDS)
    assert len(pieces) > 3
    for (start, end), (next_start, _) in zip(pieces, pieces[1:]):
        assert start in starts and end in ends  # whole sentences
        assert len(LONG[start:end].split()) <= WORDS.room
        assert start < next_start < end and next_start in starts  # the next piece repeats this one's end
        repeated = LONG[next_start:end]  # up to the overlap's tokens, or one sentence longer than that
        assert len(repeated.split()) <= WORDS.overlap or len(sentence_spans(repeated)) == 1
    assert pieces[0][0] == 0 and pieces[-1][1] == len(LONG)  # nothing left out


def test_pack_gives_a_lone_oversized_piece_its_own_run_and_always_advances():
    assert pack([(0, 5, 3), (6, 9, 50), (10, 12, 2), (13, 15, 2)], 10, 2) == [(0, 5), (6, 9), (10, 15)]
    assert pack([(0, 1, 4), (2, 3, 4), (4, 5, 4)], 10, 4) == [(0, 3), (2, 5)]  # overlap of one piece


def test_a_sentence_longer_than_the_room_is_read_in_words():
    text = " ".join(["word"] * 100) + ". Short one."
    pieces = split_passage(text, Budget(30, lambda t: len(t.split())))
    assert all(len(text[s:e].split()) <= 30 for s, e in pieces) and pieces[-1][1] == len(text)


# ------------------------------------------------------------------ units
def test_passages_mode_reads_title_and_abstract_together_then_every_passage():
    units = plan_units(TEXT, PASSAGES, mode="passages", budget=WORDS, fits=lambda: True)
    assert units[0].kind == "front" and units[0].text == f"{PARTS[0][3]} {PARTS[1][3]}" and units[0].offset == 0
    for unit in units:
        assert TEXT[unit.offset : unit.end] == unit.text
    assert [u.passage for u in units][1:3] == [2, 3] and units[-1].passage == 4  # the late caption too
    assert units[-1].type == "fig_caption" and units[-1].section == "Results" and units[-1].section_type == "results"
    assert sum(u.passage == 3 for u in units) > 3  # the long paragraph in pieces


def test_auto_reads_a_short_abstract_whole_and_a_full_text_article_in_passages():
    text, passages = full_text(PARTS[:2])
    assert [u.kind for u in plan_units(text, passages, mode="auto", budget=WORDS, fits=lambda: True)] == ["document"]
    assert [u.kind for u in plan_units(text, passages, mode="auto", budget=WORDS, fits=lambda: False)] == ["front"]
    full = plan_units(TEXT, PASSAGES, mode="auto", budget=WORDS, fits=lambda: True)  # a body: passages, fits or not
    assert full[0].kind == "front" and len(full) > 3
    assert [u.kind for u in plan_units(TEXT, PASSAGES, mode="truncate", budget=WORDS, fits=lambda: False)] == ["document"]


def test_windows_cover_the_whole_text_with_overlap():
    units = plan_units(TEXT, PASSAGES, mode="windows", budget=WORDS, fits=lambda: True)
    assert units[0].offset == 0 and units[-1].end == len(TEXT)
    for unit, after in zip(units, units[1:]):
        assert TEXT[unit.offset : unit.end] == unit.text and len(unit.text.split()) <= WORDS.room
        assert unit.offset < after.offset < unit.end
    assert units[-1].text.endswith(PARTS[-1][3]) and units[-1].passage == 3  # the passage where the window starts


# ------------------------------------------------------------------ merging
def relation(head: str, tail: str, head_spans: list, tail_spans: list, score: float | None, **ids: str) -> dict:
    def entity(name, spans, mesh):
        return {"text": name, "name": name, "spans": spans, "found": bool(spans), **({"id": mesh} if mesh else {})}

    return {"head": entity(head, head_spans, ids.get("head_id")), "tail": entity(tail, tail_spans, ids.get("tail_id")),
            "relation": "CID", "score": score}


def unit(index: int, passage: int, offset: int, text: str) -> Unit:
    return Unit(index, "passage", passage, "paragraph", "Results", "results", offset, text)


def test_a_triple_found_in_two_passages_is_merged_with_both_evidences():
    first, second = unit(1, 2, 100, "x" * 50), unit(2, 3, 200, "y" * 80)
    merged = merge_relations([
        (first, [relation("Aspirin", "asthma", [[100, 107]], [[120, 126]], 0.2),
                 relation("aspirin", "fever", [[100, 107]], [], 0.9)]),
        (second, [relation(" aspirin ", "ASTHMA", [[210, 217]], [[230, 236]], 0.6),
                  relation("aspirin", "asthma", [[210, 217]], [[230, 236]], 0.7)]),  # twice in one unit: one evidence
    ])
    assert [(m["head"]["name"], m["tail"]["name"]) for m in merged] == [("Aspirin", "asthma"), ("aspirin", "fever")]
    both, alone = merged
    assert both["support"] == 2 and [e["passage"] for e in both["evidence"]] == [2, 3]
    assert both["evidence"][0]["head"] == [[100, 107]] and both["evidence"][1]["tail"] == [[230, 236]]
    assert (both["evidence"][0]["offset"], both["evidence"][0]["end"]) == (100, 150)
    assert both["score"] == 0.7 and math.isclose(both["score_mean"], (0.2 + 0.7) / 2)
    assert both["head"]["spans"] == [[100, 107], [210, 217]] and both["head"]["found"]
    assert alone["support"] == 1 and alone["evidence"][0]["tail"] is None and alone["tail"]["found"] is False
    assert [m["tail"]["name"] for m in supported(merged, 2)] == ["asthma"]
    assert supported(merged, 1) == merged


def test_mesh_ids_from_entities_merge_different_names():
    merged = merge_relations([
        (unit(0, 0, 0, "a"), [relation("aspirin", "asthma", [], [], None, head_id="D001241", tail_id="D001249")]),
        (unit(1, 2, 10, "b"), [relation("acetylsalicylic acid", "asthma", [], [], 0.5, head_id="D001241", tail_id="D001249")]),
        (unit(2, 3, 20, "c"), [relation("unmapped", "asthma", [], [], 0.5, head_id="-1", tail_id="D001249")]),
    ])
    assert [m["support"] for m in merged] == [2, 1]
    assert merged[0]["score"] == 0.5 and merged[0]["score_mean"] == 0.5  # a missing probability is left out


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "docs.jsonl"
    short = {"id": "7", "title": "Aspirin and asthma.", "abstract": "Aspirin induced asthma in two patients with fever."}
    article = {"id": "PMC1", "text": TEXT, "passages": PASSAGES, "title": PARTS[0][3], "abstract": PARTS[1][3]}
    path.write_text(json.dumps(short) + "\n" + json.dumps(article) + "\n")
    return path


def run(documents: Path, model: Path, *args: str) -> list[dict]:
    result = biogpt("extract-relations", str(documents), "--task", "bc5cdr", "-m", str(model), "--constrained", "--max-new-tokens", "24", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_auto_on_a_short_document_is_todays_output(finetuned, documents):
    short = documents.with_name("short.jsonl")
    short.write_text(documents.read_text().splitlines()[0] + "\n")
    auto, truncate = run(short, finetuned), run(short, finetuned, "--long-documents", "truncate")
    for record in auto + truncate:
        assert record.pop("provenance")["long_documents"] in ("auto", "truncate")
    assert auto == truncate and set(auto[0]) == {"id", "relations", "output", "failed"}
    assert auto[0]["relations"] and all(set(r) == {"head", "tail", "relation", "score"} for r in auto[0]["relations"])


def test_passages_mode_finds_relations_in_late_passages_grounded_in_the_document(finetuned, documents):
    records = {r["id"]: r for r in run(documents, finetuned, "--long-documents", "passages")}
    article = records["PMC1"]
    assert len(article["units"]) > 3 and article["units"][-1]["type"] == "fig_caption"
    late = [e for r in article["relations"] for e in r["evidence"] if e["offset"] > PASSAGES[2]["offset"]]
    assert late  # the model read past the abstract
    for rel in article["relations"]:
        assert rel["support"] == len(rel["evidence"]) and len({e["unit"] for e in rel["evidence"]}) == rel["support"]
        for evidence in rel["evidence"]:
            for role in ("head", "tail"):
                for start, end in evidence[role] or []:
                    assert evidence["offset"] <= start < end <= evidence["end"]
                    assert "".join(TEXT[start:end].split()).lower() == "".join(rel[role]["name"].split()).lower()
    strict = {r["id"]: r for r in run(documents, finetuned, "--long-documents", "passages", "--min-support", "2")}
    assert all(r["support"] >= 2 for r in strict["PMC1"]["relations"])
    assert len(strict["PMC1"]["relations"]) == sum(r["support"] >= 2 for r in article["relations"])


def test_bioc_json_round_trip_keeps_passages_and_spans(finetuned, documents, tmp_path):
    out = tmp_path / "out.bioc.json"
    result = biogpt("extract-relations", str(documents), "--task", "bc5cdr", "-m", str(finetuned), "--constrained",
                    "--max-new-tokens", "24", "--format", "bioc-json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    collection = json.loads(out.read_text())
    assert collection["source"] == "biogpt-cli" and [d["id"] for d in collection["documents"]] == ["7", "PMC1"]
    back = list(read_inputs([str(out)]))
    assert [r.id for r in back] == ["7", "PMC1"]
    article, written = back[1], collection["documents"][1]
    assert article.text == TEXT and article.fields["passages"] == PASSAGES  # type, section, section_type, offset, text
    assert [(p["offset"], p["text"]) for p in written["passages"]] == [(p["offset"], p["text"]) for p in PASSAGES]
    annotations = {a["id"]: a for p in written["passages"] for a in p["annotations"]}
    assert annotations and written["relations"]
    spans = sorted((loc["offset"], loc["offset"] + loc["length"], a["infons"]["type"]) for a in annotations.values() for loc in a["locations"])
    assert sorted((e["start"], e["end"], e["label"]) for e in article.fields["entities"]) == spans
    for p in written["passages"]:
        for a in p["annotations"]:
            (location,) = a["locations"]
            start = location["offset"]
            assert article.text[start : start + location["length"]] == a["text"]  # the span read back
            assert p["offset"] <= start < p["offset"] + len(p["text"])  # in the passage holding it
    for relation in written["relations"]:
        assert {n["role"] for n in relation["nodes"]} <= {"Chemical", "Disease"}
        assert all(n["refid"] in annotations for n in relation["nodes"]) and relation["infons"]["type"] == "CID"


def test_bioc_xml_is_well_formed_and_read_back(tmp_path):
    doc = bioc_document("PMC1", PASSAGES, mentions=[{"start": 0, "end": 10, "text": "Famotidine", "label": "Chemical", "id": "D015738"},
                                                    {"start": TEXT.index("asthma"), "end": TEXT.index("asthma") + 6, "text": "asthma", "label": "Disease"}],
                        relations=[{"type": "CID", "nodes": [(0, "Chemical"), (1, "Disease")], "infons": {"score": 0.5}}],
                        infons={"pmcid": "PMC1"})
    odd = {**doc, "id": "2", "passages": [{**doc["passages"][0], "text": "a < b & c > d \x0b"}], "relations": []}
    path = tmp_path / "out.xml"
    with path.open("w", encoding="utf-8") as stream:
        writer = BiocXmlWriter(stream)
        writer.write(doc)
        writer.write(odd)
        writer.close()
    root = ET.parse(path).getroot()
    assert root.tag == "collection" and [c.tag for c in root][:3] == ["source", "date", "key"]
    first = root.find("document")
    assert first.findtext("id") == "PMC1" and first.find("infon[@key='pmcid']").text == "PMC1"
    passages = first.findall("passage")
    assert [int(p.findtext("offset")) for p in passages] == [p["offset"] for p in PASSAGES]
    caption = passages[-1]
    assert caption.find("infon[@key='type']").text == "fig_caption" and caption.find("annotation/location").get("length") == "6"
    assert [n.get("refid") for n in first.findall("relation/node")] == ["T1", "T2"]
    assert root.findall("document")[1].find("passage/text").text == "a < b & c > d  "  # escaped; the control character a space
    back = list(read_inputs([str(path)]))
    assert [(p.get("offset"), p["text"]) for p in back[0].fields["passages"]] == [(p["offset"], p["text"]) for p in PASSAGES]


def test_an_empty_bioc_collection_is_still_well_formed(tmp_path):
    path = tmp_path / "empty.json"
    with path.open("w", encoding="utf-8") as stream:
        BiocJsonWriter(stream).close()
    assert json.loads(path.read_text())["documents"] == []


def test_pubtator_of_a_full_text_article_keeps_title_abstract_lines_and_document_offsets():
    record = article_record()
    body = TEXT.index("aspirin")
    result = {"relations": [relation("famotidine", "aspirin", [[0, 10]], [[body, body + 7]], 0.5)]}
    out = pubtator_record(get_task("bc5cdr"), record, result)
    assert (out["title"], out["abstract"]) == (PARTS[0][3], PARTS[1][3])
    assert [(e["start"], e["end"], e["text"]) for e in out["entities"]] == [(0, 10, "Famotidine"), (body, body + 7, "aspirin")]
    assert all(TEXT[e["start"] : e["end"]] == e["text"] for e in out["entities"])


def test_qa_reads_a_long_context_in_units_and_the_most_confident_answers(finetuned, tmp_path):
    context = ["Statins reduced mortality in sepsis."] + [
        " ".join(f"Sentence {i}.{j} is about other matters, e.g. weather in Fig. {j}." for j in range(12)) for i in range(4)]
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"id": "q1", "question": "Do statins reduce mortality?", "context": context}) + "\n")
    result = biogpt("qa", str(src), "-m", str(finetuned), "--setting", "reasoning-required")
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    probs = record["probabilities"]
    assert record["units"] > 4 and record["answer"] == max(probs, key=probs.get) and math.isclose(sum(probs.values()), 1.0, abs_tol=1e-5)
    joined = " ".join(context)
    evidence = record["evidence"]
    assert evidence["end"] <= len(joined) and evidence["passage"] in range(len(context))
    truncated = biogpt("qa", str(src), "-m", str(finetuned), "--setting", "reasoning-required", "--long-documents", "truncate")
    assert truncated.returncode == 0 and "units" not in json.loads(truncated.stdout)


def test_qa_scores_the_units_of_many_questions_in_shared_batches_as_one_at_a_time(finetuned):
    """The batched path (answer_questions) against each question alone (answer_question) and
    the scorer against full-vocabulary teacher forcing; tolerance 1e-5 (padding and batch size
    change only float rounding)."""
    import torch

    from biogpt._taskrun import load_task_model
    from biogpt.commands.qa import answer_question, answer_questions
    from biogpt.io import BadRecord
    from biogpt.tasks.runner import candidate_probabilities_batch, token_logprobs

    task = get_task("pubmedqa")
    _, model, tokenizer, recipe = load_task_model(task, str(finetuned), device="cpu", dtype="float32")
    long_context = ["Statins reduced mortality in sepsis."] + [
        " ".join(f"Sentence {i}.{j} is about other matters, e.g. weather in Fig. {j}." for j in range(12)) for i in range(4)]
    records = [
        Record("long", "Do statins reduce mortality?", {"context": long_context}),
        Record("short", "Is aspirin an analgesic?", {"context": "Aspirin relieves pain."}),
        Record("none", "A question without a context?", {}),
        Record("list", "Does famotidine cause delirium?", {"context": ["Famotidine was given.", "Delirium followed in two cases."]}),
    ]
    options = dict(context_key="context", long_answer_key="long_answer", setting="reasoning-required", generate=False)
    batched = list(answer_questions(task, model, tokenizer, recipe, records, batch_size=5, **options))
    assert [r.id if isinstance(r, BadRecord) else r[0].id for r in batched] == ["long", "short", "none", "list"]
    assert isinstance(batched[2], BadRecord) and "no 'context' field" in batched[2].message
    for (record, got), alone in zip([batched[i] for i in (0, 1, 3)], [records[i] for i in (0, 1, 3)]):
        want = answer_question(task, model, tokenizer, recipe, alone, **options)
        assert got.keys() == want.keys() and got.get("evidence") == want.get("evidence") and got.get("units") == want.get("units")
        for label, p in want["probabilities"].items():
            assert math.isclose(got["probabilities"][label], p, abs_tol=1e-5)
    assert batched[0][1]["units"] > 4

    inputs = [tokenizer("</s> a short prompt", add_special_tokens=False)["input_ids"],
              tokenizer("</s> a longer prompt about famotidine and delirium in patients", add_special_tokens=False)["input_ids"]]
    targets = [target for _, target in task.answer_candidates()]
    for source, got in zip(inputs, candidate_probabilities_batch(model, tokenizer, inputs, targets)):
        seqs = [source + tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in targets]
        totals = torch.tensor([sum(lp[len(source) - 1:]) for lp in token_logprobs(model, seqs, tokenizer.pad_token_id)])
        assert torch.allclose(torch.tensor(got), torch.softmax(totals, 0), atol=1e-5)


PMC = Path(__file__).parents[1] / "fixtures" / "pmc" / "pntd.0002065.nxml"


def test_a_pmc_article_is_read_whole_and_written_as_bioc(finetuned, tmp_path):
    out = tmp_path / "article.xml"
    result = biogpt("extract-relations", str(PMC), "--task", "bc5cdr", "-m", str(finetuned), "--constrained", "--max-new-tokens", "12",
                    "-b", "32", "--format", "bioc-xml", "-o", str(out))
    assert result.returncode == 0, result.stderr
    (article,) = list(read_inputs([str(PMC)]))
    (back,) = list(read_inputs([str(out)]))
    assert back.id == article.id == "PMC3585041" and back.text == article.text
    assert back.fields["passages"] == article.fields["passages"]
    last_body = max(p["offset"] for p in article.fields["passages"] if p["section_type"] not in ("title", "abstract"))
    assert any(e["start"] >= last_body for e in back.fields["entities"])  # mentions from the article's last passage
    for entity in back.fields["entities"]:
        assert back.text[entity["start"] : entity["end"]] == entity["text"]


def test_sections_keep_only_those_units_of_an_article(finetuned, tmp_path):
    """--sections reaches extract-relations' reader: the units read are the title and abstract
    and the methods passages, nothing else."""
    out = tmp_path / "methods.jsonl"
    result = biogpt("extract-relations", str(PMC), "--task", "bc5cdr", "-m", str(finetuned), "--max-new-tokens", "4",
                    "-b", "32", "--sections", "methods", "-o", str(out))
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {u["section_type"] for u in record["units"]}
    assert "methods" in kinds and kinds <= {"title", "abstract", "methods"}


@pytest.mark.parametrize("writer_class", [BiocJsonWriter, BiocXmlWriter])
def test_a_resumed_collection_continues_without_a_second_header(writer_class, tmp_path):
    """What --resume does: the output holds the header and the finished documents; the new
    writer (`continues`, set by RunState.adopt) appends the rest and the footer."""
    path = tmp_path / "out"
    docs = [bioc_document(str(i), PASSAGES[:2]) for i in range(3)]
    with path.open("w", encoding="utf-8") as stream:
        first = writer_class(stream)
        first.write(docs[0])  # killed here: no footer
    with path.open("a", encoding="utf-8") as stream:
        second = writer_class(stream)
        second.continues = True
        for doc in docs[1:]:
            second.write(doc)
        second.close()
    assert [r.id for r in read_inputs([str(path)], input_format="bioc-json" if writer_class is BiocJsonWriter else "bioc-xml")] == ["0", "1", "2"]
