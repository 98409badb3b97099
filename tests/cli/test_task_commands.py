"""End to end through the installed `biogpt` command: extract-relations, qa, classify, eval -m,
with tiny models (a fairseq-style fine-tuned checkpoint with learned prompt rows, and a
classification-head model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from biogpt.model import BioGptConfig, BioGptForSequenceClassification, BioGptTokenizer
from biogpt.tasks import get_task
from biogpt.tasks.runner import PromptRecipe, encode_source, find_spans, ground, read_recipe

from tests.helpers import FIXTURES
from tests.helpers import biogpt

TASK_FIXTURES = FIXTURES / "tasks"
LEARNED = [f"learned{i}" for i in range(1, 10)]




@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    docs = json.loads((TASK_FIXTURES / "BC5CDR" / "test.json").read_text())
    path = tmp_path_factory.mktemp("docs") / "abstracts.jsonl"
    path.write_text("".join(json.dumps({"pmid": k, "title": v["title"], "abstract": v["abstract"]}) + "\n" for k, v in docs.items()))
    return path


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ input layout and recipe
def test_official_input_layout_and_truncation(finetuned):
    from biogpt.model import BioGptForCausalLM

    model = BioGptForCausalLM.from_pretrained(finetuned)
    tok = BioGptTokenizer.from_pretrained(finetuned)
    task = get_task("bc5cdr")
    recipe = read_recipe(model, tok, task)
    assert recipe.prompt_tokens == LEARNED and recipe.max_source_positions == 640
    ids = encode_source(tok, "famotidine-associated delirium.", recipe)
    assert ids[0] == tok.eos_token_id and ids[-9:] == list(range(42384, 42393))
    assert ids[1:-9] == tok("famotidine-associated delirium.", add_special_tokens=False)["input_ids"]
    short = PromptRecipe(prompt_tokens=LEARNED, max_source_positions=4)
    cut = encode_source(tok, "one two three four five six", short)
    assert len(cut) == 1 + 4 + 9 and cut[4] == tok.convert_tokens_to_ids("...</w>")


def test_convert_stores_the_prompt_recipe_and_it_is_read_back(finetuned, tmp_path):
    result = biogpt("convert", str(finetuned), str(tmp_path / "hf"), "--task", "pubmedqa", "--setting", "reasoning-free")
    assert result.returncode == 0, result.stderr
    stored = json.loads((tmp_path / "hf" / "config.json").read_text())["biogpt_task"]
    assert stored == {"task": "pubmedqa", "setting": "reasoning-free", "prompt_tokens": LEARNED, "max_source_positions": 900}
    from biogpt.model import BioGptForCausalLM

    model = BioGptForCausalLM.from_pretrained(tmp_path / "hf")
    recipe = read_recipe(model, BioGptTokenizer.from_pretrained(tmp_path / "hf"), get_task("pubmedqa"))
    assert recipe.setting == "reasoning-free" and recipe.prompt_tokens == LEARNED


# ------------------------------------------------------------------ extract-relations
@pytest.mark.parametrize("task", ["bc5cdr", "ddi", "kd-dti"])
def test_extract_relations_constrained_entities_occur_in_the_source(finetuned, documents, task):
    result = biogpt("extract-relations", str(documents), "--task", task, "-m", str(finetuned), "--constrained", "--max-new-tokens", "48")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    texts = {json.loads(l)["pmid"]: json.loads(l) for l in documents.read_text().splitlines()}
    assert [r["id"] for r in records] == list(texts)
    n = 0
    for rec in records:
        text = texts[rec["id"]]["title"] + " " + texts[rec["id"]]["abstract"]
        for rel in rec["relations"]:
            n += 1
            for ent in (rel["head"], rel["tail"]):
                assert ent["found"], (task, ent["text"])  # copied from the source, so found
                for start, end in ent["spans"]:
                    assert text[start:end].lower() == ent["text"].lower()  # spans point at the named text
                assert "".join(ent["text"].split()).lower() == "".join(ent["name"].split()).lower()
            assert rel["score"] is None or 0.0 <= rel["score"] <= 1.0
        assert rec["output"] is not None and rec["provenance"]["constrained"] is True
    assert n > 0


def test_extract_relations_formats_and_entities(finetuned, documents, tmp_path):
    entities = TASK_FIXTURES / "BC5CDR" / "test.entities.json"
    result = biogpt("extract-relations", str(documents), "--task", "bc5cdr", "-m", str(finetuned), "--constrained",
                    "--max-new-tokens", "32", "--entities", str(entities), "--format", "pubtator")
    assert result.returncode == 0, result.stderr
    blocks = [b for b in result.stdout.split("\n\n") if b.strip()]
    assert len(blocks) == len(documents.read_text().splitlines())
    for block in blocks:
        lines = block.splitlines()
        pmid = lines[0].split("|")[0]
        assert lines[0].startswith(f"{pmid}|t|") and lines[1].startswith(f"{pmid}|a|")
        text = lines[0].split("|", 2)[2] + " " + lines[1].split("|", 2)[2]
        for line in lines[2:]:
            cols = line.split("\t")
            if cols[1].isdigit():  # a mention: the span points at its text
                assert text[int(cols[1]) : int(cols[2])] == cols[3] and cols[4] in ("Chemical", "Disease")
            else:
                assert cols[1] == "CID"
    tsv = biogpt("extract-relations", str(documents), "--task", "ddi", "-m", str(finetuned), "--max-new-tokens", "24", "--format", "tsv")
    assert tsv.returncode == 0, tsv.stderr
    if tsv.stdout:
        assert tsv.stdout.splitlines()[0].split("\t")[:4] == ["id", "head", "tail", "relation"]


def test_extract_relations_user_errors(finetuned, documents):
    for args, needle in (
        (["--task", "hoc"], "expected one of bc5cdr"),
        (["--task", "ddi", "--format", "pubtator"], "--format pubtator is for --task bc5cdr"),
        (["--task", "bc5cdr", "--entities", "/nonexistent.json"], "no such file"),
    ):
        result = biogpt("extract-relations", str(documents), "-m", str(finetuned), *args)
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    result = biogpt("extract-relations", str(documents), "--task", "ddi")
    assert result.returncode == 2 and "biogpt train re --task ddi" in result.stderr


# ------------------------------------------------------------------ qa
def test_qa_probabilities_sum_to_one(finetuned, tmp_path):
    result = biogpt("qa", "-m", str(finetuned), "--question", "Do statins reduce mortality?", "--context", "Statins reduced mortality.", "--generate")
    assert result.returncode == 0, result.stderr
    (rec,) = jsonl(result.stdout)
    probs = rec["probabilities"]
    assert set(probs) == {"yes", "no", "maybe"} and math.isclose(sum(probs.values()), 1.0, abs_tol=1e-5)
    assert rec["answer"] == max(probs, key=probs.get) and "output" in rec
    data = json.loads((TASK_FIXTURES / "PubMedQA" / "ori_pqal.json").read_text())
    src = tmp_path / "questions.jsonl"
    src.write_text("".join(json.dumps({"id": k, "question": v["QUESTION"], "context": v["CONTEXTS"]}) + "\n" for k, v in list(data.items())[:3]))
    result = biogpt("qa", str(src), "-m", str(finetuned), "--setting", "reasoning-required")
    assert result.returncode == 0, result.stderr
    recs = jsonl(result.stdout)
    assert [r["id"] for r in recs] == list(data)[:3]
    assert all(math.isclose(sum(r["probabilities"].values()), 1.0, abs_tol=1e-5) for r in recs)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "Q?"}) + "\n")
    result = biogpt("qa", str(bad), "-m", str(finetuned))
    assert result.returncode == 1 and "no 'context' field" in result.stderr


# ------------------------------------------------------------------ classify
def test_classify_generative_hoc_and_head_model(finetuned, tmp_path):
    docs = tmp_path / "sentences.txt"
    docs.write_text("Tumour cells evade apoptosis.\nAngiogenesis is induced by VEGF.\n")
    result = biogpt("classify", str(docs), "--task", "hoc", "-m", str(finetuned), "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    recs = jsonl(result.stdout)
    assert len(recs) == 2 and all(isinstance(r["labels"], list) and "output" in r for r in recs)

    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("tiny", id2label={0: "negative", 1: "positive", 2: "neutral"})
    head = BioGptForSequenceClassification(cfg)
    head.save_pretrained(tmp_path / "clf", tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    long = tmp_path / "long.txt"
    long.write_text("short text\n" + " ".join(["protein"] * 300) + "\n")
    # the 300-word document exceeds 128 positions: read in units by default (--long-documents
    # auto), in today's overlapping windows with --long-documents windows
    for mode in ("auto", "windows"):
        result = biogpt("classify", str(long), "-m", str(tmp_path / "clf"), "--long-documents", mode)
        assert result.returncode == 0, result.stderr
        recs = jsonl(result.stdout)
        for r in recs:
            assert len(r["labels"]) == 1 and r["labels"][0] in ("negative", "positive", "neutral")
            assert math.isclose(sum(r["scores"].values()), 1.0, abs_tol=1e-4)
        assert "units" not in recs[0] and (recs[1].get("units", 1) > 1) == (mode == "auto")
        assert ("overlapping windows" in result.stderr) == (mode == "windows")


# ------------------------------------------------------------------ eval -m
def test_eval_with_a_model_saves_predictions_that_score_the_same(finetuned, tmp_path):
    preds, metrics = tmp_path / "preds.jsonl", tmp_path / "metrics.json"
    result = biogpt("eval", "ddi", "--data", str(TASK_FIXTURES / "DDI"), "-m", str(finetuned), "--max-new-tokens", "24",
                    "--save-predictions", str(preds), "-o", str(metrics))
    assert result.returncode == 0, result.stderr
    first = json.loads(metrics.read_text())
    assert {"precision", "recall", "f1", "counts", "provenance"} <= set(first)
    lines = jsonl(preds.read_text())
    assert lines and all({"id", "output", "prediction", "gold"} <= set(l) for l in lines)
    again = biogpt("eval", "ddi", "--data", str(TASK_FIXTURES / "DDI"), "--predictions", str(preds))
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert {k: second[k] for k in ("precision", "recall", "f1")} == {k: first[k] for k in ("precision", "recall", "f1")}
    assert first["provenance"]["model"]["prompt"]["prompt_tokens"] == LEARNED


def test_eval_without_data_offline_names_the_flag(monkeypatch, tmp_path):
    result = biogpt("eval", "bc5cdr", "-m", "x")
    assert result.returncode == 2 and "pass --data" in result.stderr


def test_find_spans_is_case_and_space_insensitive():
    text = "After 4 mg/kg IDM, Famotidine-associated delirium."
    assert find_spans(text, "4 mg / kg") == [[6, 13]]
    assert ground(text, "4 mg / kg") == ("4 mg/kg", [[6, 13]]) and ground(text, "idm") == ("idm", [[14, 17]])
    assert find_spans(text, "idm") == [[14, 17]]
    assert find_spans(text, "aspirin") == []


# ------------------------------------------------------------------ eval lm / eval ner with a model
def test_eval_lm_perplexity_scores_every_token_once(tmp_path):
    from tests.helpers import tiny_lm as make

    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    make(vocab_size=42384).save_pretrained(tmp_path / "lm", tokenizer=tok)
    corpus = tmp_path / "corpus.txt"
    docs = [" ".join(f"protein {i} binds receptor {i + 1} ." for i in range(40)), "Aspirin reduces fever.", "COVID-19 is a disease."]
    corpus.write_text("\n".join(docs) + "\n")
    result = biogpt("eval", "lm", str(corpus), "-m", str(tmp_path / "lm"), "--stride", "50")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    stream = sum(len(tok(d)["input_ids"]) for d in docs)
    assert stream > 128  # more than one window of the tiny model
    assert metrics["counts"]["tokens"] == stream - 1 and metrics["stride"] == 50 and metrics["window"] == 128
    assert 1.0 < metrics["perplexity"] < 1e6


def test_eval_ner_with_a_model(tmp_path):
    from biogpt.model import BioGptForTokenClassification

    torch.manual_seed(0)
    labels = {0: "O", 1: "B-Chemical", 2: "I-Chemical", 3: "B-Disease", 4: "I-Disease"}
    BioGptForTokenClassification(BioGptConfig.from_preset("tiny", id2label=labels)).save_pretrained(
        tmp_path / "ner", tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    data = FIXTURES / "ner" / "bc5cdr_titles.jsonl"
    result = biogpt("eval", "ner", "-m", str(tmp_path / "ner"), "--data", str(data), "-o", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"precision", "recall", "f1"} <= set(metrics) and 0.0 <= metrics["f1"] <= 1.0
    assert metrics["counts"]["gold_items"] > 0
