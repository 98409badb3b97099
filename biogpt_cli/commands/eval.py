"""`biogpt eval TASK --predictions FILE`: score existing predictions with the official metrics.

No model is involved: the predictions file (JSONL, `{"id", "output"}` a line; NER: `{"id",
"entities"}`) is parsed with the task's official post-processing and scored against `--data`.
Metrics go to `--output` (JSON, fractions in [0, 1]) or stdout; a table goes to stderr. A later
`-m MODEL` option will generate the predictions first; everything else stays as it is.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .. import __version__
from .._common import UserError

logger = logging.getLogger(__name__)


def _task(name: str):
    from tasks import TaskDataError, get_task

    try:
        return get_task(name)
    except TaskDataError as exc:
        raise UserError(str(exc)) from None


def _data_hint(task_name: str) -> str:
    return {
        "bc5cdr": "the BC5CDR folder (test.json, test.entities.json, CDR_TestSet.PubTator.txt)",
        "kd-dti": "the KD-DTI folder or its <split>.json",
        "ddi": "the DDI folder or its <split>.json",
        "pubmedqa": "the PubMedQA folder or ori_pqal.json",
        "hoc": "the HoC folder or its <split>.tsv",
        "ner": "the BC5CDR folder or a CDR_*Set.PubTator.txt file",
    }.get(task_name, "the task's data folder")


def score_predictions(
    task_name: str,
    data: Path | str | None,
    predictions_path: Path | str,
    *,
    split: str = "test",
    setting: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a predictions file; returns the metrics dict with provenance (what `eval` writes)."""
    from tasks.evaluate import evaluate, read_predictions

    task = _task(task_name)
    if data is None:
        raise UserError(f"{task.name}: pass --data PATH ({_data_hint(task.name)})")
    data = Path(data)
    if not data.exists():
        raise UserError(f"--data {data}: no such file or directory")
    predictions_path = Path(predictions_path)
    if not predictions_path.is_file():
        raise UserError(f"--predictions {predictions_path}: no such file")
    if bootstrap < 0:
        raise UserError("--bootstrap must be 0 or more")
    options: dict[str, Any] = {}
    if setting is not None:
        if "setting" not in task.options:
            raise UserError(f"--setting applies to pubmedqa only, not {task.name}")
        options["setting"] = setting
    examples = task.load(data, split, **options)
    if not examples:
        raise UserError(f"{data}: no {split} examples to score")
    predictions = read_predictions(predictions_path, task.kind)
    metrics: dict[str, Any] = {"task": task.name}
    metrics.update(evaluate(task, examples, predictions, bootstrap_samples=bootstrap, seed=seed))
    used = dict(options)
    if task.name == "pubmedqa":
        used["setting"] = examples[0].meta.get("setting", setting)
    metrics["provenance"] = {
        "tool": f"biogpt-cli {__version__}",
        "task": task.name,
        "data": str(data),
        "split": split,
        "predictions": str(predictions_path),
        "options": {**used, "bootstrap": bootstrap, "seed": seed},
    }
    return metrics


def render_table(metrics: dict[str, Any]) -> Any:
    """A rich table of the headline metrics, per-document/per-type rows and the counts."""
    from rich.table import Table

    from tasks import get_task

    task = get_task(metrics["task"])
    ci = metrics.get("bootstrap", {}).get("ci95", {})
    table = Table(title=f"biogpt eval {task.name}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for key in task.headline:
        interval = ci.get(key)
        table.add_row(key, f"{metrics[key]:.4f}", f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
    for key in ("precision", "recall", "f1"):
        if key not in task.headline and key in metrics:
            table.add_row(key, f"{metrics[key]:.4f}", "")
    for key, value in metrics.get("per_document", {}).items():
        table.add_row(f"per-document {key}", f"{value:.4f}", "")
    for label, row in metrics.get("per_type", {}).items():
        table.add_row(f"{label} P/R/F1", f"{row['precision']:.4f} / {row['recall']:.4f} / {row['f1']:.4f}", "")
    for key, value in metrics.get("counts", {}).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        style = "yellow" if key in ("failed_parses", "missing_ids", "extra_ids", "duplicate_ids", "malformed_lines") and value else ""
        table.add_row(key.replace("_", " "), f"[{style}]{value}[/{style}]" if style else str(value), "")
    return table


def eval_command(
    task: str = typer.Argument(..., help="bc5cdr, kd-dti, ddi, pubmedqa, hoc or ner."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="The split's file or the folder holding it."),
    data_split: str = typer.Option("test", "--data-split", help="train, valid or test."),
    setting: Optional[str] = typer.Option(None, "--setting", help="PubMedQA: reasoning-required (default) or reasoning-free."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", "-p", help="JSONL of {id, output} (ner: {id, entities})."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write metrics JSON to FILE (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Resample documents N times for 95% confidence intervals."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap."),
) -> None:
    """Score predictions with the official metrics, e.g. biogpt eval ddi --data DDI --predictions p.jsonl."""
    if data_split not in ("train", "valid", "test"):
        raise UserError(f"--data-split {data_split}: expected train, valid or test")
    if predictions is None:
        raise UserError("nothing to score: pass --predictions FILE (JSONL of {\"id\", \"output\"})")
    if output is not None and str(output) != "-":
        if output.exists() and not force:
            raise UserError(f"{output} exists; pass --force to overwrite it")
        if not output.parent.exists():
            raise UserError(f"{output.parent}: no such directory for the output file")
    metrics = score_predictions(
        task, data, predictions, split=data_split, setting=setting, bootstrap=bootstrap, seed=seed
    )
    from rich.console import Console

    Console(stderr=True).print(render_table(metrics))
    text = json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
        logger.info("metrics written to %s", output)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
