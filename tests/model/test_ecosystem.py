"""Our classes inside the ecosystem they imitate (issue 27, item 6): transformers' `Trainer` and
data collators, peft's LoRA, `pipeline("text-generation")`. Tiny models, CPU, a few steps.

These are the test-only users of transformers, peft and accelerate (the `test` extra); the
product never imports them. What each test needs from our side is written in its docstring, so a
failure names the missing piece.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("accelerate")  # transformers' Trainer needs it

from safetensors.torch import load_file  # noqa: E402

from biogpt.model import BioGptForCausalLM, BioGptTokenizer  # noqa: E402
from tests.helpers import tiny_lm  # noqa: E402

TEXTS = [
    "Naloxone reverses the antihypertensive effect of clonidine.",
    "Lidocaine-induced cardiac asystole.",
    "Intravenous lidocaine was given to a patient with ventricular tachycardia.",
    "Sulpiride-induced tardive dystonia.",
    "Aspirin inhibits platelet aggregation.",
    "Cisplatin caused nephrotoxicity in two patients.",
    "Clonidine lowers blood pressure.",
    "Ibuprofen is best used for pain.",
]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def tok() -> BioGptTokenizer:
    # one per test: transformers' text-generation pipeline sets `padding_side = "left"` on the
    # tokenizer it is given, and left padding changes the collated batches of the tests after it
    return BioGptTokenizer.from_pretrained("microsoft/biogpt")


def _model(tok: BioGptTokenizer, seed: int = 0) -> BioGptForCausalLM:
    """A tiny tied language model over the real vocabulary (dropout 0: runs compare exactly)."""
    return tiny_lm(seed, vocab_size=len(tok))


def _features(tok: BioGptTokenizer) -> list[dict[str, list[int]]]:
    return [{"input_ids": tok(text)["input_ids"]} for text in TEXTS]


# ------------------------------------------------------------------ data collators
def test_language_modeling_collator_pads_with_our_tokenizer_as_with_transformers(tok, hf_tokenizer) -> None:
    """DataCollatorForLanguageModeling(mlm=False) calls `tokenizer.pad` (and reads `pad_token_id`,
    `padding_side`): the batch equals the one transformers' own BioGptTokenizer gives."""
    from transformers import DataCollatorForLanguageModeling

    ours = DataCollatorForLanguageModeling(tok, mlm=False)(_features(tok))
    ref = DataCollatorForLanguageModeling(hf_tokenizer, mlm=False)(_features(tok))
    assert set(ours) == set(ref) >= {"input_ids", "attention_mask", "labels"}
    for key in ref:
        assert torch.equal(ours[key], ref[key]), key
    assert (ours["labels"] == -100).any()  # padding is ignored by the loss


def test_padding_collator_accepts_our_encodings(tok, hf_tokenizer) -> None:
    """DataCollatorWithPadding takes the tokenizer's own encodings (with attention masks) and pads
    them with `tokenizer.pad(..., return_tensors="pt")`; `pad_to_multiple_of` too."""
    from transformers import DataCollatorWithPadding

    for kwargs in ({}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 32}):
        ours = DataCollatorWithPadding(tok, **kwargs)([dict(tok(t)) for t in TEXTS])
        ref = DataCollatorWithPadding(hf_tokenizer, **kwargs)([dict(hf_tokenizer(t)) for t in TEXTS])
        assert set(ours) == set(ref)
        for key in ref:
            assert torch.equal(ours[key], ref[key]), (kwargs, key)


# ------------------------------------------------------------------ Trainer
def _trainer(model: Any, tok: BioGptTokenizer, out: Path, *, max_steps: int = 4) -> Any:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=2, per_device_eval_batch_size=4,
        learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_steps=2,
        save_strategy="steps", eval_strategy="no", use_cpu=True, report_to=[], seed=0, data_seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    feats = _features(tok)
    return Trainer(model=model, args=args, train_dataset=feats, eval_dataset=feats,
                   data_collator=DataCollatorForLanguageModeling(tok, mlm=False))


