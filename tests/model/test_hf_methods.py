"""transformers' PreTrainedModel methods on our classes, in the shape of transformers' common model
tests (tests/test_modeling_common.py: embeddings, resize, num_parameters, save/load) and its
BioGPT tests: tiny random configs, the same assertions, run against both implementations where
transformers is the reference, and ours compared with transformers on the same weights.

transformers is a test-only reference here (the product never imports it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import biogpt.model as ours
from biogpt.model.checkpoint import parse_shard_size
from biogpt.model.errors import BioGptError, InvalidOptionError, ModelNotFoundError, ModelPathError, PathError
from biogpt.model.generation.config import GenerationConfig

from tests.helpers import tiny_lm

transformers = pytest.importorskip("transformers")

CLASSES = ("BioGptModel", "BioGptForCausalLM", "BioGptForTokenClassification", "BioGptForSequenceClassification")
# transformers' BioGptModelTester sizes: a tiny random model
CONFIG = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64,
)
IDS = torch.tensor([[2, 5, 6, 7, 9, 11], [2, 8, 3, 3, 4, 1]])


def ours_config(**overrides):
    return ours.BioGptConfig(**{**CONFIG, **overrides})


def theirs_config(**overrides):
    return transformers.BioGptConfig(**{**CONFIG, **overrides})


def build(impl: str, name: str, **overrides):
    """A randomly initialised model of class `name` from `impl` ("ours" or "theirs")."""
    if impl == "ours":
        return getattr(ours, name)(ours_config(num_labels=3, **overrides)).eval()
    return getattr(transformers, name)(theirs_config(num_labels=3, **overrides)).eval()


def main_output(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def pair(tmp_path: Path, name: str = "BioGptForCausalLM", *, seed: int = 0, **overrides):
    """(ours, theirs): the same random weights in both, through our save and transformers' load."""
    torch.manual_seed(seed)
    model = build("ours", name, **overrides)
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a wrong copy shows
        for pname, p in model.named_parameters():
            if "layer_norm" in pname or pname.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path / f"pair-{name}-{seed}"
    model.save_pretrained(folder, tokenizer=False)
    return model, getattr(transformers, name).from_pretrained(folder).eval()


both = pytest.mark.parametrize("impl", ["ours", "theirs"])
classes = pytest.mark.parametrize("name", CLASSES)


# ============================================================================ attributes
@both
@classes
def test_class_attributes(impl, name):
    model = build(impl, name)
    assert model.main_input_name == "input_ids"
    assert model.base_model_prefix == "biogpt"
    assert type(model).can_generate() is (name == "BioGptForCausalLM")
    assert model.can_generate() is (name == "BioGptForCausalLM")
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert isinstance(model.config, model.config_class)
    assert model.supports_gradient_checkpointing
    if name == "BioGptForCausalLM":
        assert model.generation_config.eos_token_id == 2 and model.generation_config.pad_token_id == 1
    elif impl == "ours":  # transformers: a model that cannot generate has no generation config
        assert model.generation_config is None


# ============================================================================ embeddings
@both
@classes
def test_model_get_set_embeddings(impl, name):
    model = build(impl, name)
    assert isinstance(model.get_input_embeddings(), nn.Embedding)
    new = nn.Embedding(10, 10)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new
    head = model.get_output_embeddings()
    assert head is None or isinstance(head, nn.Linear)
    assert (head is not None) == (name == "BioGptForCausalLM")


@both
def test_tied_head_is_the_embedding_and_set_output_embeddings(impl):
    model = build(impl, "BioGptForCausalLM")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    untied = build(impl, "BioGptForCausalLM", tie_word_embeddings=False)
    assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight
    head = nn.Linear(32, 99, bias=False)
    untied.set_output_embeddings(head)
    assert untied.get_output_embeddings() is head
    model.set_output_embeddings(nn.Linear(32, 99, bias=False))
    model.tie_weights()  # ties the new head back to the embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


