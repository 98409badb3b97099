"""Models the command-line tests run: a tiny language model with the real vocabulary, a tiny
tagger, and a fairseq folder laid out as Microsoft's fine-tuned checkpoints are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer

from biogpt.model import BioGptConfig, BioGptForTokenClassification, BioGptTokenizer
from tests.helpers import tiny_lm, write_fairseq_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-biogpt")
    tiny_lm(vocab_size=42384).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = BioGptConfig.from_preset("tiny", id2label={0: "O", 1: "B-Chemical", 2: "I-Chemical"})
    path = tmp_path_factory.mktemp("tagger")
    BioGptForTokenClassification(cfg).save_pretrained(path, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    return path


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    """The layout of Microsoft's RE/QA checkpoints: full dictionary + 9 learned prompt rows."""
    return write_fairseq_dir(tmp_path_factory.mktemp("ft"), tiny_lm(vocab_size=42393), dict_entries=42380, cfg_style="argparse")


@pytest.fixture(scope="module")
def train_cli() -> typer.Typer:
    """The commands the training tests chain: train, then use or average what it wrote."""
    from biogpt.commands import average, classify, data, extract_relations, generate, tag, train

    app = typer.Typer()
    for module in (train, tag, data, classify, generate, average, extract_relations):
        module.register(app)
    return app
