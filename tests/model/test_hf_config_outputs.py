"""Issue 27, items 1 and 2: the config and the model outputs/forward as transformers' BioGPT has them.

Written in the shape of transformers' own BioGPT tests (tests/models/biogpt/test_modeling_biogpt.py
and its ConfigTester): a tester builds tiny random configs the way `BioGptModelTester` does
(type_vocab_size=16 and is_decoder=False included: keys every transformers config takes), and
each check runs against our classes and, as the control, against transformers' (the `impl`
fixture). Where both apply, the same weights (state_dict) give the same numbers:
- logits, hidden states and eager attention weights: within TOL = 1e-5 (fp32, tiny shapes;
  the two compute the same operations in the same order, so the difference is rounding only);
- tuple order: the same fields in the same positions (`return_dict=False`, `to_tuple()`).
Positions: ours count only attended tokens even without `position_ids` (fairseq's rule, see
masks.py), transformers 5.24's forward counts columns; they agree on unpadded and right-padded
rows, which is what the cross-implementation checks use.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from types import SimpleNamespace

import pytest
import torch

import biogpt.model as ours_module
from biogpt.model.kv_cache import KVCache
from biogpt.model.outputs import ModelOutput

transformers = pytest.importorskip("transformers")
TOL = 1e-5


# ------------------------------------------------------------------------------ implementations
IMPLS = {
    "ours": ours_module,
    "transformers": transformers,
}


def classes(name: str) -> SimpleNamespace:
    m = IMPLS[name]
    return SimpleNamespace(
        name=name,
        Config=m.BioGptConfig,
        Model=m.BioGptModel,
        CausalLM=m.BioGptForCausalLM,
        TokenClassification=m.BioGptForTokenClassification,
        SequenceClassification=m.BioGptForSequenceClassification,
    )


@pytest.fixture(params=list(IMPLS))
def impl(request) -> SimpleNamespace:
    return classes(request.param)


def ids_tensor(shape: list[int], vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=generator)


def random_attention_mask(shape: list[int], generator: torch.Generator) -> torch.Tensor:
    mask = ids_tensor(shape, 2, generator)
    mask[:, -1] = 1  # every row attends to something, as transformers' helper makes sure
    return mask


class BioGptTester:
    """The sizes of transformers' BioGptModelTester."""

    batch_size, seq_length, vocab_size = 13, 7, 99
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size = 32, 2, 4, 37
    max_position_embeddings, type_vocab_size, type_sequence_label_size, num_labels = 512, 16, 2, 3

    def __init__(self, impl: SimpleNamespace, seed: int = 0) -> None:
        self.impl = impl
        self.g = torch.Generator().manual_seed(seed)

    def get_config(self, **overrides):
        kwargs = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            is_decoder=False,
            initializer_range=0.02,
        )
        return self.impl.Config(**{**kwargs, **overrides})

    def inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size, self.g)
        mask = random_attention_mask([self.batch_size, self.seq_length], self.g)
        return input_ids, mask


# ------------------------------------------------------------------------------ config (ConfigTester)
CONFIG_INPUTS = {"hidden_size": 37}  # what transformers' BioGPT test gives its ConfigTester

# transformers' config_common_kwargs, less the generation parameters (transformers 5 moves them
# to generation_config.json and drops them from the config; we keep them as extra keys).
COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "torchscript": True,
    "use_bfloat16": True,
    "tf_legacy_loss": True,
    "pruned_heads": {"a": 1},
    "tie_word_embeddings": False,
    "is_decoder": True,
    "cross_attention_hidden_size": 128,
    "add_cross_attention": True,
    "tie_encoder_decoder": True,
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "finetuning_task": "translation",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "tokenizer_class": "BertTokenizerFast",
    "prefix": "prefix",
    "bos_token_id": 6,
    "pad_token_id": 7,
    "eos_token_id": 8,
    "sep_token_id": 9,
    "decoder_start_token_id": 10,
    "task_specific_params": {"translation": "some_params"},
    "problem_type": "regression",
}


def test_config_common_properties(impl):
    config = impl.Config(**CONFIG_INPUTS)  # 37 is not a multiple of 16 heads: the config is fine
    names = ["hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"]
    for idx, name in enumerate(names):
        assert hasattr(config, name)
        setattr(config, name, idx)
        assert getattr(config, name) == idx
        assert getattr(impl.Config(**{name: idx}), name) == idx


