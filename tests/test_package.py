"""Packaging promises: the core's imports stay lean; the CLI starts and reports errors in one line."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_model_package_imports_only_torch_safetensors_sacremoses():
    code = (
        "import sys\n"
        "import biogpt.model\n"
        "from biogpt.model import BioGptTokenizer, BioGptForCausalLM\n"
        "BioGptTokenizer.from_pretrained('microsoft/biogpt')('COVID-19 is')\n"
        "banned = ['transformers', 'typer', 'rich', 'datasets', 'huggingface_hub', 'sklearn', 'seqeval', 'omegaconf', 'fairseq']\n"
        "print(','.join(b for b in banned if b in sys.modules))\n"
    )
    out = run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_cli_entry_points():
    out = run("-m", "biogpt", "--version")
    assert out.returncode == 0 and out.stdout.startswith("biogpt-cli ")
    out = run("-m", "biogpt", "models")
    assert out.returncode == 0 and "microsoft/biogpt" in out.stdout and "biogpt-large" in out.stdout
    out = run("-m", "biogpt", "no-such-command")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_every_command_has_help_with_an_example():
    from typer.main import get_command

    from biogpt.main import app

    def leaves(cmd, prefix=()):
        for name, sub in getattr(cmd, "commands", {}).items():
            if hasattr(sub, "commands"):
                yield from leaves(sub, prefix + (name,))
            else:
                yield prefix + (name,), sub

    found = dict(leaves(get_command(app)))
    assert {("generate",), ("eval",), ("extract-relations",), ("qa",), ("classify",), ("tag",), ("convert",), ("models",), ("train", "ner")} <= set(found)
    for path, cmd in found.items():
        assert cmd.help and ("Example" in cmd.help or "e.g." in cmd.help or "biogpt " in cmd.help), path
    out = run("-m", "biogpt", "extract-relations", "--help")
    assert out.returncode == 0 and "Example" in out.stdout
