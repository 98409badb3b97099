"""`biogpt train ner|classify|lm`: fine-tune (or train from scratch) with the shared loop.

Every subcommand resolves its hyper-parameters the same way: built-in defaults, then
`--config cfg.json`, then the flags actually given on the command line (flags win). The result
is written to OUTDIR/model-best and OUTDIR/model-last (loadable directories with
training_config.json), OUTDIR/metrics.jsonl and OUTDIR/checkpoints/step-N.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .. import _common
from .._common import DEFAULT_MODEL, UserError, resolve_device

logger = logging.getLogger(__name__)

train_app = typer.Typer(help="Train or fine-tune a model (NER, classification, language model).", no_args_is_help=True)

DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL, "from_scratch": None, "epochs": 3, "max_steps": None, "lr": 5e-5, "batch_size": 8,
    "grad_accum": 1, "max_samples": None, "seed": 42, "dropout": None, "eval_steps": None, "save_steps": None,
    "save_total_limit": None, "patience": None, "scheduler": "linear", "warmup_steps": 0, "bf16": False, "gradient_checkpointing": False, "cuda_graph": True,
    "resume": None, "device": "auto", "dev": None, "block_size": None,
    # generative task fine-tuning (train re / qa / classify --generative)
    "task": None, "recipe": "default", "max_tokens": None, "data_split": "train", "dev_split": "valid", "dev_limit": None,
    "setting": None, "template": None, "max_new_tokens": None, "loss": None, "betas": [0.9, 0.999], "max_grad_norm": 1.0,
    "weight_decay": 0.01, "save_epochs": True, "average_last": None,
}


# ============================================================================ shared plumbing
CUDA_GRAPH_HELP = (
    "On a GPU, capture each batch shape's training step as a CUDA graph and replay it (lengths padded "
    "to a multiple of 64; not with --gradient-checkpointing or torchrun). Default: on."
)
FROM_SCRATCH_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "epochs": 20}


def resolve_options(config_file: Optional[Path], given: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < `base` (a recipe's defaults) < --config file < flags given on the command line
    (None means not given)."""
    options = {**DEFAULTS, **(base or {})}
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
            if config_file.suffix.lower() in (".yaml", ".yml"):
                import yaml  # PyYAML comes with `datasets`

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError) as exc:
            raise UserError(f"--config {config_file}: {exc}") from None
        except Exception as exc:  # yaml.YAMLError
            raise UserError(f"--config {config_file}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"--config {config_file}: expected a mapping of option names to values")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = set(data) - set(DEFAULTS)
        if unknown:
            raise UserError(f"--config {config_file}: unknown keys {', '.join(sorted(unknown))}")
        options.update(data)
    options.update({k: v for k, v in given.items() if v is not None})
    if options["from_scratch"]:
        # A randomly initialised model needs a larger step and more passes than fine-tuning;
        # these apply only where neither --config nor a flag chose a value.
        chosen = {k for k, v in given.items() if v is not None} | set(base or {}) | set(data if config_file is not None else {})
        for key, value in FROM_SCRATCH_DEFAULTS.items():
            if key not in chosen:
                options[key] = value
    _check_ranges(options)
    return options


# (option, lowest allowed, whether the lowest is allowed): checked up front, for flags and --config
# alike, so a typo is one line before any data or model is loaded, not an optimizer's exception
RANGES = (
    ("lr", 0.0, False), ("epochs", 1, True), ("max_steps", 1, True), ("batch_size", 1, True), ("grad_accum", 1, True),
    ("max_samples", 1, True), ("eval_steps", 1, True), ("save_steps", 1, True), ("save_total_limit", 1, True),
    ("patience", 1, True), ("warmup_steps", 0, True), ("dropout", 0.0, True), ("max_grad_norm", 0.0, False),
    ("weight_decay", 0.0, True), ("average_last", 1, True), ("max_tokens", 1, True), ("block_size", 1, True),
)


def _check_ranges(options: dict[str, Any]) -> None:
    for name, lowest, inclusive in RANGES:
        value = options.get(name)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or not (value >= lowest if inclusive else value > lowest):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {value}: expected a number {'>=' if inclusive else '>'} {lowest}")
    if options.get("dropout") is not None and not options["dropout"] < 1:
        raise UserError(f"--dropout {options['dropout']}: expected a probability below 1")


def cached_features(
    sources: list[Path], key: dict[str, Any], build: Callable[[], list[dict[str, Any]]]
) -> Any:
    """Tokenize once: the features of `sources` are stored with `datasets` (Arrow, memory-mapped
    on reuse) under its cache, keyed by the files' contents and the tokenization settings, so a
    second run on the same data (another seed, --resume, a sweep) skips tokenization."""
    import hashlib

    import datasets

    datasets.disable_progress_bars()  # our own progress goes to stderr; keep -q quiet
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(key, sort_keys=True, default=str).encode())
    for path in sources:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    cache = Path(datasets.config.HF_DATASETS_CACHE) / "biogpt-cli-features" / digest.hexdigest()
    if (cache / "dataset_info.json").is_file():
        logger.info("tokenized features from the cache: %s", cache)
        return datasets.load_from_disk(str(cache))
    features = build()
    if not features:
        return features
    dataset = datasets.Dataset.from_list(features)
    try:
        dataset.save_to_disk(str(cache))
        logger.info("tokenized features cached in %s", cache)
    except OSError as exc:  # a read-only cache is not an error: train from memory
        logger.warning("could not cache tokenized features in %s: %s", cache, exc)
    return dataset


