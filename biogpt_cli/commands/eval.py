"""`biogpt eval TASK`: score predictions with the official metrics.

With `--predictions FILE` no model is involved: the file (JSONL, `{"id", "output"}` a line; NER:
`{"id", "entities"}`, what `biogpt tag` writes) is parsed with the task's official
post-processing and scored against `--data`. With `-m MODEL` the model writes the predictions
first (`--save-predictions` keeps them in the same format); `eval lm` is a model's perplexity.
Metrics go to `--output` (JSON, fractions in [0, 1]) or stdout; a table goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import typer

from biogpt.model.files import atomic_file, write_text_atomic

from .. import __version__, _common
from .. import _options as opts
from .._common import UserError, check_output_path

logger = logging.getLogger(__name__)

#: what `eval` accepts as TASK: the paper's tasks, user relation schemas (default template), lm
EVAL_TASKS: tuple[str, ...] = ("bc5cdr", "kd-dti", "ddi", "pubmedqa", "hoc", "ner", "custom", "lm")


def _task(name: str):
    """The task object; an unknown name lists what eval accepts (lm too, which is no task object)."""
    from biogpt.tasks import TaskDataError, get_task

    try:
        return get_task(name)
    except TaskDataError:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(EVAL_TASKS)}") from None


def _data_hint(task_name: str) -> str:
    return {
        "bc5cdr": "the BC5CDR folder (test.json, test.entities.json, CDR_TestSet.PubTator.txt)",
        "kd-dti": "the KD-DTI folder or its <split>.json",
        "ddi": "the DDI folder or its <split>.json",
        "pubmedqa": "the PubMedQA folder or ori_pqal.json",
        "hoc": "the HoC folder or its <split>.tsv",
        "ner": "the BC5CDR folder, a CDR_*Set.PubTator.txt file or an NER JSONL file",
    }.get(task_name, "the task's data folder")


def hub_data(task_name: str) -> Path:
    """The task's labelled data from the Hugging Face hub (through `datasets`, into its standard
    cache), written once in the official file layout. Only PubMedQA's labelled set is published
    there in a form the official split can be rebuilt from: qiaojin/PubMedQA, config pqa_labeled."""
    if task_name != "pubmedqa":
        raise UserError(f"{task_name}: pass --data PATH ({_data_hint(task_name)})")
    import os

    cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path.home() / ".cache" / "huggingface" / "datasets") / "biogpt-cli" / "PubMedQA"
    target = cache / "ori_pqal.json"
    if target.is_file():
        return cache
    from biogpt.model.errors import ModelNotFoundError

    try:
        import datasets
    except ImportError:
        raise UserError("pubmedqa: fetching the data set needs `pip install datasets`; or pass --data PATH") from None
    from huggingface_hub import constants as hf_constants

    from biogpt.model.hub import hub_logging, hub_unreachable, offline_hub, unreachable_reason

    # Offline, `datasets` would retry for half a minute, printing each retry twice: one request
    # without retries first; if the hub does not answer, only its cache is tried. A hub failure
    # is a runtime failure (exit 1), like a model's.
    repo = "qiaojin/PubMedQA"
    with hub_logging():
        if hf_constants.HF_HUB_OFFLINE:
            unreachable = "HF_HUB_OFFLINE=1"
        elif hub_unreachable(repo, "README.md", repo_type="dataset"):
            unreachable = f"the hub cannot be reached: {unreachable_reason()}"
        else:
            unreachable = None
        try:
            with offline_hub() if unreachable else contextlib.nullcontext():
                rows = datasets.load_dataset(repo, "pqa_labeled", split="train")
        except Exception as exc:  # noqa: BLE001 - not cached offline, or the hub refused
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            why = f"not cached, {unreachable}" if unreachable else f"{type(exc).__name__}: {first}"
            raise ModelNotFoundError(
                f"pubmedqa: could not fetch {repo} from the Hugging Face hub ({why}); "
                "pass --data PATH (the PubMedQA folder or ori_pqal.json)"
            ) from None
    data = {
        str(r["pubid"]): {
            "QUESTION": r["question"],
            "CONTEXTS": list(r["context"]["contexts"]),
            "LABELS": list(r["context"]["labels"]),
            "MESHES": list(r["context"]["meshes"]),
            "final_decision": r["final_decision"],
            "LONG_ANSWER": r["long_answer"],
        }
        for r in rows
    }
    cache.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, json.dumps(data))  # a cut cache file would be read as the data set next time
    return cache


def generate_predictions(
    task: Any,
    examples: list[Any],
    *,
    model_name: str | None,
    decoding: dict[str, Any],
    batch_size: int,
    device: str,
    dtype: str,
    constrained: bool,
    sink: TextIO | None,
    setting: str | None,
) -> tuple[Any, dict[str, Any]]:
    """Run the model over the examples with the task's defaults; predictions as `--predictions`
    would read them (and, into `sink`, the --save-predictions file opened before the model
    loads, written in that format)."""
    from biogpt.tasks.evaluate import PredictionFile
    from biogpt.tasks.runner import SourceCuts, encode_source

    from .._common import progress, provenance
    from .._taskrun import generate_in_batches, load_task_model
    from ..batchjob import Prepared

    name, model, tokenizer, recipe = load_task_model(task, model_name, device=device, dtype=dtype)
    if task.name == "pubmedqa" and recipe.setting and setting and recipe.setting != setting:
        logger.warning("the model was fine-tuned in the %s setting; scoring in %s", recipe.setting, setting)
    room = model.config.max_position_embeddings - decoding.get("max_new_tokens", task.decoding.max_new_tokens)
    cuts = SourceCuts()  # one warning for the run, not one per long document
    prepared = (Prepared(ex, encode_source(tokenizer, ex.source, recipe, limit=max(room, 8), cuts=cuts)) for ex in examples)
    result = PredictionFile()
    bar = progress(len(examples), description=f"eval {task.name}")
    try:
        for item in generate_in_batches(prepared, model=model, tokenizer=tokenizer, task=task, decoding=decoding,
                                        batch_size=batch_size, max_tokens=None, constrained=constrained):
            ex, generated = item[0].item, item[1]
            parsed = task.parse(generated.output, ex)
            record = {"id": ex.id, "output": generated.output, "prediction": _jsonable(parsed.value),
                      "failed": parsed.failed, "gold": _jsonable(ex.gold)}
            result.records[ex.id] = record
            result.lines += 1
            if sink is not None:
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
            bar.advance()
    finally:
        bar.close()
    cuts.report("sources")
    return result, provenance(model, name, decoding={"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens, **decoding},
                               prompt=recipe.to_dict(), constrained=constrained)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def score_predictions(
    task_name: str,
    data: Path | str | None,
    predictions_path: Path | str | None,
    *,
    split: str = "test",
    setting: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a predictions file, or (with `model` options) a model's predictions; returns the
    metrics dict with provenance (what `eval` writes)."""
    from biogpt.tasks.evaluate import evaluate, read_predictions

    task = _task(task_name)
    if data is None:
        data = hub_data(task.name)
    data = Path(data)
    if not data.exists():
        raise UserError(f"--data {data}: no such file or directory")
    if predictions_path is not None:
        predictions_path = Path(predictions_path)
        if predictions_path.is_dir():
            raise UserError(f"--predictions {predictions_path}: is a directory, expected a file")
        if not predictions_path.exists():
            raise UserError(f"--predictions {predictions_path}: no such file")
    if bootstrap < 0:
        raise UserError("--bootstrap must be 0 or more")
    options: dict[str, Any] = {}
    if setting is not None:
        if "setting" not in task.options:
            raise UserError(f"--setting applies to pubmedqa only, not {task.name}")
        options["setting"] = setting
    examples = load_examples(task, data, split, **options)
    if not examples:
        raise UserError(f"{data}: no {split} examples to score")
    model_provenance = None
    if predictions_path is not None:
        predictions = read_predictions(predictions_path, task.kind)
    else:
        assert model is not None
        limit = model.pop("limit", None)
        if limit:
            examples = examples[:limit]
        predictions, model_provenance = generate_predictions(task, examples, setting=setting, **model)
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
        "predictions": str(predictions_path) if predictions_path is not None else None,
        "options": {**used, "bootstrap": bootstrap, "seed": seed},
    }
    if model_provenance is not None:
        metrics["provenance"]["model"] = model_provenance
    return metrics