# ============================================================================ resize
@both
@classes
def test_resize_tokens_embeddings(impl, name):
    """transformers' common test: same size, +10, -15; config follows; the model still runs."""
    model = build(impl, name)
    vocab = model.config.vocab_size
    embed = model.resize_token_embeddings(vocab)
    cloned = embed.weight.clone()
    embed = model.resize_token_embeddings(vocab + 10)
    assert model.config.vocab_size == vocab + 10
    assert embed.weight.shape[0] == cloned.shape[0] + 10
    assert embed is model.get_input_embeddings()
    if name == "BioGptForCausalLM":
        assert model.get_output_embeddings().weight.shape[0] == vocab + 10
        assert model.get_output_embeddings().weight is embed.weight  # the tied head follows
    with torch.no_grad():
        out = main_output(model(IDS.clamp(max=vocab + 9)))
    if name == "BioGptForCausalLM":
        assert out.shape[-1] == vocab + 10
    embed = model.resize_token_embeddings(vocab - 15)
    assert model.config.vocab_size == vocab - 15 and embed.weight.shape[0] == vocab - 15
    with torch.no_grad():
        model(IDS.clamp(max=vocab - 16))
    assert torch.equal(embed.weight, cloned[: vocab - 15])  # the kept rows are untouched

    embed = model.resize_token_embeddings(vocab, pad_to_multiple_of=64)
    assert embed.weight.shape[0] % 64 == 0 and model.config.vocab_size == embed.weight.shape[0]
    embed = model.resize_token_embeddings(embed.weight.shape[0] + 13, pad_to_multiple_of=64)
    assert embed.weight.shape[0] // 64 == 3
    with pytest.raises(ValueError):  # ours: InvalidOptionError, a ValueError
        model.resize_token_embeddings(vocab, pad_to_multiple_of=1.3)
    assert model.resize_token_embeddings() is model.get_input_embeddings()  # nothing asked: nothing done


@both
def test_resize_below_the_padding_index_drops_it(impl):
    model = build(impl, "BioGptForCausalLM", pad_token_id=50)
    model.resize_token_embeddings(40)
    assert model.get_input_embeddings().padding_idx is None
    with torch.no_grad():
        model(IDS)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("mean_resizing", [True, False])
def test_resize_equals_transformers_on_the_same_weights(tmp_path, tie, mean_resizing):
    """Same weights, same seed: the new rows (mean/covariance sampling, or a fresh init) and an
    untied head equal transformers' bit for bit, and so do the logits of the new tokens."""
    mine, theirs = pair(tmp_path, tie_word_embeddings=tie)
    for new in (121, 130):  # twice: resizing a resized model too
        torch.manual_seed(3)
        mine.resize_token_embeddings(new, mean_resizing=mean_resizing)
        torch.manual_seed(3)
        theirs.resize_token_embeddings(new, mean_resizing=mean_resizing)
        assert torch.equal(mine.get_input_embeddings().weight, theirs.get_input_embeddings().weight)
        assert torch.equal(mine.get_output_embeddings().weight, theirs.get_output_embeddings().weight)
        assert mine.config.vocab_size == theirs.config.vocab_size == new
        assert (mine.get_output_embeddings().weight is mine.get_input_embeddings().weight) == tie
        ids = torch.tensor([[2, 5, 100, new - 1, 7]])
        with torch.no_grad():
            torch.testing.assert_close(mine(ids).logits, theirs(ids).logits, rtol=1e-5, atol=1e-5)


def test_mean_resizing_keeps_the_next_token_distribution(tmp_path):
    """The point of mean resizing (transformers' test): new rows near the old mean."""
    model = tiny_lm()
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(old.shape[0] + 8)
    new_rows = model.get_input_embeddings().weight[-8:].detach()
    torch.testing.assert_close(new_rows, old.mean(0).expand_as(new_rows), atol=1e-3, rtol=0)
    assert model.get_input_embeddings().weight.requires_grad


