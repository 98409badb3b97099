"""Fixtures every test folder shares: the ../shared data (skipped with a reason when absent), the
transformers reference built from the same vocabulary files, and the --slow switch. Plain helper
functions (tiny models, checkpoint writers, the CLI runner) are in tests/helpers.py."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton can only run under its interpreter (tests/model/test_fused_decode.py
# checks the kernels' arithmetic that way). It must be chosen before anything imports Triton,
# and test modules collected earlier import it through peft and transformers' Trainer.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# No test may reach the network: hub loading is exercised against local caches only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tokenized-feature caches of the training tests go to a throw-away folder, not the user's cache.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="biogpt-test-datasets-"))

from tests.helpers import FIXTURES, ROOT, SHARED, write_hf_vocab  # noqa: E402  (after the environment above)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"needs the full reference data in {SHARED} (present in CI, absent in a fresh clone)")
    return SHARED


@pytest.fixture(scope="session")
def hf_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = ROOT / "model" / "vocab" / "biogpt"
    return write_hf_vocab(base / "dict.txt", base / "bpecodes", tmp_path_factory.mktemp("hf-biogpt"))


@pytest.fixture(scope="session")
def hf_tokenizer(hf_vocab_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.BioGptTokenizer(str(hf_vocab_dir / "vocab.json"), str(hf_vocab_dir / "merges.txt"))


@pytest.fixture(scope="session")
def tokenizer():
    from biogpt.model import BioGptTokenizer

    return BioGptTokenizer.from_pretrained("microsoft/biogpt")


@pytest.fixture(scope="session")
def tricky_strings() -> list[str]:
    return json.loads((FIXTURES / "tricky_strings.json").read_text(encoding="utf-8"))


@pytest.fixture
def one_thread():
    """Tiny models train far faster on one thread (and are immune to a busy machine's contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny language model over the real vocabulary, saved with its tokenizer (the command
    line's and the server's tests load it as users load a model folder)."""
    from biogpt.model import BioGptTokenizer
    from tests.helpers import tiny_lm

    path = tmp_path_factory.mktemp("tiny-biogpt")
    tiny_lm(vocab_size=42384).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny token classifier (O, B-Chemical, I-Chemical) over the real vocabulary."""
    from biogpt.model import BioGptConfig, BioGptForTokenClassification, BioGptTokenizer

    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("tiny", id2label={0: "O", 1: "B-Chemical", 2: "I-Chemical"})
    path = tmp_path_factory.mktemp("tagger")
    BioGptForTokenClassification(cfg).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path