def lm_perplexity(model_name: str, corpus: Path, *, stride: int | None, device: str, dtype: str, limit: int | None) -> dict[str, Any]:
    """Perplexity of a causal LM on a corpus (one document per line, or JSONL with `text`).

    Documents, each starting with </s>, are concatenated; windows of the model's positions move
    by `stride` tokens (default: half a window) and each token is scored once, with at least
    `window - stride` tokens of context except at the very start (the usual sliding-window
    evaluation)."""
    import math

    import torch

    from biogpt.model.fast.network import lm_logits

    from .._common import load_causal_lm, provenance
    from ..training.data import corpus_texts

    texts = corpus_texts(corpus)[:limit]  # a missing or bad corpus fails before the model loads
    model, tokenizer = load_causal_lm(model_name, device=device, dtype=dtype)
    stream = [i for t in texts for i in tokenizer(t)["input_ids"]]
    window = model.config.max_position_embeddings
    stride = stride or window // 2
    if not 0 < stride <= window:
        raise UserError(f"--stride must be within 1..{window}")
    total, count, scored_to = 0.0, 0, 1
    with torch.inference_mode():
        for start in range(0, max(len(stream) - 1, 1), stride):
            chunk = stream[start : start + window]
            if len(chunk) < 2:
                break
            ids = torch.tensor([chunk], device=model.device)
            logp = torch.log_softmax(lm_logits(model, ids)[0, :-1].float(), -1)
            targets = ids[0, 1:]
            first_new = max(scored_to - start, 1)  # token positions within the chunk not scored yet
            picked = logp[first_new - 1 :].gather(1, targets[first_new - 1 :, None]).squeeze(1)
            total -= float(picked.sum())
            count += picked.numel()
            scored_to = start + len(chunk)
            if scored_to >= len(stream):
                break
    loss = total / max(count, 1)
    return {
        "task": "lm",
        "perplexity": math.exp(min(loss, 700.0)),
        "loss": loss,
        "counts": {"documents": len(texts), "tokens": count},
        "window": window,
        "stride": stride,
        "provenance": provenance(model, model_name, corpus=str(corpus)),
    }