def test_a_resized_model_saves_and_loads_in_both(tmp_path):
    """The "add tokens, then fine-tune" recipe's last step: the resized model is a checkpoint."""
    model = tiny_lm()
    model.resize_token_embeddings(1003)
    model.save_pretrained(tmp_path / "m", tokenizer=False)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["vocab_size"] == 1003
    ids = torch.tensor([[2, 1001, 1002, 5]])
    for back in (ours.BioGptForCausalLM.from_pretrained(tmp_path / "m"), transformers.BioGptForCausalLM.from_pretrained(tmp_path / "m")):
        with torch.no_grad():
            torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


# ============================================================================ num_parameters
@classes
def test_num_parameters_equals_transformers(tmp_path, name):
    mine, theirs = pair(tmp_path, name)
    for only_trainable in (False, True):
        for exclude_embeddings in (False, True):
            kw = dict(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
            assert mine.num_parameters(**kw) == theirs.num_parameters(**kw), kw
    for model in (mine, theirs):
        model.biogpt.requires_grad_(False) if name != "BioGptModel" else model.layers.requires_grad_(False)
    assert mine.num_parameters(only_trainable=True) == theirs.num_parameters(only_trainable=True)
    assert mine.num_parameters(only_trainable=True) < mine.num_parameters()
    # a tied head is counted once
    assert mine.num_parameters() == sum(p.numel() for p in {id(p): p for p in mine.parameters()}.values())


# ============================================================================ gradient checkpointing
def test_gradient_checkpointing_enable_disable_and_kwargs(monkeypatch):
    model = build("ours", "BioGptForCausalLM").train()
    assert not model.is_gradient_checkpointing and not model.is_activation_checkpointing
    labels = IDS.clone()
    plain = model(IDS, labels=labels).loss
    plain.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    calls = []
    real = torch.utils.checkpoint.checkpoint

    def spy(function, *args, **kwargs):
        calls.append(kwargs)
        return real(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", spy)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False, "preserve_rng_state": False})
    assert model.is_gradient_checkpointing and model.biogpt.gradient_checkpointing
    model(IDS, labels=labels).loss.backward()
    assert calls and all(c == {"use_reentrant": False, "preserve_rng_state": False} for c in calls)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-6)

    calls.clear()
    model.gradient_checkpointing_enable()  # transformers' default: use_reentrant=False
    model(IDS, labels=labels)
    assert calls and all(c == {"use_reentrant": False} for c in calls)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    calls.clear()
    model(IDS, labels=labels)
    assert calls == []
    model.activation_checkpointing_enable(every_n_layers=1)  # transformers 5's name, as its Trainer calls it
    assert model.is_activation_checkpointing
    model.activation_checkpointing_disable()
    with pytest.raises(InvalidOptionError, match="every_n_layers=2"):
        model.activation_checkpointing_enable(every_n_layers=2)


@both
def test_gradient_checkpointing_flags_on_every_class(impl):
    for name in CLASSES:
        model = build(impl, name)
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing


# ============================================================================ generation_config
def test_generation_config_written_and_read_both_ways(tmp_path):
    model = tiny_lm()
    model.generation_config.max_new_tokens = 7
    model.generation_config.num_beams = 3
    model.save_pretrained(tmp_path / "ours", tokenizer=False)
    written = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
    assert written["max_new_tokens"] == 7 and written["num_beams"] == 3 and written["eos_token_id"] == 2
    theirs = transformers.BioGptForCausalLM.from_pretrained(tmp_path / "ours")
    assert theirs.generation_config.max_new_tokens == 7 and theirs.generation_config.num_beams == 3
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "ours").generation_config == model.generation_config
    given = GenerationConfig(max_new_tokens=2)
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "ours", generation_config=given).generation_config is given

    theirs.generation_config.do_sample = True
    theirs.generation_config.top_k = 5
    theirs.save_pretrained(tmp_path / "theirs")
    back = ours.BioGptForCausalLM.from_pretrained(tmp_path / "theirs").generation_config
    assert isinstance(back, GenerationConfig)
    assert (back.max_new_tokens, back.num_beams, back.do_sample, back.top_k) == (7, 3, True, 5)
    # the keys transformers writes: every name we write is one of its GenerationConfig's
    assert set(written) <= set(transformers.GenerationConfig().to_dict())


