"""Tokenizer parity with transformers' BioGptTokenizer (ids and decoded text), offsets, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biogpt.model import BioGptTokenizer, VocabularyError
from biogpt.model.tokenizer import _unescape

from tests.helpers import FIXTURES, ROOT, write_hf_vocab

LEARNED = [f"learned{i}" for i in range(1, 10)]


def assert_parity(ours, ref, texts):
    mismatches = []
    for text in texts:
        ids = ours(text)["input_ids"]
        ref_ids = ref(text)["input_ids"]
        if ids != ref_ids:
            mismatches.append(("ids", text[:80]))
            continue
        for skip in (False, True):
            if ours.decode(ids, skip_special_tokens=skip) != ref.decode(ref_ids, skip_special_tokens=skip):
                mismatches.append((f"decode skip={skip}", text[:80]))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, e.g. {mismatches[:3]}"


# ------------------------------------------------------------------ parity
def test_bundled_vocabulary_matches_hub_layout(tokenizer, hf_vocab_dir, tmp_path):
    assert len(tokenizer) == tokenizer.vocab_size == 42384
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads((hf_vocab_dir / "vocab.json").read_text())


def test_tricky_strings_parity(tokenizer, hf_tokenizer, tricky_strings):
    assert_parity(tokenizer, hf_tokenizer, tricky_strings)


def test_fixture_abstracts_parity(tokenizer, hf_tokenizer):
    docs = json.loads((FIXTURES / "bc5cdr_test_sample.json").read_text(encoding="utf-8"))
    texts = [d["title"] + " " + d["abstract"] for d in docs.values()]
    assert_parity(tokenizer, hf_tokenizer, texts + [t.lower() for t in texts])


def _shared_texts(data: Path) -> list[str]:
    texts: list[str] = []
    for split in ("train", "valid", "test"):
        for doc in json.loads((data / "BC5CDR" / f"{split}.json").read_text()).values():
            texts += [doc["title"], doc["abstract"], doc["title"] + " " + doc["abstract"]]
        for doc in json.loads((data / "DDI" / f"{split}.json").read_text()).values():
            texts.append(doc["abstract"])
    for doc in json.loads((data / "KD-DTI" / "valid.json").read_text()).values():
        texts.append(doc["title"] + " " + doc["abstract"])
    for doc in json.loads((data / "PubMedQA" / "ori_pqal.json").read_text()).values():
        texts += [doc["QUESTION"], " ".join(doc["CONTEXTS"]), doc["LONG_ANSWER"]]
    return texts


def test_shared_corpora_parity(tokenizer, hf_tokenizer, shared_data):
    texts = _shared_texts(shared_data)
    assert len(texts) > 8000
    assert_parity(tokenizer, hf_tokenizer, texts)


def test_biogpt_large_bundled_parity(tmp_path):
    transformers = pytest.importorskip("transformers")
    large = BioGptTokenizer.from_pretrained("microsoft/BioGPT-Large")
    assert len(large) == 57717 and large.model_max_length == 2048
    base = ROOT / "model" / "vocab" / "biogpt-large"
    hf_dir = write_hf_vocab(base / "dict.txt", base / "bpecodes", tmp_path)
    ref = transformers.BioGptTokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
    docs = json.loads((FIXTURES / "bc5cdr_test_sample.json").read_text(encoding="utf-8"))
    texts = json.loads((FIXTURES / "tricky_strings.json").read_text(encoding="utf-8"))
    assert_parity(large, ref, texts + [d["title"] + " " + d["abstract"] for d in docs.values()])


def test_bundled_loads_with_network_off(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the bundled vocabulary must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    assert tok("COVID-19 is")["input_ids"] == [2, 4805, 9, 656, 21]


# ------------------------------------------------------------------ batching
def test_padding_truncation_tensors_match_reference(tokenizer, hf_tokenizer):
    texts = ["COVID-19 is", "Aspirin induced asthma in a 45-year-old woman with hypertension .", "p53"]
    for kwargs in (
        dict(padding=True),
        dict(padding=True, padding_side="left"),
        dict(padding="max_length", max_length=20),
        dict(padding=True, truncation=True, max_length=5),
        dict(truncation=True, max_length=4),
        dict(padding=True, pad_to_multiple_of=8),
    ):
        ours = tokenizer(texts, return_tensors="pt", **kwargs) if kwargs.get("padding") else tokenizer(texts, **kwargs)
        ref = hf_tokenizer(texts, return_tensors="pt", **kwargs) if kwargs.get("padding") else hf_tokenizer(texts, **kwargs)
        for key in ("input_ids", "attention_mask"):
            a, b = ours[key], ref[key]
            assert (a.tolist() if hasattr(a, "tolist") else a) == (b.tolist() if hasattr(b, "tolist") else b), (kwargs, key)
    pair = tokenizer("question ?", "context .")["input_ids"]
    assert pair == hf_tokenizer("question ?", "context .")["input_ids"]
    enc = tokenizer("COVID-19 is", return_tensors="pt")
    assert enc.input_ids.shape == (1, 5) and enc.attention_mask.sum() == 5
    with pytest.raises(ValueError, match="padding=True"):
        tokenizer(texts, return_tensors="pt")


def test_batch_decode(tokenizer, hf_tokenizer):
    enc = tokenizer(["COVID-19 is", "a \"quoted\" term [1]"], padding=True, return_tensors="pt")
    assert tokenizer.batch_decode(enc.input_ids, skip_special_tokens=True) == hf_tokenizer.batch_decode(
        enc.input_ids, skip_special_tokens=True
    )
    assert tokenizer.batch_decode(enc.input_ids, skip_special_tokens=True) == ["COVID-19 is", 'a "quoted" term [1]']


# ------------------------------------------------------------------ added tokens
def test_learned_prompt_tokens_atomic_and_saved(tokenizer, hf_vocab_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt", extra_symbols=LEARNED)
    assert len(tok) == 42393
    assert tok.convert_tokens_to_ids(LEARNED) == list(range(42384, 42393))
    text = "aspirin learned1 learned2 learned9 causes asthma learned10"
    ids = tok(text)["input_ids"]
    assert 42384 in ids and 42385 in ids and 42392 in ids

    ref = transformers.BioGptTokenizer(str(hf_vocab_dir / "vocab.json"), str(hf_vocab_dir / "merges.txt"))
    ref.add_tokens(LEARNED)
    assert ids == ref(text)["input_ids"]
    assert tok.decode(ids) == ref.decode(ids)

    tok.save_pretrained(tmp_path)
    reloaded_ref = transformers.BioGptTokenizer.from_pretrained(str(tmp_path))
    assert reloaded_ref(text)["input_ids"] == ids and len(reloaded_ref) == 42393
    reloaded = BioGptTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == ids and len(reloaded) == 42393


def test_save_pretrained_loads_in_transformers(tokenizer, tmp_path, tricky_strings):
    transformers = pytest.importorskip("transformers")
    tokenizer.save_pretrained(tmp_path)
    ref = transformers.BioGptTokenizer.from_pretrained(str(tmp_path))
    assert ref.model_max_length == 1024
    assert_parity(tokenizer, ref, tricky_strings)
    again = BioGptTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_fairseq_directory(tmp_path):
    base = ROOT / "model" / "vocab" / "biogpt"
    (tmp_path / "dict.txt").write_bytes((base / "dict.txt").read_bytes())
    (tmp_path / "bpecodes").write_bytes((base / "bpecodes").read_bytes())
    tok = BioGptTokenizer.from_pretrained(tmp_path)
    assert tok("COVID-19 is")["input_ids"] == [2, 4805, 9, 656, 21]


# ------------------------------------------------------------------ offsets
def _check_offsets(tok: BioGptTokenizer, text: str) -> None:
    enc = tok(text, return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert len(enc["offset_mapping"]) == len(tokens)
    for index, (token, (start, end)) in enumerate(zip(tokens, enc["offset_mapping"])):
        if index == 0:  # the leading </s> added by the tokenizer covers no text
            assert token == "</s>" and start == end == 0
            continue
        if token in tok.added_tokens_encoder and text[start:end] != token:
            assert token == "<unk>" and end > start  # an unknown piece still spans its text
            continue
        if token in tok.added_tokens_encoder:
            continue
        piece = token[:-4] if token.endswith("</w>") else token
        if piece == "@-@":
            assert text[start:end] == "-" or text[start:end] == "@-@"
            continue
        surface, _ = _unescape(piece)
        if "&" in piece and surface == piece:  # a fragment of an escape sequence: one character
            assert end - start == 1 and text[start:end] in "&|<>'\"[]"
            continue
        # a span may include ASCII control characters that Moses deletes inside a word
        assert re.sub(r"[\x00-\x1f]", "", text[start:end]) == surface, (token, text[start:end])
        assert 0 <= start < end <= len(text)


def test_offsets_on_tricky_strings(tokenizer, tricky_strings):
    for text in tricky_strings:
        _check_offsets(tokenizer, text)


def test_offsets_example(tokenizer):
    text = 'Naloxone reverses the "antihypertensive" effect of clonidine.'
    enc = tokenizer(text, return_offsets_mapping=True)
    spans = [text[a:b] for a, b in enc["offset_mapping"][1:]]
    assert "".join(spans).replace(" ", "") == text.replace(" ", "")


ALPHABET = st.sampled_from(
    list("abcXYZ019 .,;:-–—()[]{}<>&|'\"/+=%µ±αβγΩ°×\t\n\x01") + ["@-@", "&amp;", "Ca2+", "IL-6", "...", "  ", "</s>", "e.g."]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_offsets_property(tokenizer, text):
    _check_offsets(tokenizer, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_ids_property_against_reference(tokenizer, hf_tokenizer, text):
    assert tokenizer(text)["input_ids"] == hf_tokenizer(text)["input_ids"]
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == hf_tokenizer.decode(ids)


# ------------------------------------------------------------------ errors
def test_missing_and_malformed_vocabulary(tmp_path):
    with pytest.raises(VocabularyError, match=r"no tokenizer files; expected vocab.json \+ merges.txt"):
        BioGptTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a</w>": 0}')
    with pytest.raises(VocabularyError, match=r"merges.txt: BPE merges file not found"):
        BioGptTokenizer.from_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("a b\n")
    # a vocabulary without the special tokens gets them after its last id, as transformers does
    tok = BioGptTokenizer.from_pretrained(tmp_path)
    assert tok.added_tokens_encoder == {"<s>": 1, "</s>": 2, "<unk>": 3, "<pad>": 4} and len(tok) == 5
    (tmp_path / "vocab.json").write_text('["not", "an", "object"]')
    with pytest.raises(VocabularyError, match=r"vocab.json: expected a JSON object, found list"):
        BioGptTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": "zero"}')
    with pytest.raises(VocabularyError, match=r"vocab.json: expected a JSON object of token -> integer id"):
        BioGptTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text("{oops")
    with pytest.raises(VocabularyError, match=r"vocab.json: not valid JSON"):
        BioGptTokenizer.from_pretrained(tmp_path)

    fs = tmp_path / "fairseq"
    fs.mkdir()
    (fs / "dict.txt").write_text("the 10\nbroken-line-without-count\n")
    (fs / "bpecodes").write_text("t h 5\n")
    with pytest.raises(VocabularyError, match=r"dict.txt, line 2: expected 'word count'"):
        BioGptTokenizer.from_pretrained(fs)
    (fs / "dict.txt").write_text("the 10\n")
    (fs / "bpecodes").write_text("t h 5\nonly-one-field\n")
    with pytest.raises(VocabularyError, match=r"bpecodes, line 2: expected a BPE merge"):
        BioGptTokenizer.from_pretrained(fs)
    (fs / "bpecodes").unlink()
    with pytest.raises(VocabularyError, match=r"bpecodes: BPE merges file not found"):
        BioGptTokenizer.from_pretrained(fs)


def test_offsets_around_single_word_and_strip_tokens(hf_vocab_dir):
    """An lstrip + single_word added token touching a word is tokenized with that word (as in
    transformers); the joined piece is not contiguous in the text (the stripped newline sits
    inside it), and every span still points at the characters it came from."""
    from biogpt.model.tokenizer import AddedToken

    tok = BioGptTokenizer.from_pretrained(hf_vocab_dir)
    tok.add_tokens([AddedToken("<x>", single_word=True, lstrip=True, rstrip=True)])
    for text in ("aspirin\n<x>therapy", "aspirin <x> therapy", "<x>\ttherapy", "aspirin<x>"):
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        spans = enc["offset_mapping"]
        assert spans == sorted(spans) and all(a < b for a, b in spans)
        covered = {i for a, b in spans for i in range(a, b)}
        assert covered == {i for i, ch in enumerate(text) if not ch.isspace()}
        assert ("<x>" in tok.convert_ids_to_tokens(enc["input_ids"])) == (text == "aspirin <x> therapy")
