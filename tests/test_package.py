"""Packaging promises: one import namespace (`biogpt`) that nothing in the current folder can shadow,
the core's imports stay lean, and the CLI starts without torch and reports errors in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_model_package_imports_only_torch_safetensors_sacremoses():
    code = (
        "import sys\n"
        "import biogpt.model\n"
        "from biogpt.model import BioGptTokenizer, BioGptForCausalLM\n"
        "import torch\n"
        "BioGptForCausalLM.from_config(biogpt.model.BioGptConfig.from_preset('tiny')).generate(torch.tensor([[2, 5]]), max_new_tokens=2)\n"
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


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the app, walked from the root: ("generate",), ("train", "ner"), ..."""
    from typer.main import get_command

    from biogpt.main import app

    def walk(cmd, prefix=()):
        for name, sub in getattr(cmd, "commands", {}).items():
            yield prefix + (name,)
            yield from walk(sub, prefix + (name,))

    return list(walk(get_command(app)))


def test_every_command_has_help_with_an_example():
    from typer.main import get_command

    from biogpt.main import app

    root = get_command(app)
    paths = command_paths()
    assert {("generate",), ("eval",), ("extract-relations",), ("qa",), ("classify",), ("tag",), ("convert",), ("models",),
            ("merge",), ("average-checkpoints",), ("info",), ("train", "ner"), ("train", "classify"), ("train", "lm"),
            ("train", "re"), ("train", "qa"), ("data", "ner-from-pubtator"), ("data", "sample")} <= set(paths)
    for path in paths:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        if hasattr(cmd, "commands"):  # a group: its help lists every subcommand
            out = run("-m", "biogpt", *path, "--help")
            assert out.returncode == 0 and all(sub in out.stdout for sub in cmd.commands), (path, out.stdout)
        else:
            assert cmd.help and "Example: biogpt " in cmd.help or "Example: cat " in cmd.help, path
    assert "Example: biogpt " in (root.help or "")


def test_every_help_and_the_version_import_neither_torch_nor_pydantic():
    """`biogpt --help`, `--version` and each `COMMAND --help` stay fast (BENCHMARKS.md, start-up):
    no torch and none of the model, and no pydantic (typer coerces values with it; its import is
    a third of a `--help`: see biogpt._options.RootGroup). One fresh process per command line,
    as a user runs them."""
    lines = [("--help",), ("--version",), *[(*path, "--help") for path in command_paths()]]
    code = (
        "import sys\n"
        "from biogpt.main import main\n"
        "status = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pydantic', 'safetensors', 'sacremoses')\n"
        "               or m.startswith(('biogpt.model.modeling', 'biogpt.model.tokenizer', 'biogpt.tasks.runner')))\n"
        "print('HEAVY', status, heavy, file=sys.stderr)\n"
    )
    for argv in lines:
        out = run("-c", code, *argv)
        assert out.returncode == 0, (argv, out.stderr)
        assert out.stdout.strip(), argv
        assert out.stderr.strip().splitlines()[-1] == "HEAVY 0 []", (argv, out.stderr)


def test_the_version_is_pyprojects():
    import tomllib

    import biogpt

    assert biogpt.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run("-m", "biogpt", "--version").stdout == f"biogpt-cli {biogpt.__version__}\n"


SEED = ("BioGptConfig", "BioGptTokenizer", "BioGptModel", "BioGptForCausalLM", "BioGptForTokenClassification",
        "BioGptForSequenceClassification")


def test_import_biogpt_imports_no_torch():
    out = run("-c", "import sys, biogpt; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('biogpt.model.')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['biogpt.model.lazy']"


def test_the_seed_classes_are_exported_from_the_top_lazily():
    import biogpt
    import biogpt.model.config
    import biogpt.model.modeling
    import biogpt.model.tokenizer

    for name in SEED:
        assert name in biogpt.__all__ and name in dir(biogpt)
        home = biogpt.model.tokenizer if name == "BioGptTokenizer" else biogpt.model.config if name == "BioGptConfig" else biogpt.model.modeling
        assert getattr(biogpt, name) is getattr(home, name) is getattr(biogpt.model, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        biogpt.no_such_name  # noqa: B018
    from biogpt import BioGptForCausalLM  # noqa: F401  (the form transformers users write)


def _shadowing_folder(tmp_path: Path) -> Path:
    """A working folder as users have them: their own model/, model.py, tasks/ and biogpt_cli/,
    each of which raises if anyone imports it."""
    here = tmp_path / "work"
    for name in ("model", "tasks", "biogpt_cli"):
        (here / name).mkdir(parents=True)
        (here / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    (here / "model.py").write_text("raise ImportError('the user\\'s own model.py was imported')\n")
    return here


def test_python_m_biogpt_runs_from_a_folder_with_its_own_model_and_tasks(tmp_path):
    from biogpt.model import BioGptTokenizer
    from tests.helpers import tiny_lm

    here = _shadowing_folder(tmp_path)
    lm = tmp_path / "lm"
    tiny_lm(vocab_size=42384).save_pretrained(lm, tokenizer=BioGptTokenizer.from_pretrained("microsoft/biogpt"))
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "biogpt", "generate", "-m", str(lm), "--prompt", "Aspirin", "--max-new-tokens", "2"],
                         capture_output=True, text=True, cwd=here, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Aspirin")
    out = subprocess.run([sys.executable, "-m", "biogpt", "eval", "ddi", "--predictions", str(here / "none.jsonl"), "--data", str(here)],
                         capture_output=True, text=True, cwd=here, env=env, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "ImportError" not in out.stderr


@pytest.mark.slow
def test_torchrun_m_biogpt_runs_from_a_folder_with_its_own_model_and_tasks(tmp_path):
    here = _shadowing_folder(tmp_path)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "biogpt", "models"],
                         capture_output=True, text=True, cwd=here, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "microsoft/biogpt" in out.stdout


def test_every_package_folder_is_installed():
    """pyproject lists the packages by hand (package-dir maps three folders into one namespace):
    a new subpackage missing there would be absent from the wheel and from editable installs."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    folders = {name: ROOT / path for name, path in setup["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed


@pytest.mark.slow
def test_a_built_wheel_has_exactly_one_top_level_package(tmp_path):
    """Built from the tracked files in a fresh folder (a stale build/ in a working tree can leak old
    top-level names into a wheel built there; build/ and *.egg-info are ignored by git)."""
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    src = tmp_path / "src"
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"biogpt"}
    assert "biogpt/model/vocab/biogpt/dict.txt" in names and "biogpt/model/kernels/matvec.c" in names
    assert "biogpt/__main__.py" in names and "biogpt/model/modeling.py" in names and "biogpt/tasks/base.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "biogpt = biogpt.main:main" in zipfile.ZipFile(wheel).read(entry).decode()