def test_trainer_trains_evaluates_saves_and_resumes(tok, tmp_path: Path) -> None:
    """transformers' Trainer on our BioGptForCausalLM: it needs outputs indexable by key and
    position (`outputs["loss"]`, `outputs[0]`), forward keywords it passes (`labels`,
    `attention_mask`, `return_dict`...), and a state dict safetensors can write: the Trainer
    writes a model that is not a transformers `PreTrainedModel` with
    `safetensors.torch.save_file(model.state_dict())`, which refuses two names for one tensor,
    so the tied LM head must not appear twice there."""
    model = _model(tok)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(model, tok, tmp_path / "run")
    result = trainer.train()
    assert result.global_step == 4 and math.isfinite(result.training_loss)
    assert not torch.equal(start["biogpt.layers.0.fc1.weight"], model.state_dict()["biogpt.layers.0.fc1.weight"])

    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    # the Trainer passes num_items_in_batch (its count of target tokens) to a forward that takes
    # keyword arguments and uses the loss as given: the same eval loss as transformers' own
    # class on the same weights under the same Trainer
    import transformers

    model.save_pretrained(tmp_path / "trained", tokenizer=tok)
    theirs = transformers.BioGptForCausalLM.from_pretrained(tmp_path / "trained")
    subset = _features(tok)[:4]
    ours_loss = trainer.evaluate(eval_dataset=subset)["eval_loss"]
    their_loss = _trainer(theirs, tok, tmp_path / "theirs").evaluate(eval_dataset=subset)["eval_loss"]
    assert ours_loss == pytest.approx(their_loss, rel=1e-5)

    # save_model: the weights, the tied head included, load back into our class
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    fresh = _model(tok, seed=1)
    missing, unexpected = fresh.load_state_dict(saved, strict=False)
    assert unexpected == [] and set(missing) <= {"output_projection.weight"}
    assert fresh.output_projection.weight is fresh.biogpt.embed_tokens.weight  # still tied
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.equal(fresh.eval()(ids).logits, model.eval()(ids).logits)

    # resume from the step-2 checkpoint: the same weights as the uninterrupted run
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    again = _model(tok)
    _trainer(again, tok, tmp_path / "resumed").train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    for key, value in model.state_dict().items():
        assert torch.allclose(again.state_dict()[key], value, atol=1e-6, rtol=0), key


