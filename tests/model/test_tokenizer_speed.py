"""The tokenizer's speed machinery changes nothing observable: the shipped BPE table, its
fingerprint guard, the per-chunk caches and the memoised Moses path give the reference's ids.

No timing is asserted here (benchmarks/tokenizer_speed.py measures); only a --slow smoke run
of the benchmark checks it works end to end.
"""

from __future__ import annotations

import importlib
import json

import pytest
from hypothesis import HealthCheck, given, settings

from biogpt.model import BioGptTokenizer
from biogpt.model.build_tables import table_text
from biogpt.model.vocab_files import BPE_TABLE_FILE, VOCAB_DIR, load_bpe_table, read_merges

from tests.helpers import FIXTURES
from tests.strategies import TEXT


@pytest.mark.parametrize("folder", ["biogpt", "biogpt-large"])
def test_committed_tables_are_current(folder):
    """The shipped file is exactly what `python -m biogpt.model.build_tables` generates, entries being
    computed by BPE with no table."""
    path = VOCAB_DIR / folder / BPE_TABLE_FILE
    assert path.is_file(), "run python -m biogpt.model.build_tables"
    assert path.read_text(encoding="utf-8") == table_text(VOCAB_DIR / folder)
    assert path.stat().st_size < 2_000_000


def test_table_words_match_transformers(hf_tokenizer):
    merges = read_merges(VOCAB_DIR / "biogpt" / "bpecodes")
    words, table = load_bpe_table(merges)
    assert len(words) > 30_000
    sample = sorted(words)[::7] + sorted(table)
    for word in sample:
        expected = table.get(word, (word + "</w>",))
        assert tuple(hf_tokenizer.bpe(word).split(" ")) == expected, word


def test_table_only_for_its_own_merges(tmp_path):
    base = VOCAB_DIR / "biogpt"
    merges = read_merges(base / "bpecodes")
    assert load_bpe_table(merges)[0]
    swapped = list(merges)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert load_bpe_table(swapped) == (frozenset(), {})
    assert load_bpe_table(merges[:-1]) == (frozenset(), {})
    # The right count is not enough: the hash must match too.
    changed = list(merges)
    changed[-1] = ("x", "y")
    assert load_bpe_table(changed) == (frozenset(), {})


def test_hub_layout_files_use_the_table(hf_vocab_dir):
    tok = BioGptTokenizer.from_files(hf_vocab_dir / "vocab.json", hf_vocab_dir / "merges.txt")
    assert "patients" in tok._bpe_words


def test_no_table_gives_the_same_ids(tokenizer):
    docs = json.loads((FIXTURES / "bc5cdr_test_sample.json").read_text(encoding="utf-8"))
    texts = [d["title"] + " " + d["abstract"] for d in docs.values()]
    plain = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    plain._bpe_words, plain._bpe_table = frozenset(), {}
    fresh = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    for text in texts:
        expected = plain(text)["input_ids"]
        assert fresh(text)["input_ids"] == expected
        assert tokenizer(text)["input_ids"] == expected
        with_offsets = fresh(text, return_offsets_mapping=True)
        assert with_offsets["input_ids"] == expected
        assert len(with_offsets["offset_mapping"]) == len(expected)


def test_moses_tokens_are_sacremoses(tokenizer):
    text = "Famotidine-associated delirium (n=6), i.e. few; p<0.05 vs. 3.5 mg/kg. No. 5 ... it's 'x' \"y\"."
    expected = tokenizer._moses.tokenize(text, aggressive_dash_splits=True, return_str=False, escape=True)
    assert tokenizer._moses_tokenize(text) == expected


def test_added_tokens_after_caching():
    text = "the patients received famotidine. learned1 famotidine"
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    tok(text)  # fill every cache
    tok.add_tokens(["famotidine", "learned1"])
    fresh = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    fresh.add_tokens(["famotidine", "learned1"])
    assert tok(text)["input_ids"] == fresh(text)["input_ids"]
    assert tok(text, return_offsets_mapping=True) == fresh(text, return_offsets_mapping=True)


def test_fallback_text_matches_reference(tokenizer, hf_tokenizer):
    """A text the memoised Moses hands to sacremoses (a chunk ending and the next starting with
    an apostrophe) still encodes like transformers."""
    for text in ["1' '1", "the patients' 'improvement' was 5' '3", "x' 'y. Mr. A"]:
        assert tokenizer(text)["input_ids"] == hf_tokenizer(text)["input_ids"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT)
def test_adversarial_ids_against_reference(tokenizer, hf_tokenizer, text):
    assert tokenizer(text)["input_ids"] == hf_tokenizer(text)["input_ids"]


@pytest.mark.slow
def test_benchmark_runs(shared_data):
    speed = importlib.import_module("benchmarks.tokenizer_speed")
    result = speed.measure(1)  # raises if the two tokenizers' id counts differ
    assert result["abstracts"] == 500
    assert len(result["ours"]) == len(result["theirs"]) == 1
    assert result["ratio"] > 0


def test_tokenizer_pickles(tokenizer):
    import pickle

    text = "Famotidine-associated delirium. A series of six cases."
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone(text, return_offsets_mapping=True) == tokenizer(text, return_offsets_mapping=True)


def test_group_cache_limit(monkeypatch, tokenizer):
    import biogpt.model.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "_MAX_CACHE", 2)
    tok = BioGptTokenizer.from_pretrained("microsoft/biogpt")
    for text in ["a b c d e f.", "g h, i (j) k.", "a b c d e f."]:
        assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
