"""`biogpt train ner|classify|lm|re|qa`: thin wrappers over biogpt.training.

Every subcommand resolves its hyper-parameters the same way: built-in defaults, then
`--config cfg.json`, then the flags actually given on the command line (flags win). The shared
flags are declared once (`_options.TRAIN_FLAGS`, and `GENERATIVE_FLAGS` for the commands that
fine-tune the causal LM on a task); each command adds its own. The result is
written to OUTDIR/model-best and OUTDIR/model-last (loadable directories with
training_config.json), OUTDIR/metrics.jsonl and OUTDIR/checkpoints/step-N.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import _common
from .._common import UserError
from .._options import GENERATIVE_FLAGS, TRAIN_FLAGS, GenerativeFlags, TrainFlags

train_app = typer.Typer(
    help="Train or fine-tune a model: NER, classification, language model, relation extraction, question answering.\n\n"
    "\b\nExample: biogpt train ner train.jsonl --dev dev.jsonl -o ner-run",
    no_args_is_help=True,
)


class ConsoleDisplay:
    """The trainer's progress bar (on a terminal) and evaluation tables, on stderr."""

    def progress(self, total: int) -> Any:
        return _common.progress(total, description="train")

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"evaluation at step {step}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in metrics.items():
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        Console(stderr=True).print(table)


def _display() -> ConsoleDisplay | None:
    return None if _common.QUIET else ConsoleDisplay()


def _dev(path: Optional[Path]) -> str | None:
    return str(path) if path else None


@train_app.command("ner")
@TRAIN_FLAGS()
def ner(
    train_file: Path = typer.Argument(..., help="JSONL: {'tokens','tags'} (IOB2) or {'text','entities'}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev JSONL (same formats): seqeval F1 picks model-best (default: none; model-best is then the last model)."),
    flags: TrainFlags = None,  # type: ignore[assignment]  # TRAIN_FLAGS stand here
) -> None:
    """Token classification (NER) with labels on each word's first BPE piece.

    Example: biogpt train ner train.jsonl --dev dev.jsonl -o ner-run
    """
    from biogpt.training import train_ner

    train_ner(train_file, output, config_file=flags.config_file, display=_display(), **flags.given(dev=_dev(dev)))


@train_app.command("classify")
@TRAIN_FLAGS()
@GENERATIVE_FLAGS(help={
    "recipe": "--generative: default or official, docs/TASK_FORMATS.md (default: default).",
    "data_split": "--generative: the training split (default: train).",
    "dev_split": "--generative: the dev split (default: valid).",
    "dev_limit": "--generative: score the first N dev examples, 0 none (default: all).",
    "max_new_tokens": "--generative: generation budget when scoring dev (default: the task's).",
    "max_tokens": "--generative: token budget per batch (default: none, -b decides; official: 1024).",
    "average_last": "--generative: save a checkpoint per epoch and average the last K into OUTDIR/model-average (default: no average).",
})
def classify(
    train_file: Path = typer.Argument(..., help="JSONL: {'text','label'} or {'text','labels':[...]} (multi-label); with --generative the task's data."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev data (same format): it picks model-best (default: none; model-best is then the last model)."),
    flags: TrainFlags = None,  # type: ignore[assignment]  # TRAIN_FLAGS stand here
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="With --generative: the task whose data TRAIN_FILE is (default: hoc)."),
    generative: bool = typer.Option(False, "--generative", help="Fine-tune the causal LM to generate the labels (HoC recipe) instead of a head."),
    generative_flags: GenerativeFlags = None,  # type: ignore[assignment]  # GENERATIVE_FLAGS stand here
) -> None:
    """Document classification head (single- or multi-label); the result works with `biogpt classify -m`.

    With --task hoc --generative: the paper's generative HoC fine-tuning (TRAIN_FILE: the HoC folder or file).

    \b
    Example: biogpt train classify docs.jsonl --dev dev.jsonl -o cls-run
    Example: biogpt train classify --task hoc --generative data/HoC -o hoc-run --recipe official
    """
    from biogpt.training import train_classify, train_generative

    if task_name is not None and not generative:
        raise UserError("--task needs --generative (the head model reads JSONL documents)")
    if generative:
        given = flags.given(dev=_dev(dev), task=task_name or "hoc", **generative_flags.given())
        train_generative("classify", task_name or "hoc", train_file, output, config_file=flags.config_file, display=_display(), **given)
        return
    if generative_flags.set_names():
        raise UserError(f"{generative_flags.set_names()[0]} needs --generative")
    train_classify(train_file, output, config_file=flags.config_file, display=_display(), **flags.given(dev=_dev(dev)))