def test_our_generation_config_field_names_are_transformers(tmp_path):
    """Every transformers-named option of ours is a transformers GenerationConfig key; the rest
    are the engine's own (documented in generation/config.py) and stay out of the file unless set."""
    theirs = set(transformers.GenerationConfig().to_dict())
    engine_only = {"cuda_graph", "compile_step", "decode_kernels"}
    fields = set(GenerationConfig().to_dict())
    assert fields - engine_only <= theirs, fields - engine_only - theirs
    assert not set(json.loads(GenerationConfig().to_json_string())) & engine_only


def test_no_generation_config_for_a_head_model_and_defaults_without_the_file(tmp_path):
    torch.manual_seed(0)
    classifier = build("ours", "BioGptForSequenceClassification")
    classifier.save_pretrained(tmp_path / "cls", tokenizer=False)
    assert not (tmp_path / "cls" / "generation_config.json").exists()
    model = tiny_lm()
    model.save_pretrained(tmp_path / "lm", tokenizer=False)
    (tmp_path / "lm" / "generation_config.json").unlink()
    back = ours.BioGptForCausalLM.from_pretrained(tmp_path / "lm")
    assert back.generation_config.eos_token_id == 2 and back.generation_config.max_new_tokens is None


# ============================================================================ save_pretrained
@pytest.mark.parametrize("size", ["5GB", "200MB", "1.5GB", "10kb", " 7 MB", "2TB"])
def test_max_shard_size_strings_read_as_transformers_reads_them(size):
    from huggingface_hub.serialization._base import parse_size_to_int

    assert parse_shard_size(size) == parse_size_to_int(size)
    assert parse_shard_size(12_345) == 12_345


@pytest.mark.parametrize("size", ["5GiB", "GB", "five MB", 0, -3, 1.5, True])
def test_bad_max_shard_size_is_refused_before_writing(tmp_path, size):
    with pytest.raises(InvalidOptionError, match="max_shard_size"):
        tiny_lm().save_pretrained(tmp_path / "m", tokenizer=False, max_shard_size=size)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("size", [30_000, "30KB", "10.5KB"])
def test_sharded_save_is_transformers_layout_and_loads_both_ways(tmp_path, size):
    """The same shards (file names, weight map, index metadata) as transformers' save of the same
    weights, and each side loads the other's folder with equal logits.

    The reference is a freshly built transformers model: huggingface_hub sizes a tensor by its
    storage, so a model whose loaded tensors share one buffer shards differently there."""
    torch.manual_seed(0)
    theirs = build("theirs", "BioGptForCausalLM")
    theirs.save_pretrained(tmp_path / "single")
    mine = ours.BioGptForCausalLM.from_pretrained(tmp_path / "single")
    mine.save_pretrained(tmp_path / "ours", tokenizer=False, max_shard_size=size)
    theirs.save_pretrained(tmp_path / "theirs", max_shard_size=size)
    names = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "theirs").iterdir())
    assert "model.safetensors.index.json" in names and "model.safetensors" not in names
    assert len([n for n in names if n.startswith("model-0000")]) > 1
    index = [json.loads((tmp_path / side / "model.safetensors.index.json").read_text()) for side in ("ours", "theirs")]
    assert index[0] == index[1]
    with torch.no_grad():
        want = mine(IDS).logits
        torch.testing.assert_close(transformers.BioGptForCausalLM.from_pretrained(tmp_path / "ours")(IDS).logits, want)
        torch.testing.assert_close(ours.BioGptForCausalLM.from_pretrained(tmp_path / "theirs")(IDS).logits, want)


