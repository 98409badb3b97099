"""`biogpt convert SRC DST`: a fairseq (or any loadable) checkpoint -> a Hugging Face directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import typer

from .._common import UserError

logger = logging.getLogger(__name__)


def convert_tasks() -> tuple[str, ...]:
    """Tasks a converted causal LM can record: the generative ones with a fixed prompt recipe
    (not `ner`, a token-classification head, nor `custom`, whose template only training knows)."""
    from biogpt.tasks import TASKS, get_task

    return tuple(name for name in TASKS if get_task(name).kind == "generative")


def check_task(task: str | None, setting: str | None) -> tuple[Any, str | None]:
    """(task object, canonical setting) for --task/--setting, refused before anything is
    written: a recorded setting the task does not know would only fail later, in `biogpt qa`."""
    task_obj = None
    if task is not None:
        from .._taskrun import get_task

        task_obj = get_task(task, convert_tasks(), command="convert")
    if setting is None:
        return task_obj, None
    if task_obj is None or "setting" not in task_obj.options:
        raise UserError(f"--setting {setting}: only --task pubmedqa has settings (reasoning-required or reasoning-free)")
    from biogpt.tasks import TaskDataError
    from biogpt.tasks.pubmedqa import SETTINGS, normalize_setting

    try:
        return task_obj, normalize_setting(setting)
    except TaskDataError:
        raise UserError(f"--setting {setting}: expected {' or '.join(SETTINGS)}") from None


def convert_checkpoint(
    src: str, dst: Path, *, dtype: str | None = None, force: bool = False, task: str | None = None, setting: str | None = None
) -> Path:
    """Load SRC with every format the core knows and write config.json, model.safetensors and the
    tokenizer files (learned prompt tokens included) to DST, loadable by transformers too."""
    from biogpt.model import BioGptForCausalLM

    task_obj, setting = check_task(task, setting)
    if dst.exists() and not dst.is_dir():  # --force replaces a model folder's files, never a file
        from biogpt.model.errors import PathError

        raise PathError(f"{dst}: exists and is not a directory; give a folder for the converted model")
    if dst.exists() and any(dst.iterdir()) and not force:
        raise UserError(f"{dst} exists and is not empty; pass --force to overwrite")
    model = BioGptForCausalLM.from_pretrained(src, dtype=dtype)
    _, extra = getattr(model, "tokenizer_source", (None, []))
    if extra or task is not None:
        # The prompt recipe travels with the model, so task commands never guess it again.
        from biogpt.tasks.runner import PromptRecipe, save_recipe

        save_recipe(model, PromptRecipe(
            task=task_obj.name if task_obj else None,
            setting=setting,
            prompt_tokens=[t for t in extra if t.startswith("learned")],
            max_source_positions=task_obj.recipe.max_source_positions if task_obj and task_obj.recipe else None,
        ))
    model.save_pretrained(dst)
    logger.info("wrote %s (%d parameters, vocabulary %d)", dst, model.num_parameters(), model.config.vocab_size)
    return dst


def convert(
    src: str = typer.Argument(..., help="fairseq directory (checkpoint.pt + dict.txt + bpecodes), .pt file, HF directory or hub id."),
    dst: Path = typer.Argument(..., help="Output directory (Hugging Face format)."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights dtype to write: float32, bfloat16, float16 or auto."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty DST."),
    task: Optional[str] = typer.Option(None, "--task", help="Record the task the checkpoint was fine-tuned for: bc5cdr, kd-dti, ddi, pubmedqa or hoc (default: none recorded)."),
    setting: Optional[str] = typer.Option(None, "--setting", help="PubMedQA checkpoints: reasoning-required or reasoning-free (default: none recorded)."),
) -> None:
    """Convert a checkpoint (Microsoft's fine-tuned fairseq ones, say) to a Hugging Face directory.

    \b
    Example: biogpt convert RE-BC5CDR-BioGPT/ re-bc5cdr --task bc5cdr
    """
    convert_checkpoint(src, dst, dtype=dtype, force=force, task=task, setting=setting)
    typer.echo(str(dst))


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