# ------------------------------------------------------------------ peft
def _lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def test_peft_lora_trains_and_its_adapters_load_back(tok, tmp_path: Path) -> None:
    """get_peft_model(task_type="CAUSAL_LM") wraps our plain nn.Linear q_proj/v_proj; peft's
    PeftModelForCausalLM reads `config`, `get_input_embeddings` and
    `prepare_inputs_for_generation` from the model. Only the adapters train; what
    save_pretrained writes, PeftModel.from_pretrained loads onto a fresh copy of the base with
    equal outputs."""
    from peft import PeftModel

    lora = _lora(_model(tok))
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    base_logits = _model(tok)(ids).logits.detach()
    losses = []
    lora.train()
    for _ in range(5):
        loss = lora(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    lora.eval()
    with torch.no_grad():
        tuned = lora(input_ids=ids).logits
    assert not torch.allclose(tuned, base_logits)  # the adapters changed the model

    lora.save_pretrained(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(_model(tok), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, tuned, atol=1e-6, rtol=0)
    # peft's generate runs ours (with the adapters in the wrapped projections)
    with torch.no_grad():
        adapted = reloaded.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    # merged into the base: our plain model again, with the same outputs
    merged = reloaded.merge_and_unload()
    assert type(merged) is BioGptForCausalLM
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned, atol=1e-5, rtol=0)
        assert torch.equal(merged.generate(ids, max_new_tokens=4, do_sample=False), adapted)


def test_peft_lora_under_the_trainer_saves_adapters(tok, tmp_path: Path) -> None:
    """The usual recipe: get_peft_model, then Trainer; its checkpoints hold the adapters (the
    Trainer saves a PeftModel with peft's save_pretrained)."""
    lora = _lora(_model(tok))
    _trainer(lora, tok, tmp_path / "run", max_steps=2).train()
    assert (tmp_path / "run" / "checkpoint-2" / "adapter_model.safetensors").is_file()


# ------------------------------------------------------------------ pipeline
def test_text_generation_pipeline(tok) -> None:
    """pipeline("text-generation", model=ours, tokenizer=ours) by duck typing: transformers reads
    `model.can_generate()`, `model.generation_config.to_diff_dict()`, `model.device`,
    `model.config`, `tokenizer.padding_side`, calls the tokenizer with `return_tensors="pt"`, then
    `model.generate(input_ids=, attention_mask=, max_new_tokens=, do_sample=, pad_token_id=,
    ...)` and `tokenizer.decode(..., skip_special_tokens=True)`."""
    from transformers import pipeline

    model = _model(tok).eval()
    generator = pipeline("text-generation", model=model, tokenizer=tok)
    prompt = "Aspirin inhibits"
    [out] = generator(prompt, max_new_tokens=5, do_sample=False)
    inputs = tok(prompt, return_tensors="pt")
    expected = model.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    assert len(expected) == 5
    # transformers 5's rule, whatever the model: the prompt as given + the new tokens decoded alone
    new_text = tok.decode(expected, skip_special_tokens=True)
    assert out["generated_text"] == prompt + new_text
    [new] = generator(prompt, max_new_tokens=5, do_sample=False, return_full_text=False)
    assert new["generated_text"] == new_text
    [ids] = generator(prompt, max_new_tokens=5, do_sample=False, return_tensors=True)
    assert ids["generated_token_ids"][-5:] == expected.tolist()
    # the pipeline's own defaults: sampling, two prompts in one call
    torch.manual_seed(0)
    outs = generator([prompt, "Lidocaine"], max_new_tokens=3)
    assert [len(o) for o in outs] == [1, 1]
    assert outs[0][0]["generated_text"].startswith(prompt) and outs[1][0]["generated_text"].startswith("Lidocaine")


def test_state_dict_lists_a_tied_head_once_and_loads_strictly(tok) -> None:
    """What the Trainer's save needs (see above): the tied head appears once, under the
    embedding's name, and load_state_dict(strict=True) still takes it (and a state dict that
    lists the head too, as transformers' models give). An untied head is listed as usual."""
    model = _model(tok)
    state = model.state_dict()
    assert "output_projection.weight" not in state and "biogpt.embed_tokens.weight" in state
    fresh = _model(tok, seed=1)
    fresh.load_state_dict(state)  # strict
    assert fresh.output_projection.weight is fresh.biogpt.embed_tokens.weight
    assert torch.equal(fresh.output_projection.weight, model.output_projection.weight)
    fresh.load_state_dict({**state, "output_projection.weight": state["biogpt.embed_tokens.weight"]})
    untied = tiny_lm(0, vocab_size=len(tok), tie_word_embeddings=False)
    assert "output_projection.weight" in untied.state_dict()


def test_trainer_sees_the_same_forward_as_transformers(tok) -> None:
    """What the Trainer reads off a model's forward: its label columns (`find_labels`: only
    `labels`, so an eval batch without `shift_labels` still gets its loss), whether it takes loss
    keyword arguments (then it passes `num_items_in_batch` and uses the loss as given), and the
    loss type (a causal LM's token count skips position 0). The loss with `num_items_in_batch`
    and with `shift_labels` equals transformers' on the same weights."""
    import transformers
    from transformers import DataCollatorForLanguageModeling
    from transformers.utils.generic import find_labels

    model = _model(tok)
    theirs = transformers.BioGptForCausalLM(transformers.BioGptConfig(**model.config.to_dict()))
    theirs.load_state_dict(model.state_dict(), strict=False)
    theirs.tie_weights()
    assert find_labels(type(model)) == find_labels(type(theirs)) == ["labels"]
    assert model.loss_type == theirs.loss_type == "ForCausalLM"
    assert tok.padding_side == "right"
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(_features(tok))
    shifted = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:].contiguous()
    with torch.no_grad():
        for extra in ({}, {"num_items_in_batch": torch.tensor(7)}, {"shift_labels": shifted}):
            ours = model.eval()(**batch, **extra).loss
            ref = theirs.eval()(**batch, **extra).loss
            assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6), extra
    # Left padding: our positions come from the attention mask, transformers 5.24's bare forward
    # counts columns (docs/TRANSFORMERS.md, deliberate differences); with the mask's positions
    # given to both, the logits of the real tokens agree again. (Not the loss: a left-padded LM
    # batch labels its first real token, predicted from a pad column, whose logits differ by
    # design: see build_attention_mask.)
    tok.padding_side = "left"
    batch = DataCollatorForLanguageModeling(tok, mlm=False)(_features(tok))
    real = batch["attention_mask"].bool()
    assert not real[:, 0].all()
    positions = batch["attention_mask"].cumsum(1) * batch["attention_mask"] - 1  # pads: -1, as ours
    with torch.no_grad():
        ours = model(**batch)
        assert torch.equal(ours.logits, model(**batch, position_ids=positions).logits)
        ref = theirs(**batch, position_ids=positions)
    assert torch.allclose(ours.logits[real], ref.logits[real], rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="num_item_in_batch"):
        model(**batch, num_item_in_batch=3)