@pytest.mark.parametrize("size", ["50GB", "20KB"])
def test_safe_serialization_false_writes_pytorch_model_bin(tmp_path, size):
    mine, _ = pair(tmp_path)
    mine.save_pretrained(tmp_path / "bin", tokenizer=False, safe_serialization=False, max_shard_size=size)
    names = {p.name for p in (tmp_path / "bin").iterdir()}
    assert not any(n.endswith(".safetensors") for n in names)
    assert ("pytorch_model.bin" in names) == (size == "50GB")
    assert ("pytorch_model.bin.index.json" in names) == (size == "20KB")
    with torch.no_grad():
        want = mine(IDS).logits
        torch.testing.assert_close(ours.BioGptForCausalLM.from_pretrained(tmp_path / "bin")(IDS).logits, want)
        torch.testing.assert_close(transformers.BioGptForCausalLM.from_pretrained(tmp_path / "bin")(IDS).logits, want)


def test_state_dict_and_is_main_process_as_trainer_passes_them(tmp_path):
    model = tiny_lm()
    model.save_pretrained(tmp_path / "no", tokenizer=False, is_main_process=False)
    assert not (tmp_path / "no").exists()
    other = tiny_lm(seed=1)
    model.save_pretrained(tmp_path / "sd", tokenizer=False, state_dict=other.state_dict())
    back = ours.BioGptForCausalLM.from_pretrained(tmp_path / "sd")
    assert torch.equal(back.get_input_embeddings().weight, other.get_input_embeddings().weight)


@classes
def test_every_class_moves_both_ways_with_equal_outputs(tmp_path, name):
    mine, theirs = pair(tmp_path, name)
    with torch.no_grad():
        torch.testing.assert_close(main_output(theirs(IDS)), main_output(mine(IDS)), rtol=1e-5, atol=1e-5)
    theirs.save_pretrained(tmp_path / "back")
    back = getattr(ours, name).from_pretrained(tmp_path / "back")
    with torch.no_grad():
        torch.testing.assert_close(main_output(back(IDS)), main_output(mine(IDS)), rtol=1e-5, atol=1e-5)
    assert (tmp_path / "back" / "generation_config.json").exists() == (name == "BioGptForCausalLM")