def test_config_to_json_string_and_file(impl, tmp_path):
    config = impl.Config(**CONFIG_INPUTS)
    obj = json.loads(config.to_json_string())
    for key, value in CONFIG_INPUTS.items():
        assert obj[key] == value
    config.to_json_file(tmp_path / "config.json")
    assert impl.Config.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()


def test_config_save_and_from_pretrained(impl):
    first = impl.Config(**CONFIG_INPUTS)
    with tempfile.TemporaryDirectory() as tmpdirname:
        first.save_pretrained(tmpdirname)
        second = impl.Config.from_pretrained(tmpdirname)
        assert second.to_dict() == first.to_dict()
        sub = os.path.join(tmpdirname, "test")
        first.save_pretrained(sub)
        assert impl.Config.from_pretrained(tmpdirname, subfolder="test").to_dict() == first.to_dict()


def test_config_num_labels(impl):
    config = impl.Config(**CONFIG_INPUTS, num_labels=5)
    assert len(config.id2label) == 5 and len(config.label2id) == 5
    config.num_labels = 3
    assert len(config.id2label) == 3 and len(config.label2id) == 3
    assert impl.Config() is not None


def test_config_common_arguments(impl):
    config = impl.Config(**copy.deepcopy(COMMON_KWARGS), torch_dtype="float16")
    wrong = [(key, getattr(config, key), value) for key, value in COMMON_KWARGS.items() if getattr(config, key) != value]
    assert not wrong
    assert config.dtype == torch.float16


def test_config_unknown_keys_round_trip_through_json(impl, tmp_path):
    config = impl.Config(type_vocab_size=16, num_labels=3, problem_type="single_label_classification")
    config.position_embedding_type = "relative_key"  # set after construction, as transformers' test does
    config.save_pretrained(tmp_path)
    again = impl.Config.from_pretrained(tmp_path)
    assert again.type_vocab_size == 16 and again.position_embedding_type == "relative_key"
    assert again.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}  # int keys again
    assert again.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert again.problem_type == "single_label_classification" and again.num_labels == 3


def test_our_config_writes_the_keys_transformers_writes(tmp_path):
    theirs = transformers.BioGptConfig().to_dict()
    ours = ours_module.BioGptConfig().to_dict()
    missing = set(theirs) - set(ours) - {"transformers_version", "_name_or_path"}
    assert not missing
    for key in set(theirs) & set(ours):
        assert ours[key] == theirs[key], key
    # and each reads the other's file with every common attribute
    cfg = ours_module.BioGptConfig(num_labels=4, return_dict=False, output_hidden_states=True, type_vocab_size=16)
    cfg.save_pretrained(tmp_path / "ours")
    ref = transformers.BioGptConfig.from_pretrained(tmp_path / "ours")
    assert (ref.num_labels, ref.return_dict, ref.output_hidden_states, ref.type_vocab_size) == (4, False, True, 16)
    ref.save_pretrained(tmp_path / "theirs")
    back = ours_module.BioGptConfig.from_pretrained(tmp_path / "theirs")
    assert (back.num_labels, back.return_dict, back.output_hidden_states, back.type_vocab_size) == (4, False, True, 16)


def test_extra_stays_the_view_of_kept_keys():
    """Our callers read and write `config.extra[...]` (architectures, task metadata): the same
    storage as the attributes."""
    cfg = ours_module.BioGptConfig()
    cfg.extra["architectures"] = ["BioGptForCausalLM"]
    assert cfg.architectures == ["BioGptForCausalLM"]
    cfg.biogpt_task = {"name": "bc5cdr"}
    assert cfg.extra["biogpt_task"] == {"name": "bc5cdr"} and cfg.to_dict()["biogpt_task"] == {"name": "bc5cdr"}
    assert cfg.architectures is not None and ours_module.BioGptConfig().architectures is None
    cfg.id2label = {"0": "O", "1": "B"}  # assigning id2label derives label2id again
    assert cfg.id2label == {0: "O", 1: "B"} and cfg.label2id == {"O": 0, "B": 1}


# ------------------------------------------------------------------------------ models (ModelTester)
@torch.no_grad()
def test_model(impl):
    t = BioGptTester(impl)
    input_ids, mask = t.inputs()
    model = impl.Model(t.get_config()).eval()
    model(input_ids, attention_mask=mask)
    result = model(input_ids)
    assert result.last_hidden_state.shape == (t.batch_size, t.seq_length, t.hidden_size)


