"""Models the command-line tests run besides tests/conftest.py's tiny language model and tagger:
a fairseq folder laid out as Microsoft's fine-tuned checkpoints are."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tests.helpers import tiny_lm, write_fairseq_dir


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
