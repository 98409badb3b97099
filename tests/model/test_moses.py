"""The memoised Moses tokenizer (model/moses.py) against sacremoses itself, the oracle.

Why so adversarial: the fast path is only allowed because it is identical for every input;
its correctness argument is about context characters at chunk edges, so the strings here are
dense in edges (short chunks, quotes, dots, commas, dashes, prefixes, control characters).
"""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sacremoses = pytest.importorskip("sacremoses")

from biogpt.model.moses import FastMosesTokenizer, _replacer  # noqa: E402
from tests.strategies import PIECES, TEXT  # noqa: E402

REFERENCE = sacremoses.MosesTokenizer(lang="en")


def reference(text: str) -> list[str]:
    return REFERENCE.tokenize(text, aggressive_dash_splits=True, return_str=False, escape=True)


@pytest.fixture(scope="module")
def fast() -> FastMosesTokenizer:
    # One shared instance: memo hits from earlier examples are part of what is tested.
    return FastMosesTokenizer()


UNICODE = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_adversarial_pieces_match_sacremoses(fast: FastMosesTokenizer, text: str) -> None:
    assert fast.tokenize(text) == reference(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(UNICODE, st.sampled_from(PIECES)), max_size=8).map(" ".join))
def test_arbitrary_unicode_matches_sacremoses(fast: FastMosesTokenizer, text: str) -> None:
    assert fast.tokenize(text) == reference(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list(".,'` -aA1Dx\"")), max_size=30))
def test_punctuation_dense_matches_sacremoses(fast: FastMosesTokenizer, text: str) -> None:
    assert fast.tokenize(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_fresh_instance_matches(text: str) -> None:
    """Without memo hits from other texts (the first computation of every chunk)."""
    assert FastMosesTokenizer().tokenize(text) == reference(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x01",
        "a",
        "Mr. Smith",
        "Mr. smith",
        "He is No. 1.",
        "see No. x",
        "pp. 12",
        "Art. b",
        "it ends.'",
        "x .'",
        ".'",
        "a. ..b",
        "a. ...",
        "word.",
        "a , b ,5 ,",
        "5 ,",
        ",5",
        "1,",
        "x ' ' y",
        "x' 'y",
        "1' '1",
        "' ' '",
        "'a 'b",
        "DOTMULTI DOTMULTI.",
        "a..b..",
        "a\x01b c\x02 \x03d",
        "U.S. Army",
        "U.S. army",
        "e.g. A",
        "i.e. 5",
        "Fig. 3",
        "fig. 3a.",
        "3.5 , 1,000.",
    ],
)
def test_edge_cases(fast: FastMosesTokenizer, text: str) -> None:
    assert fast.tokenize(text) == reference(text)
    assert FastMosesTokenizer().tokenize(text) == reference(text)


def test_boundary_quote_clash_falls_back() -> None:
    """The one case chunk-wise processing cannot decide: it must defer to sacremoses."""
    fast = FastMosesTokenizer()
    assert fast.tokenize("1' '1") == reference("1' '1")
    assert fast.fallbacks == 1
    assert fast.tokenize("the patients' 'improvement'") == reference("the patients' 'improvement'")
    assert fast.fallbacks == 2
    fast.tokenize("patients' improvement")
    assert fast.fallbacks == 2


def test_chunks_flatten_to_tokens(fast: FastMosesTokenizer) -> None:
    text = "Famotidine-associated delirium. A series of six cases (n=6), i.e. few."
    groups = fast.tokenize_chunks(text)
    assert [t for g in groups for t in g] == reference(text)
    assert all(isinstance(g, tuple) and g for g in groups)


def test_whitespace_definitions_agree() -> None:
    """The exactness argument needs `\\s`, str.split and str.strip to agree on whitespace."""
    import re

    space = re.compile(r"\s")
    for code in range(sys.maxunicode + 1):
        c = chr(code)
        assert c.isspace() == bool(space.match(c)) == (len(("a" + c + "a").split()) == 2), hex(code)


def test_replacer_matches_re_templates() -> None:
    import re

    pattern = re.compile(r"(a)(b)?")
    for template in [r"\1 , ", r" , \1", r"\1 ' \2", r"\1 '\2", r"x", r"\g<1>", r"\1\n", r"\10"]:
        fn = _replacer(template)
        if isinstance(fn, str):
            assert fn == template
            continue
        for text in ["ab", "a", "xaby", "aab"]:
            assert pattern.sub(fn, text) == pattern.sub(template, text), (template, text)


def test_shared_corpora_identical(shared_data) -> None:
    fast = FastMosesTokenizer()
    texts: list[str] = []
    for split in ("train", "valid", "test"):
        for doc in json.loads((shared_data / "BC5CDR" / f"{split}.json").read_text()).values():
            texts.append(doc["title"] + " " + doc["abstract"])
        for doc in json.loads((shared_data / "DDI" / f"{split}.json").read_text()).values():
            texts.append(doc["abstract"])
    for doc in json.loads((shared_data / "KD-DTI" / "valid.json").read_text()).values():
        texts.append(doc["title"] + " " + doc["abstract"])
    for doc in json.loads((shared_data / "PubMedQA" / "ori_pqal.json").read_text()).values():
        texts.append(doc["QUESTION"])
        texts.extend(doc["CONTEXTS"])
        texts.append(doc["LONG_ANSWER"])
    mismatches = [t[:80] for t in texts if fast.tokenize(t) != reference(t)]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


def test_memo_limits_keep_results_exact(monkeypatch) -> None:
    """Memos are cleared when full (long-running processes); results must not change."""
    import biogpt.model.moses as moses_module

    monkeypatch.setattr(moses_module, "_MAX_MEMO", 3)
    fast = FastMosesTokenizer()
    texts = [" ".join(PIECES[i : i + 9]) for i in range(0, len(PIECES), 3)]
    texts += ["Mr. Smith saw No. 5 and no. x in Fig. 2.", "a. b. C. d.. e", "x , y ,5 ,z"] * 3
    for text in texts + texts:
        assert fast.tokenize(text) == reference(text), text


def test_pickles_without_memos() -> None:
    import copy
    import pickle

    fast = FastMosesTokenizer()
    fast.tokenize("Mr. Smith (n=3), e.g. it's.")
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert clone.tokenize("Mr. Smith (n=3), e.g. it's.") == reference("Mr. Smith (n=3), e.g. it's.")
