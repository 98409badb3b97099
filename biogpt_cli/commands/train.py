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
from ..trainer import Trainer, TrainingArgs, latest_checkpoint

logger = logging.getLogger(__name__)

train_app = typer.Typer(help="Train or fine-tune a model (NER, classification, language model).", no_args_is_help=True)

DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL, "from_scratch": None, "epochs": 3, "max_steps": None, "lr": 5e-5, "batch_size": 8,
    "grad_accum": 1, "max_samples": None, "seed": 42, "dropout": None, "eval_steps": None, "save_steps": None,
    "save_total_limit": None, "patience": None, "scheduler": "linear", "warmup_steps": 0, "bf16": False, "gradient_checkpointing": False,
    "resume": None, "device": "auto", "dev": None, "block_size": None,
}


# ============================================================================ shared plumbing
def resolve_options(config_file: Optional[Path], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults < --config file < flags given on the command line (None means not given)."""
    options = dict(DEFAULTS)
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
    return options


def cached_features(
    sources: list[Path], key: dict[str, Any], build: Callable[[], list[dict[str, Any]]]
) -> Any:
    """Tokenize once: the features of `sources` are stored with `datasets` (Arrow, memory-mapped
    on reuse) under its cache, keyed by the files' contents and the tokenization settings, so a
    second run on the same data (another seed, --resume, a sweep) skips tokenization."""
    import hashlib

    import datasets

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
    from model import BioGptConfig, BioGptTokenizer

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
    args = TrainingArgs(
        output_dir=str(output), epochs=options["epochs"], max_steps=options["max_steps"], lr=options["lr"],
        batch_size=options["batch_size"], grad_accum=options["grad_accum"], scheduler=options["scheduler"],
        warmup_steps=options["warmup_steps"], bf16=options["bf16"], eval_steps=options["eval_steps"],
        save_steps=options["save_steps"], save_total_limit=options["save_total_limit"], patience=options["patience"],
        seed=options["seed"], metric=metric if eval_fn is not None else "loss", greater_is_better=greater_is_better and eval_fn is not None,
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
    if options["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    trainer = Trainer(model, args, dataset, collate, eval_fn=eval_fn, tokenizer=tokenizer, device=device, quiet=_common.QUIET)
    summary = trainer.train(resume=checkpoint)
    logger.info("training done: %s", summary)
    return summary


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
            text, spans, pos = "", [], 0
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
    from tasks.base import Example, Prediction
    from tasks.ner import NERTask

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
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch", help="A preset (tiny, small, biogpt) or config.json."),
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
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Token classification (NER) with labels on each word's first BPE piece.

    Example: biogpt train ner train.jsonl --dev dev.jsonl -o ner-run
    """
    from model import BioGptForTokenClassification

    from .tag import ner_features

    options = resolve_options(config_file, dict(
        model=model_name, from_scratch=from_scratch, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, max_samples=max_samples, seed=seed, dropout=dropout, eval_steps=eval_steps,
        save_steps=save_steps, save_total_limit=save_total_limit, patience=patience, scheduler=scheduler,
        warmup_steps=warmup_steps, bf16=bf16, gradient_checkpointing=gradient_checkpointing, resume=_resume_value(resume, resume_from), device=device, dev=str(dev) if dev else None,
    ))
    docs = ner_documents(train_file)[: options["max_samples"]]
    dev_docs = ner_documents(Path(options["dev"])) if options["dev"] else None
    types = sorted({label for _, _, spans in docs + (dev_docs or []) for _, _, label in spans})
    tags = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    id2label = dict(enumerate(tags))
    dev_ = resolve_device(options["device"])
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
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Document classification head (single- or multi-label); the result works with `biogpt classify -m`."""
    import torch
    from model import BioGptForSequenceClassification

    options = resolve_options(config_file, dict(
        model=model_name, from_scratch=from_scratch, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, max_samples=max_samples, seed=seed, dropout=dropout, eval_steps=eval_steps,
        save_steps=save_steps, save_total_limit=save_total_limit, patience=patience, scheduler=scheduler,
        warmup_steps=warmup_steps, bf16=bf16, gradient_checkpointing=gradient_checkpointing, resume=_resume_value(resume, resume_from), device=device, dev=str(dev) if dev else None,
    ))
    rows, multi = classify_rows(train_file)
    rows = rows[: options["max_samples"]]
    dev_rows: list[tuple[str, list[str]]] | None = None
    if options["dev"]:
        dev_rows, dev_multi = classify_rows(Path(options["dev"]))
        multi = multi or dev_multi
    names = sorted({label for _, labels in rows + (dev_rows or []) for label in labels})
    problem = "multi_label_classification" if multi else "single_label_classification"
    dev_ = resolve_device(options["device"])
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
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTDIR/checkpoints."),
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Continue from this checkpoint directory."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML of these options; flags override it."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Continued causal-LM training on packed blocks; dev perplexity picks model-best.

    Example: biogpt train lm my_abstracts.txt --dev held_out.txt -o lm-run
    """
    import torch
    from model import BioGptForCausalLM

    options = resolve_options(config_file, dict(
        model=model_name, from_scratch=from_scratch, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, max_samples=max_samples, seed=seed, dropout=dropout, eval_steps=eval_steps,
        save_steps=save_steps, save_total_limit=save_total_limit, patience=patience, scheduler=scheduler,
        warmup_steps=warmup_steps, bf16=bf16, gradient_checkpointing=gradient_checkpointing, resume=_resume_value(resume, resume_from), device=device, dev=str(dev) if dev else None,
        block_size=block_size,
    ))
    dev_ = resolve_device(options["device"])
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


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