@torch.no_grad()
def test_model_attention_mask_past(impl):
    t = BioGptTester(impl)
    input_ids, _ = t.inputs()
    model = impl.Model(t.get_config()).eval()
    attn_mask = torch.ones(input_ids.shape, dtype=torch.long)
    half = t.seq_length // 2
    attn_mask[:, half:] = 0
    output, past = model(input_ids, attention_mask=attn_mask).to_tuple()  # use_cache follows the config: on
    next_tokens = ids_tensor([t.batch_size, 1], t.vocab_size, t.g)
    idx = int(ids_tensor([1], half, t.g)) + 1
    input_ids[:, -idx] = ids_tensor([t.batch_size, 1], t.vocab_size, t.g).squeeze(-1)
    next_input_ids = torch.cat([input_ids, next_tokens], dim=-1)
    attn_mask = torch.cat([attn_mask, torch.ones((attn_mask.shape[0], 1), dtype=torch.long)], dim=1)
    no_past = model(next_input_ids, attention_mask=attn_mask)["last_hidden_state"]
    with_past = model(next_tokens, past_key_values=past, attention_mask=attn_mask)["last_hidden_state"]
    assert torch.allclose(with_past[:, 0], no_past[:, -1], atol=1e-3)


@torch.no_grad()
def test_model_past_with_large_inputs(impl):
    t = BioGptTester(impl)
    input_ids, _ = t.inputs()
    model = impl.Model(t.get_config()).eval()
    attention_mask = torch.ones(input_ids.shape, dtype=torch.long)
    output, past = model(input_ids, attention_mask=attention_mask, use_cache=True).to_tuple()
    next_tokens = ids_tensor([t.batch_size, 3], t.vocab_size, t.g)
    next_mask = ids_tensor([t.batch_size, 3], 2, t.g)
    next_input_ids = torch.cat([input_ids, next_tokens], dim=-1)
    next_attention_mask = torch.cat([attention_mask, next_mask], dim=-1)
    no_past = model(next_input_ids, attention_mask=next_attention_mask)["last_hidden_state"]
    with_past = model(next_tokens, attention_mask=next_attention_mask, cache=past)["last_hidden_state"]
    assert with_past.shape[1] == 3
    # Rows whose new tokens are all attended agree in both implementations (transformers counts
    # columns for positions, we count attended tokens: they differ where a new token is masked).
    rows = next_mask.all(-1)
    assert torch.allclose(with_past[rows], no_past[rows, -3:], atol=1e-3)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_forward_and_backwards(impl, checkpointing):
    t = BioGptTester(impl)
    input_ids, _ = t.inputs()
    model = impl.CausalLM(t.get_config())
    if checkpointing:
        model.gradient_checkpointing_enable()
    result = model(input_ids, labels=input_ids)
    assert result.loss.shape == ()
    assert result.logits.shape == (t.batch_size, t.seq_length, t.vocab_size)
    result.loss.backward()


@torch.no_grad()
def test_token_classification(impl):
    t = BioGptTester(impl)
    input_ids, mask = t.inputs()
    config = t.get_config()
    config.num_labels = t.num_labels
    model = impl.TokenClassification(config).eval()
    result = model(input_ids, attention_mask=mask, token_type_ids=None)
    assert result.logits.shape == (t.batch_size, t.seq_length, t.num_labels)
    assert list(result.keys()) == ["logits"]  # no cache in a token classifier's output


@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification"])
@torch.no_grad()
def test_sequence_classification(impl, problem):
    t = BioGptTester(impl)
    input_ids, _ = t.inputs()
    config = t.get_config()
    config.num_labels = 3
    attention_mask = input_ids.ne(1)
    if problem == "single_label_classification":
        labels = ids_tensor([t.batch_size], t.type_sequence_label_size, t.g)
    else:
        config.problem_type = problem
        labels = ids_tensor([t.batch_size, 3], t.type_sequence_label_size, t.g).float()
    model = impl.SequenceClassification(config).eval()
    result = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert result.logits.shape == (t.batch_size, 3) and result.loss.shape == ()