def load_examples(task: Any, data: Path, split: str, **options: Any) -> list[Any]:
    """The examples of --data. NER also reads our NER JSONL (`{"text", "entities"}` or
    `{"tokens", "tags"}` lines, what `biogpt data ner-from-pubtator` writes), so that the same
    --data scores with -m and with --predictions."""
    if task.kind == "ner" and data.is_file() and data.suffix in (".jsonl", ".json"):
        from biogpt.tasks import Example

        from ..training.data import ner_documents

        return [
            Example(id=i, source=t, target="", gold=[{"start": s, "end": e, "label": l} for s, e, l in spans], text=t)
            for i, t, spans in ner_documents(data)
        ]
    return task.load(data, split, **options)


def ner_with_model(task: Any, model_name: str, data: Path, split: str, *, device: str, dtype: str, limit: int | None,
                   sink: TextIO | None = None) -> dict[str, Any]:
    """Tag the documents of --data (our NER JSONL, or BC5CDR's PubTator) and score the spans;
    with `sink` (--save-predictions) each document's `{"id", "entities"}` is written too."""
    from biogpt.tasks import Prediction

    from .._common import provenance
    from ..heads import tag_text
    from .tag import load_tagger

    examples = load_examples(task, data, split)
    examples = examples[:limit] if limit else examples
    model, tokenizer = load_tagger(model_name, device=device, dtype=dtype)
    predictions = []
    for ex in examples:
        predictions.append(Prediction(id=ex.id, value=tag_text(model, tokenizer, ex.text or ex.source)))
        if sink is not None:
            sink.write(json.dumps({"id": ex.id, "entities": predictions[-1].value}, ensure_ascii=False) + "\n")
            sink.flush()
    metrics: dict[str, Any] = {"task": "ner"}
    metrics.update(task.score(examples, predictions))
    metrics["provenance"] = {"tool": f"biogpt-cli {__version__}", "task": "ner", "data": str(data), "split": split,
                             "model": provenance(model, model_name)}
    return metrics


