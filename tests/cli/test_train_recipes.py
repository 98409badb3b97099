"""`biogpt train re|qa|classify --generative` on tiny models: the official recipe (learned
prompt, whole-sequence loss, per-task hyper-parameters, epoch checkpoints averaged), the
default recipe (loss on the target only), and user relation schemas (--template)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from biogpt._common import UserError
from biogpt.training import averaging
from biogpt.training.features import generative_features, token_budget_batches
from biogpt.training.recipes import add_prompt_tokens, learned_tokens
from biogpt.model import BioGptConfig, BioGptForCausalLM, BioGptTokenizer
from biogpt.tasks import get_task
from biogpt.tasks.custom import CustomRelationTask
from biogpt.tasks.runner import PromptRecipe, read_recipe
from tests.helpers import FIXTURES, invoke

TASKS = FIXTURES / "tasks"
LEARNED = [f"learned{i}" for i in range(1, 10)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer() -> BioGptTokenizer:
    from biogpt import DEFAULT_MODEL

    return BioGptTokenizer.from_pretrained(DEFAULT_MODEL)


def reload(directory: Path, task: str):
    model = BioGptForCausalLM.from_pretrained(directory)
    tok = BioGptTokenizer.from_pretrained(directory)
    return model, tok, read_recipe(model, tok, get_task(task))


# ------------------------------------------------------------------ features
def test_prompt_rows_grow_and_stay_tied(tokenizer) -> None:
    torch.manual_seed(0)
    model = BioGptForCausalLM(BioGptConfig.from_preset("tiny", vocab_size=len(tokenizer)))
    tok = BioGptTokenizer.from_pretrained(tokenizer.name_or_path) if hasattr(tokenizer, "name_or_path") else tokenizer
    before = model.biogpt.embed_tokens.weight.detach().clone()
    add_prompt_tokens(model, tok, learned_tokens(3))
    ids = [tok.convert_tokens_to_ids(t) for t in learned_tokens(3)]
    assert ids == list(range(before.shape[0], before.shape[0] + 3))
    assert model.config.vocab_size == before.shape[0] + 3 == model.biogpt.embed_tokens.num_embeddings
    assert torch.equal(model.biogpt.embed_tokens.weight[: before.shape[0]], before)
    assert model.output_projection.weight is model.biogpt.embed_tokens.weight
    logits = model(torch.tensor([[2, ids[0], ids[2]]])).logits
    assert logits.shape[-1] == before.shape[0] + 3


def test_features_layout_loss_and_truncation(tokenizer) -> None:
    [ex] = get_task("bc5cdr").load(TASKS / "BC5CDR", "test")[:1]
    tok = tokenizer
    tok.add_tokens(LEARNED)
    prompt = PromptRecipe(task="bc5cdr", prompt_tokens=LEARNED, max_source_positions=640)
    [full] = generative_features(tok, [ex], prompt, positions=1024, prompt_length=9, full_loss=True)
    [target_only] = generative_features(tok, [ex], PromptRecipe(task="bc5cdr", max_source_positions=640), positions=1024, prompt_length=0, full_loss=False)
    src = tok(ex.source, add_special_tokens=False)["input_ids"]
    tgt = tok(ex.target, add_special_tokens=False)["input_ids"]
    learned = [tok.convert_tokens_to_ids(t) for t in LEARNED]
    assert full["input_ids"] == [2, *src, *learned, *tgt, 2] and full["labels"] == full["input_ids"]
    assert target_only["input_ids"] == [2, *src, *tgt, 2]
    assert target_only["labels"] == [-100] * (1 + len(src)) + tgt + [2]
    # a long source is cut at max_source_positions, a long target at 1024 - msp - prompt: both end in "..."
    long = type(ex)(id="x", source=" ".join(["word"] * 700), target=" ".join(["relation"] * 500) + ".", gold=None)
    [cut] = generative_features(tok, [long], prompt, positions=1024, prompt_length=9, full_loss=True)
    dots = tok.convert_tokens_to_ids("...</w>")
    # the target keeps 1024 - 640 - 9 tokens at most, and the whole sequence fits 1024 positions
    assert len(cut["input_ids"]) == 1024
    assert len(cut["input_ids"]) - (1 + 640 + 9) - 1 <= 1024 - 640 - 9
    assert cut["input_ids"][640] == dots and cut["input_ids"][-2] == dots


def test_token_budget_batches() -> None:
    feats = [{"input_ids": [1] * n, "labels": [1] * n} for n in (5, 50, 7, 30, 30, 100)]
    batches = token_budget_batches(feats, 64, None)
    for b in batches:
        assert len(b["input_ids"]) == 1 or max(map(len, b["input_ids"])) * len(b["input_ids"]) <= 64
    assert sorted(len(x) for b in batches for x in b["input_ids"]) == [5, 7, 30, 30, 50, 100]


# ------------------------------------------------------------------ end to end
def test_train_re_official_recipe_saves_prompt_and_averages(train_cli, tmp_path) -> None:
    out = tmp_path / "re"
    invoke(train_cli, "train", "re", "--task", "bc5cdr", TASKS / "BC5CDR", "--data-split", "test", "--dev-split", "test",
           "--dev-limit", "2", "--max-new-tokens", "4", "--recipe", "official", "--from-scratch", "tiny", "--epochs", "2",
           "--grad-accum", "2", "--max-tokens", "256", "-o", out)
    for name in ("model-best", "model-last", "model-average"):
        model, tok, recipe = reload(out / name, "bc5cdr")
        assert recipe.task == "bc5cdr" and recipe.prompt_tokens == LEARNED and recipe.max_source_positions == 640
        assert model.config.vocab_size == len(tok) and tok.convert_tokens_to_ids("learned9") == len(tok) - 1
    config = json.loads((out / "model-last" / "training_config.json").read_text())
    assert config["lr"] == 1e-5 and config["warmup_steps"] == 100 and config["scheduler"] == "inverse_sqrt"
    assert config["betas"] == [0.9, 0.98] and config["max_grad_norm"] is None and config["weight_decay"] == 0.01
    evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if "eval" in l]
    assert len(evals) == 2 and "f1" in evals[0]["eval"]
    # the epoch checkpoints are kept and averaged exactly
    steps = averaging.newest_checkpoints(out, 5)
    assert len(steps) == 2
    a, b = (averaging.load_weights(d) for d in steps)
    avg = averaging.load_weights(out / "model-average")
    for key in a:
        assert torch.allclose(avg[key], (a[key].double() + b[key].double()).div(2).float(), atol=0, rtol=0)


def test_train_re_default_recipe_ddi(train_cli, tmp_path) -> None:
    out = tmp_path / "ddi"
    invoke(train_cli, "train", "re", "--task", "ddi", "--data", TASKS / "DDI", "--dev-limit", "0", "--from-scratch", "tiny",
           "--max-steps", "2", "--batch-size", "2", "-o", out)
    model, tok, recipe = reload(out / "model-best", "ddi")
    assert recipe.task == "ddi" and recipe.prompt_tokens == [] and recipe.max_source_positions == 640
    assert model.config.vocab_size == len(tok)


def test_train_qa_pubmedqa_setting(train_cli, tmp_path) -> None:
    data = tmp_path / "pqa.json"  # not ori_pqal.json: used whole as the split
    data.write_text((TASKS / "PubMedQA" / "ori_pqal.json").read_text())
    out = tmp_path / "qa"
    invoke(train_cli, "train", "qa", "--task", "pubmedqa", data, "--setting", "reasoning-free", "--recipe", "official",
           "--from-scratch", "tiny", "--max-steps", "2", "--grad-accum", "1", "--dev-limit", "2", "--max-new-tokens", "4",
           "--epochs", "1", "-o", out)
    _, _, recipe = reload(out / "model-best", "pubmedqa")
    assert recipe.setting == "reasoning-free" and recipe.prompt_tokens == LEARNED and recipe.max_source_positions == 900


def test_train_classify_hoc_generative_and_head_path_guard(train_cli, tmp_path) -> None:
    out = tmp_path / "hoc"
    invoke(train_cli, "train", "classify", TASKS / "HoC", "--task", "hoc", "--generative", "--recipe", "official",
           "--from-scratch", "tiny", "--max-steps", "2", "--grad-accum", "2", "-o", out)
    _, _, recipe = reload(out / "model-best", "hoc")
    assert recipe.task == "hoc" and recipe.prompt_tokens == ["learned1"] and recipe.max_source_positions == 900
    config = json.loads((out / "model-best" / "training_config.json").read_text())
    assert config["max_steps"] == 2 and config["warmup_steps"] == 1000
    with pytest.raises(UserError, match="--generative"):
        invoke(train_cli, "train", "classify", TASKS / "HoC" / "train.tsv", "--task", "hoc", "--from-scratch", "tiny", "-o", tmp_path / "x")
    # every option of the generative block (one declaration for re, qa and classify) says so
    for flag, value in (("--recipe", "official"), ("--max-new-tokens", "4"), ("--average-last", "2"), ("--dev-limit", "0")):
        with pytest.raises(UserError, match=f"^{flag} needs --generative$"):
            invoke(train_cli, "train", "classify", TASKS / "HoC" / "train.tsv", flag, value, "--from-scratch", "tiny", "-o", tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ user schemas
TEMPLATE = "the relation between {head} and {tail} is {relation}"


def test_custom_template_parse_and_score() -> None:
    task = CustomRelationTask("{head} inhibits {tail}")
    pred = task.parse("aspirin inhibits cox-1; aspirin inhibits platelet aggregation; junk.")
    assert pred.value == [("aspirin", "cox-1", ""), ("aspirin", "platelet aggregation", "")] and pred.malformed_clauses == 1
    task = CustomRelationTask(TEMPLATE)
    assert task.target([{"head": "a", "tail": "b", "relation": "r"}, {"head": "c", "tail": "d", "relation": "s"}]) == (
        "the relation between a and b is r; the relation between c and d is s.")
    pred = task.parse(task.target([{"head": "a", "tail": "b", "relation": "r"}]))
    from biogpt.tasks.base import Example

    scores = task.score([Example("1", "", "", [("A", "b", "r"), ("c", "d", "s")])], [pred])
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5


def test_train_re_custom_template_then_extract(train_cli, tmp_path) -> None:
    data = tmp_path / "my.jsonl"
    rows = [{"text": f"Drug{i} treats disease{i}.", "relations": [{"head": f"drug{i}", "tail": f"disease{i}", "relation": "treats"}]} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "custom"
    invoke(train_cli, "train", "re", "--data", data, "--template", TEMPLATE, "--dev", data, "--dev-split", "train", "--dev-limit", "2",
           "--max-new-tokens", "4", "--from-scratch", "tiny", "--max-steps", "2", "--epochs", "1", "-o", out)
    stored = json.loads((out / "model-best" / "config.json").read_text())["biogpt_task"]
    assert stored["task"] == "custom" and stored["template"] == TEMPLATE
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "d1", "text": "Drug1 treats disease1."}) + "\n")
    text = invoke(train_cli, "extract-relations", docs, "-m", out / "model-best", "--max-new-tokens", "4", "--device", "cpu")
    [record] = [json.loads(l) for l in text.splitlines() if l.strip()]
    assert record["id"] == "d1" and isinstance(record["relations"], list)