# ------------------------------------------------------------------------------ outputs
def kinds(values) -> list[str]:
    """An output tuple as comparable kinds: tensors by shape, tuples by length, a cache as 'cache'."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(f"tensor{tuple(v.shape)}")
        elif isinstance(v, tuple):
            out.append(f"tuple{len(v)}")
        else:
            out.append("cache")
    return out


def twins(config_kwargs: dict | None = None, *, head: str = "BioGptForCausalLM", seed: int = 0):
    """Our model and transformers' with the same weights, both in eval mode."""
    t = BioGptTester(classes("ours"))
    kw = dict(config_kwargs or {})
    torch.manual_seed(seed)
    ours = getattr(ours_module, head)(t.get_config(**kw)).eval()
    ref = getattr(transformers, head)(BioGptTester(classes("transformers")).get_config(**kw)).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert set(missing) <= {"output_projection.weight"} and not unexpected  # the tied head may be left out
    if head == "BioGptForCausalLM":
        assert ref.output_projection.weight.data_ptr() == ref.biogpt.embed_tokens.weight.data_ptr()
    return t, ours, ref


CALLS = [
    {},
    {"use_cache": False},
    {"output_hidden_states": True},
    {"output_hidden_states": True, "output_attentions": True, "use_cache": False},
    {"labels": True},
    {"labels": True, "use_cache": False, "output_hidden_states": True},
]


@pytest.mark.parametrize("head", ["BioGptModel", "BioGptForCausalLM", "BioGptForTokenClassification", "BioGptForSequenceClassification"])
@pytest.mark.parametrize("call", CALLS, ids=lambda c: ",".join(c) or "default")
@torch.no_grad()
def test_outputs_keys_and_tuples_equal_transformers(head, call):
    t, ours, ref = twins({"attn_implementation": "eager", "num_labels": 3}, head=head)
    input_ids, _ = t.inputs()
    kwargs = dict(call)
    if kwargs.pop("labels", False):
        if head == "BioGptModel":
            return
        kwargs["labels"] = {
            "BioGptForCausalLM": input_ids,
            "BioGptForTokenClassification": input_ids % 3,
            "BioGptForSequenceClassification": input_ids[:, 0] % 3,
        }[head]
    a, b = ours(input_ids, **kwargs), ref(input_ids, **kwargs)
    assert isinstance(a, ModelOutput) and isinstance(a, dict)
    assert type(a).__name__ == type(b).__name__
    assert list(a.keys()) == list(b.keys())
    assert kinds(a.to_tuple()) == kinds(b.to_tuple())
    assert kinds(ours(input_ids, **kwargs, return_dict=False)) == kinds(ref(input_ids, **kwargs, return_dict=False))
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], atol=TOL, rtol=0)
        elif key in ("hidden_states", "attentions"):
            for x, y in zip(a[key], b[key]):
                torch.testing.assert_close(x, y, atol=TOL, rtol=0)
    assert torch.equal(a[0], a.to_tuple()[0]) and a[0] is a[list(a.keys())[0]]