COMMON_FLAGS = (
    "from_scratch", "epochs", "max_steps", "lr", "batch_size", "grad_accum", "max_samples", "seed", "dropout",
    "eval_steps", "save_steps", "save_total_limit", "patience", "scheduler", "warmup_steps", "bf16",
    "gradient_checkpointing", "cuda_graph", "device",
)


def given_flags(values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The flags every `train` command shares, read from the command function's `locals()`
    (its parameters keep these names), plus the command's own; for `resolve_options`."""
    given = {name: values[name] for name in COMMON_FLAGS}
    given["model"] = values["model_name"]
    given["resume"] = _resume_value(values["resume"], values["resume_from"])
    given["dev"] = str(values["dev"]) if values["dev"] else None
    return {**given, **extra}


def _resume_value(flag: bool, path: Optional[Path]) -> str | None:
    """--resume-from PATH, else --resume (the latest checkpoint), else not given."""
    if path is not None:
        return str(path)
    return "latest" if flag else None


def read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{number}: expected a JSON object")
        obj["_where"] = f"{path}:{number}"
        rows.append(obj)
    if not rows:
        raise UserError(f"{path}: no {what}")
    return rows


def build_model(cls: Any, options: dict[str, Any], device: Any, **overrides: Any) -> tuple[Any, Any]:
    """(model, tokenizer): -m MODEL (pretrained weights, a fresh head) or --from-scratch."""
    from biogpt.model import BioGptConfig, BioGptTokenizer

    dropout = options["dropout"]
    if dropout is not None:
        overrides.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    scratch = options["from_scratch"]
    if scratch:
        tokenizer = BioGptTokenizer.from_pretrained(DEFAULT_MODEL)
        path = Path(scratch)
        config = BioGptConfig.from_json_file(path) if path.is_file() else BioGptConfig.from_preset(scratch, vocab_size=len(tokenizer))
        id2label = overrides.pop("id2label", None)
        for key, value in overrides.items():
            setattr(config, key, value)
        if id2label is not None:
            config.id2label = id2label
        import torch

        torch.manual_seed(options["seed"])
        model = cls.from_config(config, device=device)
        return model, tokenizer
    name = options["model"]
    model = cls.from_pretrained(name, device=device, **overrides)
    tok_path, extra = getattr(model, "tokenizer_source", (name, []))
    return model, BioGptTokenizer.from_pretrained(tok_path or name, extra_symbols=extra)


def run(
    model: Any,
    tokenizer: Any,
    options: dict[str, Any],
    output: Path,
    dataset: list[Any],
    collate: Callable[[list[Any]], dict[str, Any]],
    eval_fn: Callable[[Any], dict[str, float]] | None,
    *,
    metric: str,
    greater_is_better: bool,
    task: str,
    device: Any,
) -> dict[str, Any]:
    # A checkpoint at every epoch end (the last two kept unless --save-total-limit says otherwise)
    # makes any run resumable, even after a hard kill; --average-last K keeps at least K.
    keep = options["save_total_limit"]
    if keep is None and options["save_epochs"]:
        keep = max(2, options.get("average_last") or 0)
    elif keep is not None and options.get("average_last"):
        keep = max(keep, options["average_last"])
    from ..trainer import Trainer, TrainingArgs, latest_checkpoint  # torch: only when training

    args = TrainingArgs(
        output_dir=str(output), epochs=options["epochs"], max_steps=options["max_steps"], lr=options["lr"],
        batch_size=options["batch_size"], grad_accum=options["grad_accum"], scheduler=options["scheduler"],
        warmup_steps=options["warmup_steps"], bf16=options["bf16"], eval_steps=options["eval_steps"],
        save_steps=options["save_steps"], save_total_limit=keep, patience=options["patience"],
        seed=options["seed"], metric=metric if eval_fn is not None else "loss", greater_is_better=greater_is_better and eval_fn is not None,
        betas=tuple(options["betas"]), max_grad_norm=options["max_grad_norm"], weight_decay=options["weight_decay"],
        save_epochs=bool(options["save_epochs"]), cuda_graph=bool(options["cuda_graph"]),
        extra={"task": task, **{k: options[k] for k in ("model", "from_scratch", "dropout", "max_samples", "dev", "gradient_checkpointing")}},
    )
    resume = options["resume"]
    checkpoint: Path | None = None
    if resume:
        checkpoint = latest_checkpoint(output) if resume in ("latest", True) else Path(resume)
        if checkpoint is None:
            raise UserError(f"--resume: no checkpoint under {output / 'checkpoints'}")
    elif (output / "model-last").exists() or (output / "checkpoints").exists():
        raise UserError(f"{output} already holds a training run; pass --resume to continue it or choose another -o")
    if output.exists() and not output.is_dir():
        raise UserError(f"-o {output}: is a file; training writes a directory (checkpoints, model-best, metrics)")
    if options["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    trainer = Trainer(model, args, dataset, collate, eval_fn=eval_fn, tokenizer=tokenizer, device=device, quiet=_common.QUIET)
    summary = trainer.train(resume=checkpoint)
    logger.info("training done: %s", summary)
    return summary


def resolve_train_device(name: str) -> Any:
    """The device, after joining the process group when run under torchrun (WORLD_SIZE > 1):
    gloo on CPU, nccl on GPU (each rank on cuda:LOCAL_RANK)."""
    import os

    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return resolve_device(name)
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.get_rank() != 0:
        _common.QUIET = True
    return device


def _pad(rows: list[list[int]], value: int) -> Any:
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def token_collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids = _pad([r["input_ids"] for r in rows], pad_id)
        return {"input_ids": ids, "attention_mask": (ids != pad_id).long(), "labels": _pad([r["labels"] for r in rows], -100)}

    return collate


# ============================================================================ NER
def ner_documents(path: Path) -> list[tuple[str, str, list[tuple[int, int, str]]]]:
    """(id, text, spans) from `{"tokens","tags"}` (IOB2, words joined by spaces) or
    `{"text","entities":[{"start","end","label"}]}` lines."""
    docs = []
    for i, row in enumerate(read_jsonl(path, "NER documents")):
        where = row["_where"]
        doc_id = str(row.get("id", i))
        if "tokens" in row:
            tokens, tags = row.get("tokens"), row.get("tags")
            if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
                raise UserError(f"{where}: 'tokens' and 'tags' must be lists of the same length")
            text, spans = "", []
            open_: list[Any] | None = None
            for token, tag in zip(tokens, tags):
                start = len(text) + (1 if text else 0)
                text = f"{text} {token}" if text else str(token)
                kind, _, label = str(tag).partition("-")
                if kind == "I" and open_ is not None and open_[2] == label:
                    open_[1] = len(text)
                    continue
                if open_ is not None:
                    spans.append(tuple(open_))
                    open_ = None
                if kind in ("B", "I") and label:
                    open_ = [start, len(text), label]
                elif tag != "O":
                    raise UserError(f"{where}: tag {tag!r} is not IOB2 (O, B-X, I-X)")
            if open_ is not None:
                spans.append(tuple(open_))
            docs.append((doc_id, text, spans))
        elif isinstance(row.get("text"), str):
            spans = []
            for e in row.get("entities") or []:
                try:
                    s, t, label = int(e["start"]), int(e["end"]), str(e["label"])
                except (KeyError, TypeError, ValueError):
                    raise UserError(f"{where}: each entity needs start, end and label") from None
                if not 0 <= s < t <= len(row["text"]):
                    raise UserError(f"{where}: entity {s}-{t} lies outside the text")
                spans.append((s, t, label))
            docs.append((doc_id, row["text"], spans))
        else:
            raise UserError(f"{where}: expected {{'tokens','tags'}} or {{'text','entities'}}")
    return docs


def ner_score(model: Any, tokenizer: Any, docs: list[tuple[str, str, list[tuple[int, int, str]]]]) -> dict[str, Any]:
    """seqeval entity-level strict IOB2 scores of the model's entities (tasks/ner.py's metric)."""
    from biogpt.tasks.base import Example, Prediction
    from biogpt.tasks.ner import NERTask

    from .tag import tag_text

    examples, predictions = [], []
    for doc_id, text, spans in docs:
        examples.append(Example(id=doc_id, source=text, target="", gold=[{"start": s, "end": e, "label": l} for s, e, l in spans], text=text))
        predictions.append(Prediction(id=doc_id, value=tag_text(model, tokenizer, text)))
    return NERTask().score(examples, predictions)


@train_app.command("ner")
def ner(
    train_file: Path = typer.Argument(..., help="JSONL: {'tokens','tags'} (IOB2) or {'text','entities'}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev JSONL (same formats): seqeval F1 picks model-best."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m", help="Pretrained model to fine-tune (default microsoft/biogpt)."),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch", help="A preset (tiny, small, biogpt) or config.json; defaults then --lr 1e-3 --epochs 20."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=1.0),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1),
    patience: Optional[int] = typer.Option(None, "--patience", min=1),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="linear, cosine, inverse_sqrt or constant."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward to save memory."),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help=CUDA_GRAPH_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Token classification (NER) with labels on each word's first BPE piece.

    Example: biogpt train ner train.jsonl --dev dev.jsonl -o ner-run
    """
    from biogpt.model import BioGptForTokenClassification

    from .tag import ner_features

    options = resolve_options(config_file, given_flags(locals()))
    docs = ner_documents(train_file)[: options["max_samples"]]
    dev_docs = ner_documents(Path(options["dev"])) if options["dev"] else None
    types = sorted({label for _, _, spans in docs + (dev_docs or []) for _, _, label in spans})
    tags = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    id2label = dict(enumerate(tags))
    dev_ = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForTokenClassification, options, dev_, id2label=id2label)
    label2id = model.config.label2id
    size = model.config.max_position_embeddings
    dataset = cached_features(
        [train_file], {"kind": "ner", "labels": label2id, "size": size, "vocab": len(tokenizer), "max_samples": options["max_samples"]},
        lambda: [f for _, text, spans in docs for f in ner_features(tokenizer, text, spans, label2id, size)],
    )
    eval_fn = (lambda m: {k: v for k, v in ner_score(m, tokenizer, dev_docs).items() if isinstance(v, float)}) if dev_docs else None
    run(model, tokenizer, options, output, dataset, token_collate(tokenizer.pad_token_id), eval_fn,
        metric="f1", greater_is_better=True, task="ner", device=dev_)


# ============================================================================ classification
def classify_rows(path: Path) -> tuple[list[tuple[str, list[str]]], bool]:
    """([(text, labels)], multi_label) from `{"text","label"}` or `{"text","labels":[...]}`."""
    rows, multi = [], False
    for row in read_jsonl(path, "documents"):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{row['_where']}: needs a non-empty 'text'")
        if isinstance(row.get("labels"), list):
            multi = True
            rows.append((text, [str(x) for x in row["labels"]]))
        elif row.get("label") is not None:
            rows.append((text, [str(row["label"])]))
        else:
            raise UserError(f"{row['_where']}: needs 'label' or 'labels'")
    return rows, multi


@train_app.command("classify")
def classify(
    train_file: Path = typer.Argument(..., help="JSONL: {'text','label'} or {'text','labels':[...]} (multi-label)."),
    output: Path = typer.Option(..., "--output", "-o"),
    dev: Optional[Path] = typer.Option(None, "--dev"),
    model_name: Optional[str] = typer.Option(None, "--model", "-m"),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=1.0),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1),
    patience: Optional[int] = typer.Option(None, "--patience", min=1),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward to save memory."),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help=CUDA_GRAPH_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="With --generative: the task (hoc) whose data TRAIN_FILE is."),
    generative: bool = typer.Option(False, "--generative", help="Fine-tune the causal LM to generate the labels (HoC recipe) instead of a head."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="--generative: default or official."),
    data_split: Optional[str] = typer.Option(None, "--data-split", help="--generative: the training split."),
    dev_split: Optional[str] = typer.Option(None, "--dev-split", help="--generative: the dev split."),
    dev_limit: Optional[int] = typer.Option(None, "--dev-limit", min=0, help="--generative: score the first N dev examples (0: none)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="--generative: token budget per batch."),
) -> None:
    """Document classification head (single- or multi-label); the result works with `biogpt classify -m`.
    With --task hoc --generative: the paper's generative HoC fine-tuning (TRAIN_FILE: the HoC folder or file)."""
    import torch
    from biogpt.model import BioGptForSequenceClassification

    if task_name is not None and not generative:
        raise UserError("--task needs --generative (the head model reads JSONL documents)")
    if generative:
        given = given_flags(
            locals(), task=task_name or "hoc", recipe=recipe, data_split=data_split, dev_split=dev_split,
            dev_limit=dev_limit, max_new_tokens=max_new_tokens, max_tokens=max_tokens,
        )
        train_generative("classify", task_name or "hoc", train_file, output, config_file, given)
        return
    for flag, value in (("--recipe", recipe), ("--data-split", data_split), ("--dev-split", dev_split), ("--dev-limit", dev_limit), ("--max-tokens", max_tokens)):
        if value is not None:
            raise UserError(f"{flag} needs --generative")
    options = resolve_options(config_file, given_flags(locals()))
    rows, multi = classify_rows(train_file)
    rows = rows[: options["max_samples"]]
    dev_rows: list[tuple[str, list[str]]] | None = None
    if options["dev"]:
        dev_rows, dev_multi = classify_rows(Path(options["dev"]))
        multi = multi or dev_multi
    names = sorted({label for _, labels in rows + (dev_rows or []) for label in labels})
    problem = "multi_label_classification" if multi else "single_label_classification"
    dev_ = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForSequenceClassification, options, dev_, id2label=dict(enumerate(names)), problem_type=problem)
    model.config.problem_type = problem
    index = model.config.label2id
    size = model.config.max_position_embeddings

    def encode(text: str) -> list[int]:
        ids = tokenizer(text)["input_ids"]
        if len(ids) > size:
            logger.warning("document of %d tokens truncated to %d for training", len(ids), size)
        return ids[:size]

    def featurize() -> list[dict[str, Any]]:
        features = []
        for text, labels in rows:
            if multi:
                target: Any = [1.0 if name in labels else 0.0 for name in names]
            else:
                target = index[labels[0]]
            features.append({"input_ids": encode(text), "label": target})
        return features

    dataset = cached_features(
        [train_file], {"kind": "classify", "labels": names, "multi": multi, "size": size, "vocab": len(tokenizer),
                       "max_samples": options["max_samples"]}, featurize,
    )
    pad = tokenizer.pad_token_id

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        ids = _pad([r["input_ids"] for r in batch], pad)
        labels = torch.tensor([r["label"] for r in batch], dtype=torch.float if multi else torch.long)
        return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": labels}

    def eval_fn(m: Any) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        from .classify import classify_with_head

        assert dev_rows is not None
        gold = [labels for _, labels in dev_rows]
        pred = [classify_with_head(m, tokenizer, text)["labels"] for text, _ in dev_rows]
        binar = MultiLabelBinarizer(classes=names).fit([names])
        y_true, y_pred = binar.transform(gold), binar.transform(pred)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        }

    run(model, tokenizer, options, output, dataset, collate, eval_fn if dev_rows else None,
        metric="f1_micro", greater_is_better=True, task="classify", device=dev_)