@train_app.command("lm")
@TRAIN_FLAGS(after={"block_size": "from_scratch"})
def lm(
    corpus: Path = typer.Argument(..., help="Text (one document per line) or JSONL with 'text'."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev corpus (same formats): perplexity picks model-best (default: none; model-best is then the last model)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", min=2, help="Tokens per packed block (default: the model's positions)."),
    flags: TrainFlags = None,  # type: ignore[assignment]  # TRAIN_FLAGS stand here
) -> None:
    """Continued causal-LM training on packed blocks; dev perplexity picks model-best.

    Example: biogpt train lm my_abstracts.txt --dev held_out.txt -o lm-run
    """
    from biogpt.training import train_lm

    train_lm(corpus, output, config_file=flags.config_file, display=_display(), **flags.given(dev=_dev(dev), block_size=block_size))


RE_TASKS = ("bc5cdr", "kd-dti", "kd_dti", "ddi", "custom", "cdr", "dti")


@train_app.command("re")
@TRAIN_FLAGS(after={"average_last": "warmup_steps"})
@GENERATIVE_FLAGS(after={"dev": "dev_split"})
def re_(
    data_arg: Optional[Path] = typer.Argument(None, help="The task's data: folder (train.json, valid.json) or file; or --data."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="bc5cdr, kd-dti, ddi, or custom (no default; custom with --template)."),
    data_opt: Optional[Path] = typer.Option(None, "--data", help="The task's data, as the argument (default: the argument)."),
    template: Optional[str] = typer.Option(None, "--template", help="Your relation schema: a clause with {head}, {tail} and {relation}; data: JSONL {'text','relations':[{'head','tail','relation'}]} (default: the task's own)."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev data if not in the training folder (default: --dev-split of the folder)."),
    generative_flags: GenerativeFlags = None,  # type: ignore[assignment]  # GENERATIVE_FLAGS stand here
    flags: TrainFlags = None,  # type: ignore[assignment]  # TRAIN_FLAGS stand here
) -> None:
    """Relation extraction as generation (BC5CDR, KD-DTI, DDI, or your own schema); the result
    works with `biogpt extract-relations -m OUTDIR/model-best`.

    Example: biogpt train re --task bc5cdr data/BC5CDR -o re-run --recipe official
    """
    from biogpt.training import train_generative

    name = task_name or ("custom" if template else None)
    if name is not None and name.lower() not in RE_TASKS:
        raise UserError(f"--task {name}: train re takes bc5cdr, kd-dti, ddi or custom (--template)")
    given = flags.given(dev=_dev(dev), task=task_name, template=template, **generative_flags.given())
    train_generative("re", name, data_opt or data_arg, output, config_file=flags.config_file, display=_display(), **given)


@train_app.command("qa")
@TRAIN_FLAGS(after={"average_last": "warmup_steps"})
@GENERATIVE_FLAGS(after={"dev": "dev_split"})
def qa_(
    data_arg: Optional[Path] = typer.Argument(None, help="ori_pqal.json or its folder; or --data."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    task_name: str = typer.Option("pubmedqa", "--task", "-t", help="The question-answering task."),
    data_opt: Optional[Path] = typer.Option(None, "--data", help="The task's data, as the argument (default: the argument)."),
    setting: Optional[str] = typer.Option(None, "--setting", help="PubMedQA setting: reasoning-required or reasoning-free (default: the task's)."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev data if not in the training folder (default: --dev-split of the folder)."),
    generative_flags: GenerativeFlags = None,  # type: ignore[assignment]  # GENERATIVE_FLAGS stand here
    flags: TrainFlags = None,  # type: ignore[assignment]  # TRAIN_FLAGS stand here
) -> None:
    """Question answering as generation (PubMedQA); the result works with `biogpt qa -m`.

    Example: biogpt train qa --task pubmedqa data/PubMedQA -o qa-run --recipe official
    """
    from biogpt.training import train_generative

    given = flags.given(dev=_dev(dev), task=task_name, setting=setting, **generative_flags.given())
    train_generative("qa", task_name, data_opt or data_arg, output, config_file=flags.config_file, display=_display(), **given)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