@torch.no_grad()
def test_hidden_states_and_eager_attentions_equal_transformers():
    t, ours, ref = twins({"attn_implementation": "eager"})
    ids, _ = t.inputs()
    a = ours(ids, output_hidden_states=True, output_attentions=True)
    b = ref(ids, output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == t.num_hidden_layers + 1 and len(a.attentions) == t.num_hidden_layers
    assert torch.equal(a.hidden_states[-1], ours.biogpt(ids).last_hidden_state)  # after the final LayerNorm
    for x, y in zip(a.hidden_states + a.attentions, b.hidden_states + b.attentions):
        torch.testing.assert_close(x, y, atol=TOL, rtol=0)
    assert a.attentions[0].shape == (t.batch_size, t.num_attention_heads, t.seq_length, t.seq_length)
    torch.testing.assert_close(a.attentions[0].sum(-1), torch.ones(t.batch_size, t.num_attention_heads, t.seq_length))


@torch.no_grad()
def test_sdpa_gives_no_attention_weights_as_transformers_5():
    t, ours, ref = twins()
    ids, _ = t.inputs()
    assert ours.config._attn_implementation == ref.config._attn_implementation == "sdpa"
    assert ours(ids, output_attentions=True).attentions == () == ref(ids, output_attentions=True).attentions
    # the same numbers as eager attention
    eager = copy.deepcopy(ours)
    eager.config._attn_implementation = "eager"
    torch.testing.assert_close(eager(ids).logits, ours(ids).logits, atol=TOL, rtol=0)


@torch.no_grad()
def test_config_defaults_drive_forward():
    t, ours, _ = twins({"return_dict": False, "output_hidden_states": True, "use_cache": False})
    ids, _ = t.inputs()
    out = ours(ids)
    assert isinstance(out, tuple) and len(out) == 2  # logits, hidden states; no cache
    assert len(out[1]) == t.num_hidden_layers + 1
    assert isinstance(ours(ids, return_dict=True, use_cache=True).cache, KVCache)


@torch.no_grad()
def test_cache_names_and_kinds():
    t, ours, ref = twins()
    ids, _ = t.inputs()
    full = ours(ids, use_cache=False).logits
    first = ours(ids[:, :5])  # use_cache defaults to on in eval mode, as the config says
    assert isinstance(first.cache, KVCache) and first.past_key_values is first.cache
    assert first["past_key_values"] is first.cache and "past_key_values" in first
    assert first.cache.get_seq_length() == 5
    # our cache, in as `cache=` and as `past_key_values=`
    legacy = first.cache.to_legacy()
    legacy = tuple((k.clone(), v.clone()) for k, v in legacy)
    step = ours(ids[:, 5:], cache=first.cache)
    torch.testing.assert_close(step.logits, full[:, 5:], atol=TOL, rtol=0)
    # legacy tuples in, legacy tuples out
    step = ours(ids[:, 5:], past_key_values=legacy)
    assert isinstance(step.cache, tuple) and step.cache[0][0].shape[2] == t.seq_length
    torch.testing.assert_close(step.logits, full[:, 5:], atol=TOL, rtol=0)
    # a transformers DynamicCache, filled in place and returned
    dynamic = transformers.DynamicCache()
    a = ours(ids[:, :5], cache=dynamic)
    assert a.cache is dynamic and dynamic.get_seq_length() == 5
    b = ours(ids[:, 5:], cache=dynamic)
    torch.testing.assert_close(b.logits, full[:, 5:], atol=TOL, rtol=0)
    # and the keys/values in it are transformers' own: its model continues from our cache
    ref_cache = transformers.DynamicCache()
    ours(ids[:, :5], cache=ref_cache)
    torch.testing.assert_close(ref(ids[:, 5:], cache=ref_cache).logits, full[:, 5:], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="once"):
        ours(ids, cache=first.cache, past_key_values=first.cache)


def test_use_cache_off_in_training_mode():
    t, ours, _ = twins()
    ids, _ = t.inputs()
    ours.train()
    assert "cache" not in ours(ids)  # a cache in training would only copy every key and value
    assert isinstance(ours(ids, use_cache=True).cache, KVCache)  # unless asked for


@torch.no_grad()
def test_inputs_embeds_equal_input_ids():
    for head in ("BioGptForCausalLM", "BioGptForSequenceClassification"):
        t, ours, ref = twins({"num_labels": 3}, head=head)
        ids, _ = t.inputs()
        embeds = ours.biogpt.embed_tokens(ids)
        torch.testing.assert_close(ours(inputs_embeds=embeds).logits, ref(inputs_embeds=embeds).logits, atol=TOL, rtol=0)
        if head == "BioGptForCausalLM":
            torch.testing.assert_close(ours(inputs_embeds=embeds).logits, ours(ids).logits, atol=0, rtol=0)
    with pytest.raises(ValueError):
        ours(ids, inputs_embeds=embeds)


@torch.no_grad()
def test_right_padded_batches_equal_transformers():
    t, ours, ref = twins()
    ids, _ = t.inputs()
    lengths = torch.randint(2, t.seq_length + 1, (t.batch_size,), generator=t.g)
    mask = (torch.arange(t.seq_length)[None] < lengths[:, None]).long()
    a, b = ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(a[real], b[real], atol=TOL, rtol=0)


def test_trainer_style_reading():
    """transformers' Trainer reads `outputs["loss"] if isinstance(outputs, dict) else outputs[0]`
    and drops the `cache` key at evaluation."""
    t, ours, _ = twins()
    ids, _ = t.inputs()
    out = ours(ids, labels=ids)
    assert isinstance(out, dict) and out["loss"] is out[0] is out.loss
    assert [k for k in out.keys() if k not in ("cache", "loss")] == ["logits"]


# ------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_torch_compile_cpu_inference_and_training():
    """torch.compile on the plain model, on a CPU: forward (with and without a cache), our
    generate through the compiled module, and one training step equal to the eager one.
    (The issue's Inductor failure on mkldnn._linear_pointwise came from the seed's oneDNN layers
    inside the model; the reference now has plain nn.Linear only.)"""
    t = BioGptTester(classes("ours"))
    config = t.get_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = ours_module.BioGptForCausalLM(config).eval()
    ids = ids_tensor([2, 7], t.vocab_size, t.g)
    compiled = torch.compile(model)
    with torch.no_grad():
        want = model(ids, use_cache=False).logits
        torch.testing.assert_close(compiled(ids, use_cache=False).logits, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled(ids).logits, want, atol=1e-5, rtol=0)
    assert torch.equal(compiled.generate(ids, max_new_tokens=4, do_sample=False), model.generate(ids, max_new_tokens=4, do_sample=False))

    eager, other = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    compiled_train = torch.compile(other)
    losses = []
    for m, params in ((eager, eager.parameters()), (compiled_train, other.parameters())):
        opt = torch.optim.SGD(params, lr=0.1)
        loss = m(ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert abs(losses[0] - losses[1]) < 1e-5
    for p, q in zip(eager.parameters(), other.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ config class attributes
def test_config_class_attributes_generic_code_reads(impl):
    """What code written for any transformers config reads: no sub-configs, no parallel plans."""
    assert impl.Config.sub_configs == {} and impl.Config().sub_configs == {}
    assert impl.Config.base_model_tp_plan is None and impl.Config().base_model_pp_plan is None


def test_config_to_diff_dict_rebuilds_an_equal_config(impl):
    config = impl.Config(vocab_size=99, hidden_size=32, num_labels=3, type_vocab_size=16)
    diff = config.to_diff_dict()
    # the model's own keys stay; transformers' PreTrainedConfig defaults go
    assert diff["vocab_size"] == 99 and diff["hidden_size"] == 32 and diff["type_vocab_size"] == 16
    assert diff["model_type"] == "biogpt" and len(diff["id2label"]) == 3
    assert "return_dict" not in diff and "output_attentions" not in diff and "architectures" not in diff
    assert "problem_type" not in diff
    assert impl.Config(**diff).to_dict() == config.to_dict()


def test_our_to_diff_dict_keeps_what_transformers_keeps():
    kwargs = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2)
    theirs = transformers.BioGptConfig(**kwargs).to_diff_dict()
    ours = ours_module.BioGptConfig(**kwargs).to_diff_dict()
    theirs.pop("transformers_version")
    assert ours == theirs


def test_config_name_or_path_is_settable(impl, tmp_path):
    config = impl.Config()
    assert config.name_or_path == ""
    config.name_or_path = tmp_path  # kept as a string, as transformers does
    assert config.name_or_path == str(tmp_path)


def test_config_from_dict_return_unused_kwargs(impl):
    """transformers' contract, which its AutoConfig relies on for a registered config class:
    (config, the keywords that are not config attributes), those left unapplied."""
    data = impl.Config(vocab_size=99, hidden_size=32).to_dict()
    config, unused = impl.Config.from_dict(
        data, return_unused_kwargs=True, num_labels=4, hidden_dropout_prob=0.3, not_a_key=1, _from_auto=True
    )
    assert unused == {"not_a_key": 1}
    assert config.num_labels == 4 and config.hidden_dropout_prob == 0.3 and config.vocab_size == 99
    assert not hasattr(config, "not_a_key") and not hasattr(config, "return_unused_kwargs")
    plain = impl.Config.from_dict(data, num_labels=4)  # without it: the config alone
    assert isinstance(plain, impl.Config) and plain.num_labels == 4  # the keyword wins over the dict's id2label


def test_autoconfig_reads_a_folder_through_our_config_class(tmp_path, monkeypatch):
    """With our class standing in for transformers' (as a registration does), AutoConfig's
    from_pretrained(return_unused_kwargs=True) path builds ours."""
    import transformers.models.biogpt as hf_biogpt

    ours_module.BioGptConfig(vocab_size=99, hidden_size=32).save_pretrained(tmp_path)
    monkeypatch.setattr(hf_biogpt, "BioGptConfig", ours_module.BioGptConfig)
    config, unused = transformers.AutoConfig.from_pretrained(tmp_path, return_unused_kwargs=True, num_labels=42, foo=1)
    assert isinstance(config, ours_module.BioGptConfig) and config.num_labels == 42 and unused == {"foo": 1}