# ============================================================================ language model
def corpus_texts(path: Path) -> list[str]:
    """Documents of a corpus: JSONL (`text`) when every line is a JSON object, else one per line."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if not lines:
        raise UserError(f"{path}: empty corpus")
    if all(line.lstrip().startswith("{") for line in lines):
        return [str(row["text"]) for row in read_jsonl(path, "documents") if row.get("text")]
    return lines


def pack_blocks(tokenizer: Any, texts: list[str], block: int) -> list[dict[str, list[int]]]:
    """Documents (each starting with </s>, as BioGPT saw them) concatenated and cut into blocks."""
    stream = [i for text in texts for i in tokenizer(text)["input_ids"]]
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    blocks = [b for b in blocks if len(b) > 1]
    return [{"input_ids": b, "labels": b} for b in blocks]


@train_app.command("lm")
def lm(
    corpus: Path = typer.Argument(..., help="Text (one document per line) or JSONL with 'text'."),
    output: Path = typer.Option(..., "--output", "-o"),
    dev: Optional[Path] = typer.Option(None, "--dev"),
    model_name: Optional[str] = typer.Option(None, "--model", "-m"),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch"),
    block_size: Optional[int] = typer.Option(None, "--block-size", min=2, help="Tokens per packed block (default: the model's positions)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=1.0),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1),
    patience: Optional[int] = typer.Option(None, "--patience", min=1),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward to save memory."),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help=CUDA_GRAPH_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Continued causal-LM training on packed blocks; dev perplexity picks model-best.

    Example: biogpt train lm my_abstracts.txt --dev held_out.txt -o lm-run
    """
    import torch
    from biogpt.model import BioGptForCausalLM

    options = resolve_options(config_file, given_flags(locals(), block_size=block_size))
    dev_ = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForCausalLM, options, dev_)
    block = min(options["block_size"] or model.config.max_position_embeddings, model.config.max_position_embeddings)
    texts = corpus_texts(corpus)[: options["max_samples"]]
    dataset = cached_features(
        [corpus], {"kind": "lm", "block": block, "vocab": len(tokenizer), "max_samples": options["max_samples"]},
        lambda: pack_blocks(tokenizer, texts, block),
    )
    if not len(dataset):
        raise UserError(f"{corpus}: too little text for one block")
    collate = token_collate(tokenizer.pad_token_id)
    eval_fn = None
    if options["dev"]:
        dev_blocks = pack_blocks(tokenizer, corpus_texts(Path(options["dev"])), block)

        def eval_fn(m: Any) -> dict[str, float]:
            total, count = 0.0, 0
            for b in dev_blocks:
                ids = torch.tensor([b["input_ids"]], device=m.device)
                n = ids.shape[1] - 1
                total += float(m(ids, labels=ids).loss) * n
                count += n
            loss = total / max(count, 1)
            return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    run(model, tokenizer, options, output, dataset, collate, eval_fn,
        metric="loss", greater_is_better=False, task="lm", device=dev_)


