"""Our BioGptTokenizer against transformers' on the same files: the slow-tokenizer API a
transformers user calls, in the shape of transformers' BioGPT tokenizer tests
(tests/models/biogpt/test_tokenization_biogpt.py and the common tokenizer tests).

Every test runs twice: on the bundled BioGPT vocabulary (written out as vocab.json + merges.txt)
and on a tiny vocabulary built from scratch as the upstream test builds one (no <s>, </s>, <pad>:
both tokenizers append them). Both tokenizers are constructed the transformers way,
`BioGptTokenizer(vocab_file, merges_file)`, and every output is compared whole: ids, masks,
lengths, overflow, and tensors by kind, dtype, shape and values.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from biogpt.model import BioGptTokenizer
from biogpt.model.tokenizer import AddedToken

transformers = pytest.importorskip("transformers")

# Adapted from Sennrich et al. 2015, as transformers' BioGPT tokenizer test builds it.
TINY_VOCAB = [
    "l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "w</w>", "r</w>", "t</w>",
    "lo", "low", "er</w>", "low</w>", "lowest</w>", "newer</w>", "wider</w>", "<unk>",
]
TINY_MERGES = ["l o 123", "lo w 1456", "e r</w> 1789", ""]

TEXTS = {
    "bundled": [
        "COVID-19 is",
        "Aspirin induced asthma in a 45-year-old woman with hypertension.",
        "p53",
        'Naloxone reverses the "antihypertensive" effect of clonidine [1].',
    ],
    "tiny": ["lower newer", "low", "lowest wider newer lower low", "wide rows"],
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-vocab")
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(TINY_VOCAB)}))
    (directory / "merges.txt").write_text("\n".join(TINY_MERGES))
    return directory


@pytest.fixture(params=["bundled", "tiny"])
def vocab(request: pytest.FixtureRequest, hf_vocab_dir: Path, tiny_dir: Path) -> tuple[str, Path]:
    return request.param, hf_vocab_dir if request.param == "bundled" else tiny_dir


@pytest.fixture
def pair(vocab: tuple[str, Path]) -> tuple[BioGptTokenizer, Any, list[str]]:
    """(ours, transformers', texts), both built positionally from the same two files."""
    name, directory = vocab
    files = (str(directory / "vocab.json"), str(directory / "merges.txt"))
    return BioGptTokenizer(*files), transformers.BioGptTokenizer(*files), TEXTS[name]


def norm(value: Any) -> Any:
    """A comparable form: tensors and arrays keep their kind, dtype and shape."""
    if isinstance(value, torch.Tensor):
        return ("pt", str(value.dtype), tuple(value.shape), value.tolist())
    if isinstance(value, np.ndarray):
        return ("np", str(value.dtype), value.shape, value.tolist())
    if isinstance(value, Mapping):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


def same(ours: Any, ref: Any) -> None:
    assert norm(ours) == norm(ref)


def both(ours: Any, ref: Any, call: Any) -> None:
    """`call(tokenizer)` gives equal results on both, or raises the same kind of error on both."""
    try:
        expected = call(ref)
    except Exception as exc:  # noqa: BLE001 - the reference's error kind is the expectation
        # transformers checks a batch's sizes with `assert` (a batch where only some items
        # overflow); ours raises ValueError there, which python -O does not strip
        expected_error = ValueError if isinstance(exc, AssertionError) else type(exc)
        with pytest.raises(expected_error):
            call(ours)
        return
    same(call(ours), expected)


# ------------------------------------------------------------------ construction
def test_full_tokenizer(tiny_dir: Path) -> None:
    """transformers' test_full_tokenizer, on both."""
    for cls in (BioGptTokenizer, transformers.BioGptTokenizer):
        tokenizer = cls(str(tiny_dir / "vocab.json"), str(tiny_dir / "merges.txt"))
        tokens = tokenizer.tokenize("lower")
        assert tokens == ["low", "er</w>"]
        assert tokenizer.convert_tokens_to_ids(tokens + ["<unk>"]) == [14, 15, 20]


def test_missing_special_tokens_are_appended(tiny_dir: Path) -> None:
    ours = BioGptTokenizer(str(tiny_dir / "vocab.json"), str(tiny_dir / "merges.txt"))
    ref = transformers.BioGptTokenizer(str(tiny_dir / "vocab.json"), str(tiny_dir / "merges.txt"))
    assert ours.added_tokens_encoder == ref.added_tokens_encoder == {"<unk>": 20, "<s>": 21, "</s>": 22, "<pad>": 23}
    assert (ours.bos_token_id, ours.eos_token_id, ours.unk_token_id, ours.pad_token_id) == (21, 22, 20, 23)
    # a vocabulary also without <unk>: it is appended after <s> and </s>, in transformers' order
    vocab = {t: i for i, t in enumerate(TINY_VOCAB[:-1])}
    ours = BioGptTokenizer(vocab, [tuple(m.split()[:2]) for m in TINY_MERGES if m])
    assert ours.added_tokens_encoder == {"<s>": 20, "</s>": 21, "<unk>": 22, "<pad>": 23}


def test_construction_attributes(pair: Any, vocab: tuple[str, Path]) -> None:
    ours, ref, _ = pair
    assert ours.init_kwargs == ref.init_kwargs
    assert len(ours) == len(ref) and ours.vocab_size == ref.vocab_size
    assert ours.get_vocab() == ref.get_vocab()
    assert ours.added_tokens_encoder == ref.added_tokens_encoder
    assert ours.get_added_vocab() == ref.get_added_vocab()
    assert {i: t.__getstate__() for i, t in ours.added_tokens_decoder.items()} == {
        i: t.__getstate__() for i, t in ref.added_tokens_decoder.items()
    }
    for attr in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{attr}_token") == getattr(ref, f"{attr}_token"), attr
        assert getattr(ours, f"{attr}_token_id") == getattr(ref, f"{attr}_token_id"), attr
    for attr in (
        "all_special_tokens", "all_special_ids", "special_tokens_map", "extra_special_tokens",
        "model_max_length", "padding_side", "truncation_side", "model_input_names", "is_fast",
        "clean_up_tokenization_spaces", "max_len_single_sentence", "max_len_sentences_pair",
        "vocab_files_names", "pad_token_type_id",
    ):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    for pair_ in (False, True):
        assert ours.num_special_tokens_to_add(pair=pair_) == ref.num_special_tokens_to_add(pair=pair_)
    name, directory = vocab
    files = (str(directory / "vocab.json"), str(directory / "merges.txt"))
    options = {"model_max_length": 42, "padding_side": "left", "truncation_side": "left"}
    ours, ref = BioGptTokenizer(*files, **options), transformers.BioGptTokenizer(*files, **options)
    assert ours.init_kwargs == ref.init_kwargs
    for attr in ("model_max_length", "padding_side", "truncation_side"):
        assert getattr(ours, attr) == getattr(ref, attr) == options[attr]


def test_special_token_setters(pair: Any) -> None:
    """transformers' test_tokenizers_common_ids_setters and ..._properties_unset, on both."""
    ours, ref, _ = pair
    some_id = next(iter(ref.get_vocab().values()))
    for tok in (ours, ref):
        token = tok.convert_ids_to_tokens(some_id, skip_special_tokens=False)
        for attr in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
            setattr(tok, attr + "_id", None)
            assert getattr(tok, attr) is None and getattr(tok, attr + "_id") is None
            setattr(tok, attr + "_id", some_id)
            assert getattr(tok, attr) == token and getattr(tok, attr + "_id") == some_id
        tok.extra_special_tokens_ids = []
        assert tok.extra_special_tokens == [] and tok.extra_special_tokens_ids == []
        tok.extra_special_tokens_ids = [some_id]
        assert tok.extra_special_tokens == [token] and tok.extra_special_tokens_ids == [some_id]
    assert ours.special_tokens_map == ref.special_tokens_map
    assert ours.all_special_ids == ref.all_special_ids


# ------------------------------------------------------------------ encoding
ENCODE_OPTIONS: list[dict[str, Any]] = [
    {},
    {"add_special_tokens": False},
    {"padding": True},
    {"padding": "max_length", "max_length": 12},
    {"padding": True, "pad_to_multiple_of": 8},
    {"padding": True, "padding_side": "left"},
    {"truncation": True, "max_length": 4},
    {"max_length": 3},
    {"padding": True, "truncation": True, "max_length": 5},
    {"padding": True, "truncation": True, "max_length": 6, "pad_to_multiple_of": 4},
    {"return_special_tokens_mask": True, "padding": True},
    {"return_length": True},
    {"return_length": True, "padding": "max_length", "max_length": 16},
    {"return_token_type_ids": True, "padding": True},
    {"return_attention_mask": False, "padding": True},
    {"return_overflowing_tokens": True, "truncation": True, "max_length": 4, "stride": 2},
    {"return_overflowing_tokens": True, "truncation": True, "max_length": 3, "stride": 0},
    {"padding": True, "return_tensors": "pt"},
    {"padding": True, "return_tensors": "np", "return_special_tokens_mask": True, "return_length": True},
    {"padding": "max_length", "max_length": 10, "return_tensors": "pt", "return_token_type_ids": True},
    {"return_tensors": "pt"},
    {"padding": True, "truncation": True, "max_length": 3, "return_overflowing_tokens": True, "return_tensors": "pt"},
]


@pytest.mark.parametrize("options", ENCODE_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_call_single_and_batch(pair: Any, options: dict[str, Any]) -> None:
    ours, ref, texts = pair
    both(ours, ref, lambda tok: tok(texts[1], **options))
    both(ours, ref, lambda tok: tok(texts, **options))
    both(ours, ref, lambda tok: tok(texts[:2], texts[2:], **options))
    both(ours, ref, lambda tok: tok([(texts[0], texts[3]), (texts[2], texts[1])], **options))


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pair_truncation(pair: Any, strategy: str, side: str) -> None:
    ours, ref, texts = pair
    ours.truncation_side = ref.truncation_side = side
    for max_length in (3, 5, 8, 40):
        for overflow in (False, True):
            call = lambda tok: tok(  # noqa: E731
                texts[2], texts[1], truncation=strategy, max_length=max_length,
                return_overflowing_tokens=overflow, stride=1,
            )
            both(ours, ref, call)
            both(ours, ref, lambda tok: tok(texts[2], truncation=strategy, max_length=max_length,
                                            return_overflowing_tokens=overflow, stride=1))


def test_encode(pair: Any) -> None:
    ours, ref, texts = pair
    for options in (
        {},
        {"add_special_tokens": False},
        {"truncation": True, "max_length": 4},
        {"padding": "max_length", "max_length": 12},
        {"return_tensors": "pt"},
        {"return_tensors": "np", "padding": "max_length", "max_length": 20},
        {"max_length": 3},
    ):
        both(ours, ref, lambda tok: tok.encode(texts[1], **options))
        both(ours, ref, lambda tok: tok.encode(texts[1], texts[0], **options))


def test_split_into_words_and_pretokenized(pair: Any) -> None:
    ours, ref, texts = pair
    words = [t.split() for t in texts]
    both(ours, ref, lambda tok: tok(words[1], is_split_into_words=True))
    both(ours, ref, lambda tok: tok(words, is_split_into_words=True, padding=True, return_tensors="pt"))
    both(ours, ref, lambda tok: tok(words[0], words[2], is_split_into_words=True, return_special_tokens_mask=True))
    both(ours, ref, lambda tok: tok(words[2], is_split_into_words=True, truncation=True, max_length=4))
    ids = ref.encode(texts[1], add_special_tokens=False)
    both(ours, ref, lambda tok: tok(ids))  # ids in: special tokens added, nothing re-tokenized
    both(ours, ref, lambda tok: tok.prepare_for_model(ids, ids[:2], return_special_tokens_mask=True))
    tokens = ref.tokenize(texts[1])
    both(ours, ref, lambda tok: tok.encode(tokens))
    both(ours, ref, lambda tok: tok(texts[0], text_target=texts[1]))


def test_offsets_of_split_words_are_within_each_word(tokenizer: BioGptTokenizer) -> None:
    """Ours only (the slow reference has no offsets): spans index into each word, as a fast
    tokenizer's do."""
    words = ["Aspirin", "-induced", "asthma"]
    enc = tokenizer(words, is_split_into_words=True, return_offsets_mapping=True)
    assert enc["input_ids"] == tokenizer(words, is_split_into_words=True)["input_ids"]
    assert len(enc["offset_mapping"]) == len(enc["input_ids"]) and enc["offset_mapping"][0] == (0, 0)
    batch = tokenizer([words, words[:1]], is_split_into_words=True, return_offsets_mapping=True, padding=True)
    assert batch["offset_mapping"][1][-1] == (0, 0) and len(batch["offset_mapping"][1]) == len(batch["input_ids"][1])


# ------------------------------------------------------------------ pad and collators
def test_pad(pair: Any) -> None:
    ours, ref, texts = pair
    for options in (
        {},
        {"return_special_tokens_mask": True, "return_token_type_ids": True},
    ):
        features = [dict(ref(t, **options)) for t in texts]
        for pad_options in (
            {},
            {"padding": "longest", "return_tensors": "pt"},
            {"padding": "max_length", "max_length": 24, "return_tensors": "np"},
            {"pad_to_multiple_of": 8, "padding_side": "left"},
            {"return_attention_mask": False},
            {"padding": False},
        ):
            both(ours, ref, lambda tok: tok.pad(features, **pad_options))
            both(ours, ref, lambda tok: tok.pad(tok(texts, **options), **pad_options))
        both(ours, ref, lambda tok: tok.pad(features[0], padding="max_length", max_length=30))
    # tensors in, tensors out (transformers converts to lists and back)
    tensors = [{k: torch.tensor(v) for k, v in ref(t).items()} for t in texts]
    both(ours, ref, lambda tok: tok.pad(tensors))
    arrays = [{k: np.array(v) for k, v in ref(t).items()} for t in texts]
    both(ours, ref, lambda tok: tok.pad(arrays))
    ours.padding_side = ref.padding_side = "left"
    both(ours, ref, lambda tok: tok.pad([dict(ref(t)) for t in texts], return_tensors="pt"))


def test_data_collators(pair: Any) -> None:
    ours, ref, texts = pair
    features = [dict(ref(t)) for t in texts]
    for make in (
        lambda tok: transformers.DataCollatorForLanguageModeling(tok, mlm=False),
        lambda tok: transformers.DataCollatorForLanguageModeling(tok, mlm=False, pad_to_multiple_of=8),
        lambda tok: transformers.DataCollatorWithPadding(tok),
        lambda tok: transformers.DataCollatorWithPadding(tok, padding="max_length", max_length=32),
        lambda tok: transformers.DataCollatorWithPadding(tok, return_tensors="np"),
    ):
        both(ours, ref, lambda tok: make(tok)([dict(f) for f in features]))
    # mlm needs a mask token: neither has one
    both(ours, ref, lambda tok: transformers.DataCollatorForLanguageModeling(tok, mlm=True))
    classified = [{**f, "labels": 1} for f in features]
    both(ours, ref, lambda tok: transformers.DataCollatorWithPadding(tok)([dict(f) for f in classified]))
    tagged = [{**f, "labels": list(range(len(f["input_ids"])))} for f in features]
    for side in ("right", "left"):
        ours.padding_side = ref.padding_side = side
        both(ours, ref, lambda tok: transformers.DataCollatorForTokenClassification(tok)([dict(f) for f in tagged]))
        both(
            ours, ref,
            lambda tok: transformers.DataCollatorForTokenClassification(tok, return_tensors="np")(
                [dict(f) for f in tagged]
            ),
        )


# ------------------------------------------------------------------ added and special tokens
def test_add_tokens(pair: Any) -> None:
    ours, ref, texts = pair
    results = []
    for tok in (ours, ref):
        before = len(tok)
        results.append([
            tok.add_tokens(["bim", "bambam"]),  # "bim" is a piece of the bundled vocabulary: not new there
            len(tok) - before,
            tok.add_tokens("bim"),
            tok.add_tokens(["lowest</w>"]),  # in the vocabulary: keeps its id, becomes atomic
            tok.add_tokens([transformers.AddedToken("<x>", lstrip=True, rstrip=True)]),
            tok.add_tokens(["<sp1>"], special_tokens=True),
            len(tok) - before,
        ])
    assert results[0] == results[1]
    assert results[0][-1] == results[0][0] + 2
    text = f"bim {texts[0]} bambam<x> <sp1>{texts[1]}"
    both(ours, ref, lambda tok: tok.tokenize(text))
    both(ours, ref, lambda tok: tok(text))
    both(ours, ref, lambda tok: tok.decode(tok(text)["input_ids"]))
    both(ours, ref, lambda tok: tok.decode(tok(text)["input_ids"], skip_special_tokens=True))
    both(ours, ref, lambda tok: tok.get_vocab())
    both(ours, ref, lambda tok: tok.all_special_tokens)
    both(ours, ref, lambda tok: tok.extra_special_tokens)
    both(ours, ref, lambda tok: tok.get_special_tokens_mask(tok(text)["input_ids"], already_has_special_tokens=True))
    both(ours, ref, lambda tok: (len(tok), tok.vocab_size))
    # our AddedToken works on ours exactly as transformers' does on transformers'
    assert ours.add_tokens([AddedToken("<y>", rstrip=True)]) == ref.add_tokens([transformers.AddedToken("<y>", rstrip=True)])
    both(ours, ref, lambda tok: tok("<y> low"))


def test_add_special_tokens(pair: Any) -> None:
    ours, ref, texts = pair
    for tok in (ours, ref):
        assert tok.add_special_tokens({"cls_token": "<cls>", "mask_token": "<mask>", "pad_token": "<pad>"}) == 2
        assert tok.add_special_tokens({"additional_special_tokens": ["<e1>", "<e2>"]}) == 2
        assert tok.add_special_tokens({"extra_special_tokens": ["<e3>"]}, replace_extra_special_tokens=False) == 1
    with pytest.raises(ValueError):
        ours.add_special_tokens({"not_a_token": "x"})
    for attr in ("cls_token", "mask_token", "cls_token_id", "mask_token_id", "all_special_tokens", "all_special_ids",
                 "special_tokens_map", "extra_special_tokens"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    text = f"<cls>{texts[0]} <mask> <e1>{texts[1]}<e3>"
    both(ours, ref, lambda tok: tok(text, return_special_tokens_mask=True))
    both(ours, ref, lambda tok: tok.decode(tok(text)["input_ids"], skip_special_tokens=True))
    both(ours, ref, lambda tok: len(tok))


def test_special_tokens_masks_and_types(pair: Any) -> None:
    ours, ref, texts = pair
    a = ref.encode(texts[0], add_special_tokens=False)
    b = ref.encode(texts[1], add_special_tokens=False)
    for call in (
        lambda tok: tok.get_special_tokens_mask(a),
        lambda tok: tok.get_special_tokens_mask(a, b),
        lambda tok: tok.get_special_tokens_mask(tok.build_inputs_with_special_tokens(a, b), already_has_special_tokens=True),
        lambda tok: tok.get_special_tokens_mask(a, b, already_has_special_tokens=True),
        lambda tok: tok.build_inputs_with_special_tokens(a),
        lambda tok: tok.build_inputs_with_special_tokens(a, b),
        lambda tok: tok.create_token_type_ids_from_sequences(a, b),
        lambda tok: tok.truncate_sequences(a, b, num_tokens_to_remove=2, truncation_strategy="only_second", stride=1),
    ):
        both(ours, ref, call)


# ------------------------------------------------------------------ decoding
def test_decode(pair: Any) -> None:
    ours, ref, texts = pair
    batch = ref(texts, padding=True, return_tensors="pt")["input_ids"]
    one = ref(texts[1])["input_ids"]
    for call in (
        lambda tok: tok.decode(one),
        lambda tok: tok.decode(one, skip_special_tokens=True),
        lambda tok: tok.decode(one, clean_up_tokenization_spaces=True),
        lambda tok: tok.decode(one[3]),
        lambda tok: tok.decode(torch.tensor(one)),
        lambda tok: tok.decode(np.array(one)),
        lambda tok: tok.decode(batch, skip_special_tokens=True),
        lambda tok: tok.batch_decode(batch),
        lambda tok: tok.batch_decode(batch.tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=True),
        lambda tok: tok.batch_decode([]),
        lambda tok: tok.convert_ids_to_tokens(one),
        lambda tok: tok.convert_ids_to_tokens(one, skip_special_tokens=True),
        lambda tok: tok.convert_tokens_to_string(tok.convert_ids_to_tokens(one)),
        lambda tok: tok.convert_tokens_to_ids(["<pad>", "not-in-vocab", "low"]),
    ):
        both(ours, ref, call)


# ------------------------------------------------------------------ saving
def test_save_vocabulary_same_files(pair: Any, tmp_path: Path) -> None:
    ours, ref, _ = pair
    (tmp_path / "ours").mkdir()
    (tmp_path / "ref").mkdir()
    mine = ours.save_vocabulary(str(tmp_path / "ours"), filename_prefix="x")
    theirs = ref.save_vocabulary(str(tmp_path / "ref"), filename_prefix="x")
    assert [Path(p).name for p in mine] == [Path(p).name for p in theirs]
    for a, b in zip(mine, theirs):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_save_pretrained_round_trip(pair: Any, tmp_path: Path) -> None:
    """transformers' test_save_and_load_tokenizer across the two implementations, both ways."""
    ours, ref, texts = pair
    for tok in (ours, ref):
        tok.model_max_length = 42
        tok.add_tokens(["bim", "bambam"])
        tok.add_special_tokens({"additional_special_tokens": ["new_additional_special_token"]})
    sample = f" He is very happy, UNwant\u00e9d,running bim {texts[1]} new_additional_special_token"
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(str(tmp_path / "ref"))
    for folder in ("ours", "ref"):
        loaded_ref = transformers.BioGptTokenizer.from_pretrained(str(tmp_path / folder))
        loaded_ours = BioGptTokenizer.from_pretrained(tmp_path / folder)
        for loaded in (loaded_ref, loaded_ours):
            assert loaded.encode(sample, add_special_tokens=False) == ref.encode(sample, add_special_tokens=False)
            assert loaded.get_vocab() == ref.get_vocab() and len(loaded) == len(ref)
            assert "new_additional_special_token" in loaded.extra_special_tokens
            assert loaded.model_max_length == 42
            assert loaded.all_special_ids == ref.all_special_ids
            assert loaded.decode(loaded.encode(sample), skip_special_tokens=True) == ref.decode(
                ref.encode(sample), skip_special_tokens=True
            )
        assert BioGptTokenizer.from_pretrained(tmp_path / folder, model_max_length=43).model_max_length == 43
    ours_config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    ref_config = json.loads((tmp_path / "ref" / "tokenizer_config.json").read_text())
    for key in ("added_tokens_decoder", "model_max_length", "bos_token", "eos_token", "sep_token", "unk_token",
                "pad_token", "extra_special_tokens", "tokenizer_class", "backend"):
        assert ours_config[key] == ref_config[key], key
    assert (tmp_path / "ours" / "added_tokens.json").read_text() == (tmp_path / "ref" / "added_tokens.json").read_text()


def test_pickle_keeps_added_tokens(pair: Any) -> None:
    ours, ref, texts = pair
    ours.add_tokens(["bim"])
    ours.add_special_tokens({"pad_token": "<padx>"})
    clone = pickle.loads(pickle.dumps(ours))
    text = f"bim {texts[0]} <padx>"
    assert clone(text, padding="max_length", max_length=30) == ours(text, padding="max_length", max_length=30)
    assert clone.pad_token_id == ours.pad_token_id == len(ours) - 1


def test_plain_path_equals_general_path(tokenizer: BioGptTokenizer, tricky_strings: list[str]) -> None:
    """Ours only: a plain call takes a short path; asking for the length (or anything else)
    takes the general one. Both give the same ids, masks and offsets."""
    texts = tricky_strings[:40]
    for add in (True, False):
        plain = tokenizer(texts, return_offsets_mapping=True, padding=True, add_special_tokens=add)
        general = tokenizer(texts, return_offsets_mapping=True, padding=True, add_special_tokens=add, return_length=True)
        general.pop("length")
        assert plain == general
        for text in texts[:10]:
            one = tokenizer(text, texts[-1], return_offsets_mapping=True, add_special_tokens=add)
            other = tokenizer(text, texts[-1], return_offsets_mapping=True, add_special_tokens=add, return_length=True)
            other.pop("length")
            assert one == other


# ------------------------------------------------------------------ added-token flags
FLAG_TEXTS = [
    "{a}low", "low{a}", "low{a}er", "low {a} er", "low {a}er", "low{a} er", "low\n{a}\tnewer",
    " {a} ", "{a}{b}low", "lo{a}w{b}er", "low  {a}  {b}  er", "{a} {b}", "{a}{a}{a}", "low {a}lower{b} newer",
]


@pytest.mark.parametrize("single_word", [False, True])
@pytest.mark.parametrize("strip", ["none", "lstrip", "rstrip", "both"])
def test_added_token_flags_split_as_transformers(pair: Any, single_word: bool, strip: str) -> None:
    """single_word, lstrip and rstrip applied where transformers' slow tokenizer applies them
    (a single_word token touching a word is not a token there: it is tokenized with that word),
    with a second, plain added token next to it; ids, tokens and decoding compared whole."""
    ours, ref, texts = pair
    flags = {"single_word": single_word, "lstrip": strip in ("lstrip", "both"), "rstrip": strip in ("rstrip", "both")}
    assert ours.add_tokens([AddedToken("<a>", **flags), "<b>"]) == ref.add_tokens(
        [transformers.AddedToken("<a>", **flags), "<b>"]
    )
    for template in FLAG_TEXTS + [f"{{a}}{texts[0]}{{b}} {texts[1]}{{a}}"]:
        text = template.format(a="<a>", b="<b>")
        both(ours, ref, lambda tok: tok.tokenize(text))
        both(ours, ref, lambda tok: tok(text))
        both(ours, ref, lambda tok: tok.decode(tok(text)["input_ids"]))
        # ours only: offsets stay on the original characters, whitespace a strip removed skipped
        encoded = ours(text, return_offsets_mapping=True, add_special_tokens=False)
        assert encoded["input_ids"] == ours(text, add_special_tokens=False)["input_ids"]
        for token, (start, end) in zip(ours.convert_ids_to_tokens(encoded["input_ids"]), encoded["offset_mapping"]):
            assert 0 <= start <= end <= len(text)
            if token in ("<a>", "<b>"):
                assert text[start:end] == token


def test_added_token_flags_survive_save_and_load(tiny_dir: Path, tmp_path: Path) -> None:
    """The flags are saved in added_tokens_decoder and applied again after loading, by both."""
    ours = BioGptTokenizer(str(tiny_dir / "vocab.json"), str(tiny_dir / "merges.txt"))
    ours.add_tokens([AddedToken("<a>", single_word=True, rstrip=True)])
    ours.save_pretrained(tmp_path)
    text = "low<a>er <a> newer"
    reloaded = [BioGptTokenizer.from_pretrained(tmp_path), transformers.BioGptTokenizer.from_pretrained(str(tmp_path))]
    assert reloaded[0].tokenize(text) == reloaded[1].tokenize(text) == ours.tokenize(text)
    assert reloaded[0](text) == reloaded[1](text).data


# ------------------------------------------------------------------ loading, keywords, warnings
def test_init_kwargs_after_from_pretrained(vocab: tuple[str, Path], tmp_path: Path) -> None:
    """init_kwargs of a tokenizer loaded from a local folder: transformers' keys, loader's ones
    included (is_local, local_files_only, tokenizer_file), with or without extra keywords."""
    _, directory = vocab
    for options in ({}, {"model_max_length": 42, "padding_side": "left"}):
        ours = BioGptTokenizer.from_pretrained(directory, **options)
        ref = transformers.BioGptTokenizer.from_pretrained(str(directory), **options)
        assert ours.init_kwargs == ref.init_kwargs
    # and re-saved, both write the loader's keys into tokenizer_config.json
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(str(tmp_path / "ref"))
    configs = [json.loads((tmp_path / side / "tokenizer_config.json").read_text()) for side in ("ours", "ref")]
    for key in ("is_local", "local_files_only"):
        assert configs[0][key] == configs[1][key]
    assert "tokenizer_file" not in configs[0] and "tokenizer_file" not in configs[1]

    def flags(init_kwargs: dict[str, Any]) -> dict[str, Any]:
        # a saved special token comes back as an AddedToken (its flags compared, not its class)
        return {k: v.__getstate__() if hasattr(v, "content") else v for k, v in init_kwargs.items()}

    for side in ("ours", "ref"):  # a saved folder, whoever saved it: the same init_kwargs
        loaded = [
            BioGptTokenizer.from_pretrained(tmp_path / side),
            transformers.BioGptTokenizer.from_pretrained(str(tmp_path / side)),
        ]
        assert flags(loaded[0].init_kwargs) == flags(loaded[1].init_kwargs)
        assert all(hasattr(loaded[0].init_kwargs[k], "content") for k in ("bos_token", "eos_token", "pad_token"))


@pytest.mark.parametrize("key", ["add_special_tokens", "get_vocab", "encode"])
def test_keyword_naming_a_method_is_refused(tiny_dir: Path, key: str) -> None:
    for cls in (BioGptTokenizer, transformers.BioGptTokenizer):
        with pytest.raises(AttributeError, match=f"{key} conflicts with the method {key}"):
            cls.from_pretrained(str(tiny_dir), **{key: True})


def test_unused_call_keywords_and_targets(pair: Any) -> None:
    """A seq2seq caller's keywords (src_lang, ...) are accepted and unused; targets become labels."""
    ours, ref, texts = pair
    call = dict(text_target=texts[:2], max_length=3, max_target_length=5, src_lang="en_XX", return_tensors="pt")
    both(ours, ref, lambda tok: tok(texts[:2], **call))
    both(ours, ref, lambda tok: tok(texts[0], tgt_lang="ro_RO"))


def test_too_long_sequence_warns_once_under_transformers_logger(
    pair: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """transformers' warning for an untruncated sequence longer than model_max_length: same
    message, same logger name, once per tokenizer; none when truncating or with verbose=False."""
    ours, ref, texts = pair
    text = " ".join(texts * 20)
    messages: list[list[str]] = []
    for tok in (ours, ref):
        tok.model_max_length = 10
        caplog.clear()
        with caplog.at_level("WARNING", logger="transformers"):
            tok(text, verbose=False)
            tok(text, max_length=10, truncation=True)
            tok([text, texts[0]], padding=True)
            tok(text)
            tok(text, text)
        messages.append([r.getMessage() for r in caplog.records if r.name.startswith("transformers")])
    assert messages[0] == messages[1]
    assert len(messages[0]) == 1 and messages[0][0].startswith("Token indices sequence length is longer")


# ------------------------------------------------------------------ chat templates
CHAT = [
    {"role": "system", "content": "system message"},
    {"role": "user", "content": "low lower"},
    {"role": "assistant", "content": "newer wider "},
]
TEMPLATES = {
    "plain": "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}",
    "generation": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    "controls": (
        "{%- for m in messages %}{{- m.role }}{%- if loop.first %}{%- continue %}{%- endif %}"
        "{{- ' ' + m.content | tojson }}{%- endfor %}"
    ),
}


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_apply_chat_template(pair: Any, name: str) -> None:
    """Rendering (and encoding the render without special tokens) as transformers does, for one
    conversation and a batch, with a generation prompt and with the final message continued."""
    ours, ref, _ = pair
    template = TEMPLATES[name]
    for options in (
        {"tokenize": False},
        {"tokenize": False, "add_generation_prompt": True},
        {"tokenize": True, "return_dict": False},
        {"tokenize": True, "return_dict": True},
        {"tokenize": True, "padding": True, "return_tensors": "pt"},
    ):
        both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, chat_template=template, **options))
        both(ours, ref, lambda tok: tok.apply_chat_template([CHAT, CHAT[:2]], chat_template=template, **options))
    both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, chat_template=template, tokenize=False,
                                                       continue_final_message=True))
    both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, chat_template=template, continue_final_message=True,
                                                       add_generation_prompt=True))
    both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, tokenize=False))  # no template at all
    for tok in (ours, ref):
        tok.chat_template = {"default": TEMPLATES["plain"], "other": template}
    both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, tokenize=False))
    both(ours, ref, lambda tok: tok.apply_chat_template(CHAT, chat_template="other", tokenize=False))