# ============================================================================ from_pretrained
@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16, torch.float32])
def test_default_dtype_is_the_checkpoints_as_in_transformers_5(tmp_path, stored):
    mine, _ = pair(tmp_path)
    mine.to(stored).save_pretrained(tmp_path / "m", tokenizer=False)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == str(stored).removeprefix("torch.")
    theirs = transformers.BioGptForCausalLM.from_pretrained(tmp_path / "m")
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m").dtype == theirs.dtype == stored
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m", dtype="auto").dtype == stored
    # explicit choices (the command line's --dtype) still win
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m", dtype="float32").dtype == torch.float32
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m", dtype=None).dtype == torch.float32
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m", torch_dtype=torch.float16).dtype == torch.float16
    # no dtype in config.json: the first floating-point tensor's, as transformers
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["dtype"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    theirs = transformers.BioGptForCausalLM.from_pretrained(tmp_path / "m")
    assert ours.BioGptForCausalLM.from_pretrained(tmp_path / "m").dtype == theirs.dtype == stored


@both
def test_subfolder(tmp_path, impl):
    mine, _ = pair(tmp_path)
    mine.save_pretrained(tmp_path / "repo" / "sub", tokenizer=False)
    cls = (ours if impl == "ours" else transformers).BioGptForCausalLM
    back = cls.from_pretrained(tmp_path / "repo", subfolder="sub")
    with torch.no_grad():
        torch.testing.assert_close(back(IDS).logits, mine(IDS).logits)
    with pytest.raises(OSError):
        cls.from_pretrained(tmp_path / "repo", subfolder="nope")


@both
def test_a_missing_checkpoint_raises_oserror(tmp_path, impl):
    cls = (ours if impl == "ours" else transformers).BioGptForCausalLM
    (tmp_path / "empty").mkdir()
    for where in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(OSError):
            cls.from_pretrained(where, local_files_only=True)
    config_only = tmp_path / "config-only"
    ours_config().save_pretrained(config_only)
    with pytest.raises(OSError):
        cls.from_pretrained(config_only, local_files_only=True)


def test_our_missing_checkpoint_errors_are_still_ours():
    """OSError for transformers' callers, and still the library's typed errors for the command
    line: main.py catches BioGptError before OSError, so the exit codes are unchanged."""
    from biogpt.main import exit_code

    assert issubclass(ModelNotFoundError, OSError) and issubclass(ModelNotFoundError, BioGptError)
    assert issubclass(ModelPathError, OSError) and issubclass(ModelPathError, PathError)
    assert not issubclass(PathError, OSError)  # other paths stay out of the library's `except OSError`
    assert exit_code(ModelPathError("x: no such directory")) == 2  # a usage error, as PathError
    assert exit_code(ModelNotFoundError("x: no such model on the hub")) == 1
    assert str(ModelPathError("x: no such directory")) == "x: no such directory"


def test_hub_ids_missing_offline_raise_oserror(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="not in the Hugging Face cache"):
        ours.BioGptForCausalLM.from_pretrained("someorg/no-such-model", cache_dir=tmp_path, subfolder="sub")


def test_main_maps_a_missing_model_to_a_usage_error(tmp_path, capsys):
    from biogpt.main import main

    assert main(["generate", "-m", str(tmp_path / "missing"), "hello"]) == 2
    assert "missing" in capsys.readouterr().err


def test_generation_config_survives_copy():
    model = tiny_lm()
    model.generation_config.max_new_tokens = 4
    clone = copy.deepcopy(model)
    assert clone.generation_config.max_new_tokens == 4 and clone.generation_config is not model.generation_config


# ============================================================================ transformers' model attributes
@both
@classes
def test_attributes_generic_code_reads(impl, name):
    """What accelerate, peft and code written for any transformers model read on a built model."""
    model = build(impl, name)
    assert model._supports_sdpa is True
    # ours keeps a decoder layer on one device under device_map="auto" (transformers' BioGPT
    # declares none, and accelerate may then split a layer's modules across devices)
    assert set(model._no_split_modules) == ({"BioGptDecoderLayer"} if impl == "ours" else set())
    for attr in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict", "_keys_to_ignore_on_load_missing",
                 "_keys_to_ignore_on_load_unexpected", "_keys_to_ignore_on_save"):  # fmt: skip
        assert len(getattr(model, attr)) == 0, attr
    assert model.tp_plan == {}
    assert type(model)._can_set_attn_implementation() is True
    assert type(model)._can_set_experts_implementation() is False


@both
@classes
def test_set_attn_implementation_switches_a_built_model(impl, name):
    torch.manual_seed(0)
    model = build(impl, name)
    assert model.config._attn_implementation == "sdpa"
    sdpa = main_output(model(IDS))
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    out = model(IDS, output_attentions=True)
    assert len(out.attentions) == CONFIG["num_hidden_layers"] and out.attentions[0].shape == (2, 4, 6, 6)
    torch.testing.assert_close(main_output(out), sdpa, atol=1e-5, rtol=1e-5)
    model.set_attn_implementation("sdpa")
    assert model(IDS, output_attentions=True).attentions == ()
    with pytest.raises(ValueError, match='Specified `attn_implementation="foo"` is not supported'):
        model.set_attn_implementation("foo")