# ============================================================================ generative tasks
RECIPES = ("default", "official")
OFFICIAL_MAX_TOKENS = 1024
OFFICIAL_GRAD_ACCUM = 32
OFFICIAL_AVERAGE = 5


def official_defaults(task: Any) -> dict[str, Any]:
    """TASK_FORMATS.md's recipe of `task` as option defaults (config file and flags still win)."""
    r = task.recipe
    base: dict[str, Any] = {
        "lr": r.lr, "warmup_steps": r.warmup_updates, "scheduler": "inverse_sqrt", "betas": [0.9, 0.98],
        "weight_decay": 0.01, "max_grad_norm": None, "max_tokens": OFFICIAL_MAX_TOKENS, "grad_accum": OFFICIAL_GRAD_ACCUM,
        "loss": "full",
    }
    if r.max_epochs is not None:
        base.update(epochs=r.max_epochs, save_epochs=True, average_last=OFFICIAL_AVERAGE, save_total_limit=OFFICIAL_AVERAGE)
    if r.max_updates is not None:
        base["max_steps"] = r.max_updates
    return base


def learned_tokens(n: int) -> list[str]:
    return [f"learned{i}" for i in range(1, n + 1)]


def add_prompt_tokens(model: Any, tokenizer: Any, tokens: list[str]) -> None:
    """Add `tokens` to the tokenizer and grow the embedding rows (the tied LM head follows):
    old rows copied, new rows drawn like the model's own initialisation."""
    import torch

    tokenizer.add_tokens(tokens)
    size = max(model.config.vocab_size, max(tokenizer.convert_tokens_to_ids(t) for t in tokens) + 1)
    old = model.biogpt.embed_tokens
    if size <= old.num_embeddings:
        return
    new = type(old)(size, old.embedding_dim, old.padding_idx, old.embed_scale).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, mean=0.0, std=model.config.initializer_range)
        new.weight[: old.num_embeddings] = old.weight
    model.biogpt.embed_tokens = new
    head = model.output_projection
    if model.config.tie_word_embeddings:
        head.weight = new.weight
    else:
        grown = torch.nn.Parameter(torch.empty(size, head.in_features, device=head.weight.device, dtype=head.weight.dtype))
        with torch.no_grad():
            torch.nn.init.normal_(grown, mean=0.0, std=model.config.initializer_range)
            grown[: head.out_features] = head.weight
        head.weight = grown
    head.out_features = size
    model.config.vocab_size = size


