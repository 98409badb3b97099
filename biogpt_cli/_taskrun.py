"""What the task commands (extract-relations, qa, classify, eval -m) share: the task and model
defaults, and batched generation over prepared inputs in input order. Task details stay in
`tasks/`; this module only wires them to the I/O layer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._common import UserError, load_causal_lm

if TYPE_CHECKING:  # imported where used: the command modules import this one for `biogpt --help`
    from .batchjob import Prepared
    from .io import BadRecord

logger = logging.getLogger(__name__)

HUB_CHECKPOINTS = {"pubmedqa": ("microsoft/BioGPT-Large-PubMedQA", "reasoning-free")}
OFFICIAL_FAIRSEQ = {
    "bc5cdr": "RE-BC5CDR-BioGPT",
    "ddi": "RE-DDI-BioGPT",
    "kd-dti": "RE-DTI-BioGPT",
    "pubmedqa": "QA-PubMedQA-BioGPT",
    "hoc": "DC-HoC-BioGPT",
}


def get_task(name: str, accepted: tuple[str, ...] | None = None, *, command: str = ""):
    """The task `name` (or an alias of it). With `accepted`, only those: the registry's own error
    lists every task, which would offer ones the command rejects."""
    from biogpt.tasks import TaskDataError
    from biogpt.tasks import get_task as lookup

    try:
        task = lookup(name)
    except TaskDataError as exc:
        if accepted is None:
            raise UserError(f"--task {name}: {exc}") from None
        raise UserError(f"--task {name}: unknown task; expected one of {', '.join(accepted)}") from None
    if accepted is not None and task.name not in accepted:
        raise UserError(f"--task {name}: not a task for {command}; expected one of {', '.join(accepted)}")
    return task


def model_card(name: str | None) -> tuple[list[str], dict[str, Any]]:
    """(architectures, stored prompt recipe: config.json's `biogpt_task`, or {}) of a model
    directory or hub id, read without loading weights; ([], {}) when there is no config.json
    (a fairseq folder: a causal LM that records no task) or it cannot be read."""
    if name is None:
        return [], {}
    from pathlib import Path

    from biogpt.model import BioGptConfig
    from biogpt.model.errors import PathError
    from biogpt.tasks.runner import RECIPE_KEY

    if Path(name).expanduser().is_file():  # BioGptConfig would read it as a config.json: say what it is
        raise PathError(f"{name}: is a file, expected a model folder or hub id")
    try:
        config = BioGptConfig.from_pretrained(name)
    except Exception:  # noqa: BLE001 - no card: the model's loading reports what is wrong with it
        return [], {}
    stored = config.extra.get(RECIPE_KEY)
    return list(config.extra.get("architectures") or []), (stored if isinstance(stored, dict) else {})


# how a user makes a fine-tuned model of each task (the hint when none is published)
TRAIN_COMMANDS = {"hoc": "biogpt train classify --task hoc --generative", "pubmedqa": "biogpt train qa --task pubmedqa"}


def fine_tune_hint(task_name: str) -> str:
    """What to pass as -m for a task without a published Hugging Face checkpoint."""
    train = TRAIN_COMMANDS.get(task_name, f"biogpt train re --task {task_name}")
    official = OFFICIAL_FAIRSEQ.get(task_name, "")
    return (
        f"a model fine-tuned with `{train}`, or Microsoft's fairseq checkpoint {official} (its folder with "
        "checkpoint.pt, dict.txt, bpecodes; `biogpt convert` makes it a Hugging Face directory)"
    )


def default_model(task) -> str:
    if task.name in HUB_CHECKPOINTS:
        return HUB_CHECKPOINTS[task.name][0]
    raise UserError(f"{task.name}: no fine-tuned checkpoint is published on the Hugging Face hub; pass -m MODEL: {fine_tune_hint(task.name)}")


def load_task_model(task, model_name: str | None, *, device: str, dtype: str, quantize: str | None = None):
    from biogpt.tasks.runner import read_recipe

    name = model_name or default_model(task)
    model, tokenizer = load_causal_lm(name, device=device, dtype=dtype, quantize=quantize)
    recipe = read_recipe(model, tokenizer, task)
    if recipe.setting is None and name in (v[0] for v in HUB_CHECKPOINTS.values()):
        recipe.setting = dict(HUB_CHECKPOINTS.values()).get(name)
    return name, model, tokenizer, recipe


def generate_in_batches(
    items: Iterable[Prepared | BadRecord],
    *,
    model: Any,
    tokenizer: Any,
    task: Any,
    decoding: dict[str, Any],
    batch_size: int,
    max_tokens: int | None,
    constrained: bool,
) -> Iterator[tuple[Prepared, Any] | BadRecord]:
    """(prepared, Generated) per item in input order (BadRecords pass through). Greedy,
    unconstrained decoding runs with continuous batching (`batch_size` rows, refilled as rows
    finish); other options in length-sorted static batches. Same outputs either way."""
    from biogpt.tasks.runner import continuous_applies, generate_continuously, generate_outputs

    from .batchjob import run_prepared

    def run_window(window: list[Prepared]) -> Iterator[tuple[int, tuple[Prepared, Any]]]:
        inputs = [p.input_ids for p in window]
        for i, generated in generate_continuously(
            model, tokenizer, inputs, task=task, decoding=decoding, rows=batch_size, max_prefill_tokens=max_tokens
        ):
            yield i, (window[i], generated)

    def run(batch: list[Prepared]) -> list[tuple[Prepared, Any]]:
        outs = generate_outputs(
            model, tokenizer, [p.input_ids for p in batch], task=task, decoding=decoding, constrained=constrained
        )
        return list(zip(batch, outs))

    continuous = run_window if continuous_applies(task, decoding, constrained=constrained) else None
    yield from run_prepared(items, static=run, continuous=continuous, batch_size=batch_size, max_tokens=max_tokens)


def decoding_options(num_beams: int | None, max_new_tokens: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if num_beams is not None:
        out["num_beams"] = num_beams
    if max_new_tokens is not None:
        out["max_new_tokens"] = max_new_tokens
    return out