@both
def test_from_config_records_attention_and_dtype(impl):
    cls = getattr(ours if impl == "ours" else transformers, "BioGptForCausalLM")
    config = ours_config() if impl == "ours" else theirs_config()
    model = cls._from_config(config, attn_implementation="eager")
    assert model.config._attn_implementation == "eager" and model.dtype == torch.float32
    assert len(model(IDS, output_attentions=True).attentions) == CONFIG["num_hidden_layers"]
    half = cls._from_config(ours_config() if impl == "ours" else theirs_config(), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.config.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32  # restored


@both
@classes
def test_resize_records_the_vocab_size_on_the_model(impl, name):
    model = build(impl, name)
    model.resize_token_embeddings(120)
    assert model.vocab_size == 120 == model.config.vocab_size


@both
def test_pad_to_multiple_of_must_be_an_integer_with_transformers_message(impl):
    model = build(impl, "BioGptForCausalLM")
    with pytest.raises(ValueError, match="Asking to pad the embedding matrix to a multiple of `1.3`, which is not and integer"):
        model.resize_token_embeddings(120, pad_to_multiple_of=1.3)


def test_shift_labels_replace_the_shift_as_in_transformers(tmp_path):
    """Sequence-parallel trainers shift the targets before sharding and pass them as
    `shift_labels`; the loss trains against those, not against `labels` shifted again."""
    mine, theirs = pair(tmp_path)
    labels = IDS.clone()
    shifted = torch.tensor([[5, 6, 7, 9, 11, -100], [-100, 3, 3, 4, 8, -100]])
    with torch.no_grad():
        got = mine(IDS, labels=labels, shift_labels=shifted).loss
        want = theirs(IDS, labels=labels, shift_labels=shifted).loss
        plain = mine(IDS, labels=labels).loss
        other_labels = mine(IDS, labels=torch.zeros_like(labels), shift_labels=shifted).loss
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain)  # the given targets were used
    torch.testing.assert_close(other_labels, got)  # labels then only switch the loss on


# ============================================================================ post_init
def with_extra_head(impl: str):
    """A subclass that adds a module and calls post_init, as transformers' docs teach."""
    base = getattr(ours if impl == "ours" else transformers, "BioGptForCausalLM")

    class WithExtraHead(base):
        def __init__(self, config, **kwargs):
            super().__init__(config, **kwargs)
            self.extra = nn.Linear(config.hidden_size, 5)
            self.post_init()

    return WithExtraHead


@both
def test_post_init_initialises_only_what_was_added(impl):
    torch.manual_seed(0)
    cls = with_extra_head(impl)
    model = cls(ours_config() if impl == "ours" else theirs_config())
    # the added module gets the model's init (normal, std initializer_range; zero bias), not torch's
    assert model.extra.weight.std() < 0.05 and torch.equal(model.extra.bias, torch.zeros(5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.post_init()  # again: nothing is initialised twice
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@both
def test_post_init_after_loading_keeps_the_loaded_weights(tmp_path, impl):
    mine, theirs = pair(tmp_path)
    model = mine if impl == "ours" else theirs
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.post_init()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loaded = (ours if impl == "ours" else transformers).BioGptForCausalLM.from_pretrained(tmp_path / "pair-BioGptForCausalLM-0")
    loaded.post_init()
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())


@both
def test_post_init_keeps_a_resized_untied_head(impl):
    model = build(impl, "BioGptForCausalLM", tie_word_embeddings=False)
    model.resize_token_embeddings(120)
    head = model.get_output_embeddings().weight.clone()
    model.post_init()
    assert torch.equal(model.get_output_embeddings().weight, head)


@both
@classes
def test_a_config_saved_with_gradient_checkpointing_turns_it_on(impl, name):
    """transformers 4 wrote `gradient_checkpointing: true` into configs; building a model from
    one turns checkpointing on and consumes the key (it is not written back)."""
    config = ours_config(num_labels=3) if impl == "ours" else theirs_config(num_labels=3)
    config.gradient_checkpointing = True
    model = getattr(ours if impl == "ours" else transformers, name)(config)
    assert model.is_activation_checkpointing
    assert "gradient_checkpointing" not in model.config.to_dict()