def generative_features(
    tokenizer: Any, examples: list[Any], prompt: Any, *, positions: int, prompt_length: int, full_loss: bool
) -> list[dict[str, list[int]]]:
    """`</s>` + source (cut at max_source_positions with `...`) + prompt + target + `</s>`; the
    target is cut at 1024 − max_source_positions − prompt length (and to fit the model's
    positions) with its last kept token replaced by `...`. Labels: the whole sequence
    (`full_loss`, the official recipe) or only target + `</s>`."""
    from biogpt.tasks.runner import encode_source

    eos, dots = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("...</w>")
    msp = prompt.max_source_positions or positions
    # small models (tests, --from-scratch): keep a quarter of the positions for the target
    limit = None if positions >= 1024 else max(8, positions - max(4, positions // 4))
    out = []
    for ex in examples:
        src = encode_source(tokenizer, ex.source, prompt, limit=limit)
        tgt = list(tokenizer(ex.target, add_special_tokens=False)["input_ids"])
        cap = min(1024 - msp - prompt_length, positions - len(src) - 1)
        if cap < 1:
            raise UserError(f"{ex.id}: no room for the target after a source of {len(src)} tokens")
        if len(tgt) > cap:
            tgt = tgt[:cap]
            tgt[-1] = dots
        ids = src + tgt + [eos]
        labels = list(ids) if full_loss else [-100] * len(src) + tgt + [eos]
        out.append({"input_ids": ids, "labels": labels})
    return out


def token_budget_batches(features: list[dict[str, list[int]]], max_tokens: int, max_sentences: int | None) -> list[dict[str, Any]]:
    """Deterministic batches of at most `max_tokens` (padded) tokens, examples grouped by length
    (fairseq's batching): each item of the returned dataset is one batch; the trainer shuffles
    batches per epoch. An example longer than the budget is a batch of its own."""
    order = sorted(range(len(features)), key=lambda i: (len(features[i]["input_ids"]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        n = len(features[i]["input_ids"])
        grown = max(width, n)
        if current and (grown * (len(current) + 1) > max_tokens or (max_sentences and len(current) >= max_sentences)):
            batches.append(current)
            current, grown = [], n
        current.append(i)
        width = grown
    if current:
        batches.append(current)
    return [{"input_ids": [features[i]["input_ids"] for i in b], "labels": [features[i]["labels"] for i in b]} for b in batches]


def batch_collate(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    inner = token_collate(pad_id)

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return inner([{"input_ids": i, "labels": l} for item in items for i, l in zip(item["input_ids"], item["labels"])])

    return collate


def generative_eval(task: Any, tokenizer: Any, examples: list[Any], prompt: Any, *, positions: int, max_new_tokens: int | None) -> Callable[[Any], dict[str, float]]:
    """Greedy generation on the dev examples, parsed and scored by the task."""
    from biogpt.tasks.runner import encode_source, generate_outputs

    limit = None if positions >= 1024 else max(8, positions - max(4, positions // 4))
    inputs = [encode_source(tokenizer, ex.source, prompt, limit=limit) for ex in examples]
    decoding: dict[str, Any] = {"num_beams": 1}
    if max_new_tokens:
        decoding["max_new_tokens"] = max_new_tokens

    def eval_fn(model: Any) -> dict[str, float]:
        predictions = []
        for i in range(0, len(examples), 8):
            outs = generate_outputs(model, tokenizer, inputs[i : i + 8], task=task, decoding=decoding)
            predictions += [task.parse(o.output, ex) for o, ex in zip(outs, examples[i : i + 8])]
        scores = task.score(examples, predictions)
        return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    return eval_fn


def train_generative(command: str, task_name: str | None, data: Optional[Path], output: Path, config_file: Optional[Path], given: dict[str, Any]) -> dict[str, Any]:
    """Causal-LM fine-tuning on a task's source → target (train re / qa / classify --generative)."""
    from biogpt.model import BioGptForCausalLM
    from biogpt.tasks import TaskDataError
    from biogpt.tasks.runner import PromptRecipe, save_recipe

    from .._taskrun import get_task

    options = resolve_options(config_file, given)
    if options["template"] and options["task"] in (None, "custom"):
        options["task"] = "custom"
    name = options["task"] or task_name
    if not name:
        raise UserError(f"train {command}: pass --task (or --template for your own relation schema)")
    task = get_task(name)
    if options["recipe"] not in RECIPES:
        raise UserError(f"--recipe {options['recipe']}: expected {', '.join(RECIPES)}")
    if task.name == "custom":
        from biogpt.tasks.custom import CustomRelationTask

        try:
            task = CustomRelationTask(options["template"])
        except TaskDataError as exc:
            raise UserError(f"--template: {exc}") from None
    official = options["recipe"] == "official"
    if official:
        if task.recipe is None:
            raise UserError(f"--recipe official: {task.name} has no official recipe (use --recipe default)")
        options = resolve_options(config_file, given, base=official_defaults(task))
    if data is None:
        raise UserError(f"train {command}: no data given (the task's folder or file)")
    load_options: dict[str, Any] = {}
    if "setting" in task.options and options["setting"]:
        load_options["setting"] = options["setting"]
    try:
        examples = task.load(data, options["data_split"], **load_options)[: options["max_samples"]]
    except TaskDataError as exc:
        raise UserError(str(exc)) from None
    dev_examples: list[Any] = []
    if options["dev_limit"] != 0:
        dev_source = Path(options["dev"]) if options["dev"] else data
        try:
            dev_examples = task.load(dev_source, options["dev_split"], **load_options)[: options["dev_limit"]]
        except TaskDataError as exc:
            if options["dev"]:
                raise UserError(str(exc)) from None
            logger.warning("no dev set (%s): model-best is the last model", exc)
    dev_ = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForCausalLM, options, dev_)
    prompt_length = task.recipe.prompt_length if (official and task.recipe) else 0
    tokens = learned_tokens(prompt_length)
    if tokens:
        add_prompt_tokens(model, tokenizer, tokens)
    setting = None
    if examples and "setting" in (examples[0].meta or {}):
        setting = examples[0].meta["setting"]
    prompt = PromptRecipe(task=task.name, setting=setting, prompt_tokens=tokens,
                          max_source_positions=task.recipe.max_source_positions if task.recipe else None)
    save_recipe(model, prompt)  # before any save: model-best / model-last / checkpoints carry it
    if task.name == "custom":
        model.config.extra["biogpt_task"]["template"] = task.template
    positions = model.config.max_position_embeddings
    full_loss = (options["loss"] or ("full" if official else "target")) == "full"
    features = generative_features(tokenizer, examples, prompt, positions=positions, prompt_length=prompt_length, full_loss=full_loss)
    pad = tokenizer.pad_token_id
    if options["max_tokens"]:
        dataset: Any = token_budget_batches(features, options["max_tokens"], None if official else given.get("batch_size"))
        collate = batch_collate(pad)
        options = {**options, "batch_size": 1}
    else:
        dataset, collate = features, token_collate(pad)
    eval_fn = generative_eval(task, tokenizer, dev_examples, prompt, positions=positions, max_new_tokens=options["max_new_tokens"]) if dev_examples else None
    metric = "f1" if "f1" in task.headline else task.headline[0]
    summary = run(model, tokenizer, options, output, dataset, collate, eval_fn, metric=metric, greater_is_better=True,
                  task=f"{command}:{task.name}", device=dev_)
    if options["average_last"]:
        from ..trainer import dist_info
        from .average import average_checkpoints, newest_checkpoints

        if dist_info()[0] == 0:
            dirs = newest_checkpoints(output, options["average_last"])
            if dirs:
                average_checkpoints(dirs, output / "model-average")
                logger.info("averaged %d checkpoints into %s", len(dirs), output / "model-average")
    return summary


@train_app.command("re")
def re_(
    data_arg: Optional[Path] = typer.Argument(None, help="The task's data: folder (train.json, valid.json) or file; or --data."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    task_name: Optional[str] = typer.Option(None, "--task", "-t", help="bc5cdr, kd-dti, ddi, or custom (with --template)."),
    data_opt: Optional[Path] = typer.Option(None, "--data", help="The task's data (as the argument)."),
    template: Optional[str] = typer.Option(None, "--template", help="Your relation schema: a clause with {head}, {tail} and {relation}; data: JSONL {'text','relations':[{'head','tail','relation'}]}."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="default (loss on the target, no prompt) or official (TASK_FORMATS.md)."),
    data_split: Optional[str] = typer.Option(None, "--data-split"),
    dev_split: Optional[str] = typer.Option(None, "--dev-split"),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev data if not in the training folder."),
    dev_limit: Optional[int] = typer.Option(None, "--dev-limit", min=0, help="Score only the first N dev examples (0: no dev)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="Generation budget when scoring dev."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget per batch (official: 1024)."),
    model_name: Optional[str] = typer.Option(None, "--model", "-m"),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=1.0),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1),
    patience: Optional[int] = typer.Option(None, "--patience", min=1),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0),
    average_last: Optional[int] = typer.Option(None, "--average-last", min=1, help="Save a checkpoint per epoch and average the last K into OUTDIR/model-average (official: 5)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help=CUDA_GRAPH_HELP),
    resume: bool = typer.Option(False, "--resume"),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from"),
    config_file: Optional[Path] = typer.Option(None, "--config"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Relation extraction as generation (BC5CDR, KD-DTI, DDI, or your own schema); the result
    works with `biogpt extract-relations -m OUTDIR/model-best`.

    Example: biogpt train re --task bc5cdr data/BC5CDR -o re-run --recipe official
    """
    given = given_flags(
        locals(), task=task_name, template=template, recipe=recipe, data_split=data_split, dev_split=dev_split,
        dev_limit=dev_limit, max_new_tokens=max_new_tokens, max_tokens=max_tokens, average_last=average_last,
        save_epochs=True if average_last else None,
    )
    name = task_name or ("custom" if template else None)
    if name is not None and name.lower() not in ("bc5cdr", "kd-dti", "kd_dti", "ddi", "custom", "cdr", "dti"):
        raise UserError(f"--task {name}: train re takes bc5cdr, kd-dti, ddi or custom (--template)")
    train_generative("re", name, data_opt or data_arg, output, config_file, given)


@train_app.command("qa")
def qa_(
    data_arg: Optional[Path] = typer.Argument(None, help="ori_pqal.json or its folder; or --data."),
    output: Path = typer.Option(..., "--output", "-o"),
    task_name: str = typer.Option("pubmedqa", "--task", "-t"),
    data_opt: Optional[Path] = typer.Option(None, "--data"),
    setting: Optional[str] = typer.Option(None, "--setting", help="PubMedQA setting (default: the task's)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="default or official."),
    data_split: Optional[str] = typer.Option(None, "--data-split"),
    dev_split: Optional[str] = typer.Option(None, "--dev-split"),
    dev: Optional[Path] = typer.Option(None, "--dev"),
    dev_limit: Optional[int] = typer.Option(None, "--dev-limit", min=0),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1),
    model_name: Optional[str] = typer.Option(None, "--model", "-m"),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    dropout: Optional[float] = typer.Option(None, "--dropout", min=0.0, max=1.0),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1),
    patience: Optional[int] = typer.Option(None, "--patience", min=1),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0),
    average_last: Optional[int] = typer.Option(None, "--average-last", min=1),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help=CUDA_GRAPH_HELP),
    resume: bool = typer.Option(False, "--resume"),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from"),
    config_file: Optional[Path] = typer.Option(None, "--config"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Question answering as generation (PubMedQA); the result works with `biogpt qa -m`.

    Example: biogpt train qa --task pubmedqa data/PubMedQA -o qa-run --recipe official
    """
    given = given_flags(
        locals(), task=task_name, setting=setting, recipe=recipe, data_split=data_split, dev_split=dev_split,
        dev_limit=dev_limit, max_new_tokens=max_new_tokens, max_tokens=max_tokens, average_last=average_last,
        save_epochs=True if average_last else None,
    )
    train_generative("qa", task_name, data_opt or data_arg, output, config_file, given)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