def test_chat_templates_saved_and_loaded_as_transformers(tiny_dir: Path, tmp_path: Path) -> None:
    """Templates go to chat_template.jinja and additional_chat_templates/NAME.jinja, never into
    tokenizer_config.json; a .jinja file wins over a template left in the config; each
    implementation loads the other's folder with the same templates."""
    files = (str(tiny_dir / "vocab.json"), str(tiny_dir / "merges.txt"))
    ours, ref = BioGptTokenizer(*files), transformers.BioGptTokenizer(*files)
    for templates in (TEMPLATES["plain"], {"default": TEMPLATES["plain"], "second": TEMPLATES["generation"]}):
        saved: dict[str, set[str]] = {}
        for side, tok in (("ours", ours), ("ref", ref)):
            tok.chat_template = templates
            folder = tmp_path / f"{side}-{len(templates)}"
            written = tok.save_pretrained(str(folder))
            relative = (str(Path(f).relative_to(folder)) for f in written)
            saved[side] = {f for f in relative if "chat_template" in f}
            assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
            for cls in (BioGptTokenizer, transformers.BioGptTokenizer):
                assert cls.from_pretrained(str(folder)).chat_template == templates
        assert saved["ours"] == saved["ref"]
    # a template in the config loses to the file, and a config-only template (a list) loads
    folder = tmp_path / f"ours-{len(templates)}"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": "config"}, {"name": "x", "template": "x"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    for cls in (BioGptTokenizer, transformers.BioGptTokenizer):
        assert cls.from_pretrained(str(folder)).chat_template == templates
    for path in (folder / "chat_template.jinja", *(folder / "additional_chat_templates").iterdir()):
        path.unlink()
    (folder / "additional_chat_templates").rmdir()
    for cls in (BioGptTokenizer, transformers.BioGptTokenizer):
        assert cls.from_pretrained(str(folder)).chat_template == {"default": "config", "x": "x"}