def render_table(metrics: dict[str, Any]) -> Any:
    """A rich table of the headline metrics, per-document/per-type rows and the counts."""
    from rich.table import Table

    from biogpt.tasks import get_task

    if metrics["task"] == "lm":
        table = Table(title="biogpt eval lm", show_header=True, header_style="bold")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in ("perplexity", "loss", "window", "stride"):
            table.add_row(key, f"{metrics[key]:.4f}" if isinstance(metrics[key], float) else str(metrics[key]))
        for key, value in metrics["counts"].items():
            table.add_row(key, str(value))
        return table
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
    task: str = typer.Argument(..., help="bc5cdr, kd-dti, ddi, pubmedqa, hoc, ner, custom (the default relation template), or lm (perplexity)."),
    corpus: Optional[Path] = typer.Argument(None, help="lm: the corpus (one document per line, or JSONL with text)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="The split's file or the folder holding it, ner also an NER JSONL file (default: pubmedqa from the Hugging Face hub; the other tasks need it)."),
    data_split: str = typer.Option("test", "--data-split", help="train, valid or test."),
    setting: Optional[str] = typer.Option(None, "--setting", help="PubMedQA: reasoning-required (default) or reasoning-free."),
    # no -p: that is generate's --prompt (one meaning per short flag, README "Options")
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="JSONL of {id, output}, ner {id, entities} (default: generate them with -m)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write metrics JSON to FILE (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Resample documents N times for 95% confidence intervals."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="Generate the predictions with this model (pubmedqa default: microsoft/BioGPT-Large-PubMedQA)."),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", help="With -m: also write the predictions there, in the --predictions format; checked before the model loads (default: not kept)."),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", min=1, help="With -m: beam width (default: the task's, 1)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="With -m: generation budget per document (default: the task's)."),
    constrained: bool = typer.Option(False, "--constrained", help="With -m, relation tasks: entity names copied from the source only."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="With -m: documents decoded at once (greedy: rows refilled as each ends)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="With -m: only the first N examples (default: all)."),
    device: str = opts.DEVICE,
    dtype: str = opts.DTYPE,
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="lm: window stride in tokens (default: half the model's positions)."),
) -> None:
    """Score predictions with the official metrics, or a model's own (-m).

    \b
    Example: biogpt eval ddi --data DDI --predictions p.jsonl
    Example: biogpt -q eval pubmedqa --data qs/test.json -m qs-run/model-best -o metrics.json
    """
    if data_split not in ("train", "valid", "test"):
        raise UserError(f"--data-split {data_split}: expected train, valid or test")
    is_lm = task.strip().lower() == "lm"
    task_obj = None if is_lm else _task(task)
    if predictions is not None and (model_name is not None or save_predictions is not None):
        raise UserError("give either --predictions FILE or -m MODEL, not both")
    if is_lm:
        if model_name is None:
            raise UserError("lm: pass -m MODEL")
        if corpus is None and data is None:
            raise UserError("lm: pass the corpus: biogpt eval lm -m MODEL CORPUS")
        if save_predictions is not None:
            raise UserError("--save-predictions: lm writes no predictions (it scores the corpus itself)")
    elif data is not None and not data.exists():
        raise UserError(f"--data {data}: no such file or directory")
    ner = task_obj is not None and task_obj.kind == "ner"
    if ner and predictions is None and model_name is None:
        raise UserError("ner: pass --predictions FILE (JSONL as `biogpt tag` writes it) or -m MODEL (a `biogpt train ner` model) to tag --data with")
    if ner and data is None:
        raise UserError(f"ner: pass --data PATH ({_data_hint('ner')})")
    # every output path is checked before a model loads: a typo must not cost a whole run
    if output is not None and str(output) != "-":
        check_output_path(output, force=force)
    if save_predictions is not None and str(save_predictions) == "-":
        raise UserError("--save-predictions needs a file name (stdout carries the metrics)")
    if save_predictions is not None:
        check_output_path(save_predictions, force=force)
    # the predictions file appears only when complete (a failed run leaves none to --force over)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(atomic_file(save_predictions)) if save_predictions is not None else None
        if is_lm:
            metrics = lm_perplexity(model_name, corpus or data, stride=stride, device=device, dtype=dtype, limit=limit)
        elif ner and model_name is not None:
            metrics = ner_with_model(task_obj, model_name, data, data_split, device=device, dtype=dtype, limit=limit, sink=sink)
        else:
            model_options = None
            if predictions is None:
                from .._taskrun import decoding_options

                model_options = {
                    "model_name": model_name, "decoding": decoding_options(num_beams, max_new_tokens), "batch_size": batch_size,
                    "device": device, "dtype": dtype, "constrained": constrained, "sink": sink, "limit": limit,
                }
            metrics = score_predictions(
                task, data, predictions, split=data_split, setting=setting, bootstrap=bootstrap, seed=seed, model=model_options
            )
    text = json.dumps(metrics, indent=2, ensure_ascii=False) + "\n"
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(output, text)
        logger.info("metrics written to %s", output)
    if not _common.QUIET:  # for a person, after the file is safe; -q leaves stderr to errors
        from rich.console import Console

        Console(stderr=True).print(render_table(metrics))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
