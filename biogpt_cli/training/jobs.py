"""One function per kind of training run, each what `biogpt train <kind>` does:

    train_ner(train_file, output, dev=..., epochs=..., ...)        token classification
    train_classify(train_file, output, ...)                       a classification head
    train_lm(corpus, output, ...)                                 causal LM on packed blocks
    train_generative(command, task, data, output, ...)            a task as generation

Keyword options are those of `biogpt train` (underscored: `batch_size`, `from_scratch`); None
means not given, so `config_file` and the defaults decide (`resolve_options`). Each writes
OUTDIR/model-best and OUTDIR/model-last (loadable directories with training_config.json),
OUTDIR/metrics.jsonl and OUTDIR/checkpoints/step-N, and returns the trainer's summary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from biogpt import DEFAULT_MODEL

from .data import classify_rows, corpus_texts, ner_documents
from .errors import TrainingError
from .features import (
    batch_collate, cached_features, classify_collate, classify_features, generative_features, ner_features, pack_blocks,
    source_limit, token_budget_batches, token_collate,
)
from .options import resolve_options
from .recipes import RECIPES, add_prompt_tokens, learned_tokens, official_defaults

logger = logging.getLogger(__name__)


# ============================================================================ shared steps
def resolve_train_device(name: str) -> Any:
    """The device, after joining the process group when run under torchrun (WORLD_SIZE > 1):
    gloo on CPU, nccl on GPU (each rank on cuda:LOCAL_RANK)."""
    import os

    import torch

    from biogpt.devices import resolve_device

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
    return device


def build_model(cls: Any, options: dict[str, Any], device: Any, **overrides: Any) -> tuple[Any, Any]:
    """(model, tokenizer): `options["model"]` (pretrained weights, a fresh head) or
    `options["from_scratch"]` (a preset name or a config.json, randomly initialised), drawn
    after seeding with `options["seed"]`."""
    from biogpt.model import BioGptConfig, BioGptTokenizer

    from .seeding import seed_everything

    # before anything is drawn: a new head (`score`, `classifier`), a model from scratch and the
    # learned prompt rows added after this all follow from --seed (seeding.py says what holds where)
    seed_everything(options["seed"], deterministic=bool(options["deterministic"]))
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
        model = cls.from_config(config, device=device)
        return model, tokenizer
    name = options["model"]
    # float32 master weights whatever the checkpoint stores (from_pretrained's default is its dtype)
    model = cls.from_pretrained(name, device=device, dtype="float32", **overrides)
    tok_path, extra = getattr(model, "tokenizer_source", (name, []))
    return model, BioGptTokenizer.from_pretrained(tok_path or name, extra_symbols=extra)


def fit(
    model: Any,
    tokenizer: Any,
    options: dict[str, Any],
    output: Path,
    dataset: Any,
    collate: Callable[[list[Any]], dict[str, Any]],
    eval_fn: Callable[[Any], dict[str, float]] | None,
    *,
    metric: str,
    greater_is_better: bool,
    task: str,
    device: Any,
    display: Any = None,
) -> dict[str, Any]:
    """Train with the resolved `options` into `output` (a new run, or a resumed one)."""
    from .trainer import Trainer, TrainingArgs, latest_checkpoint  # torch: only when training

    # A checkpoint at every epoch end (the last two kept unless save_total_limit says otherwise)
    # makes any run resumable, even after a hard kill; average_last K keeps at least K.
    keep = options["save_total_limit"]
    if keep is None and options["save_epochs"]:
        keep = max(2, options.get("average_last") or 0)
    elif keep is not None and options.get("average_last"):
        keep = max(keep, options["average_last"])
    args = TrainingArgs(
        output_dir=str(output), epochs=options["epochs"], max_steps=options["max_steps"], lr=options["lr"],
        batch_size=options["batch_size"], grad_accum=options["grad_accum"], scheduler=options["scheduler"],
        warmup_steps=options["warmup_steps"], bf16=options["bf16"], eval_steps=options["eval_steps"],
        save_steps=options["save_steps"], save_total_limit=keep, patience=options["patience"],
        seed=options["seed"], metric=metric if eval_fn is not None else "loss", greater_is_better=greater_is_better and eval_fn is not None,
        betas=tuple(options["betas"]), max_grad_norm=options["max_grad_norm"], weight_decay=options["weight_decay"],
        save_epochs=bool(options["save_epochs"]), cuda_graph=bool(options["cuda_graph"]), deterministic=bool(options["deterministic"]),
        extra={"task": task, **{k: options[k] for k in ("model", "from_scratch", "dropout", "max_samples", "dev", "gradient_checkpointing")}},
    )
    resume = options["resume"]
    checkpoint: Path | None = None
    if resume:
        checkpoint = latest_checkpoint(output) if resume in ("latest", True) else Path(resume)
        if checkpoint is None:
            raise TrainingError(f"--resume: no checkpoint under {output / 'checkpoints'}")
    elif (output / "model-last").exists() or (output / "checkpoints").exists():
        raise TrainingError(f"{output} already holds a training run; pass --resume to continue it or choose another -o")
    if output.exists() and not output.is_dir():
        raise TrainingError(f"-o {output}: is a file; training writes a directory (checkpoints, model-best, metrics)")
    if options["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    trainer = Trainer(model, args, dataset, collate, eval_fn=eval_fn, tokenizer=tokenizer, device=device, display=display)
    summary = trainer.train(resume=checkpoint)
    logger.info("training done: %s", summary)
    return summary


# ============================================================================ NER
def ner_score(model: Any, tokenizer: Any, docs: list[tuple[str, str, list[tuple[int, int, str]]]]) -> dict[str, Any]:
    """seqeval entity-level strict IOB2 scores of the model's entities (tasks/ner.py's metric)."""
    from biogpt.heads import tag_text
    from biogpt.tasks.base import Example, Prediction
    from biogpt.tasks.ner import NERTask

    examples, predictions = [], []
    for doc_id, text, spans in docs:
        examples.append(Example(id=doc_id, source=text, target="", gold=[{"start": s, "end": e, "label": l} for s, e, l in spans], text=text))
        predictions.append(Prediction(id=doc_id, value=tag_text(model, tokenizer, text)))
    return NERTask().score(examples, predictions)


def train_ner(train_file: Path, output: Path, *, config_file: Optional[Path] = None, display: Any = None, **given: Any) -> dict[str, Any]:
    """Token classification, labels on each word's first BPE piece; seqeval F1 on `dev` picks
    model-best."""
    from biogpt.model import BioGptForTokenClassification

    options = resolve_options(config_file, given)
    docs = ner_documents(train_file)[: options["max_samples"]]
    dev_docs = ner_documents(Path(options["dev"])) if options["dev"] else None
    types = sorted({label for _, _, spans in docs + (dev_docs or []) for _, _, label in spans})
    tags = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    device = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForTokenClassification, options, device, id2label=dict(enumerate(tags)))
    label2id = model.config.label2id
    size = model.config.max_position_embeddings
    dataset = cached_features(
        [train_file], {"kind": "ner", "labels": label2id, "size": size, "vocab": len(tokenizer), "max_samples": options["max_samples"]},
        lambda: [f for _, text, spans in docs for f in ner_features(tokenizer, text, spans, label2id, size)],
    )
    eval_fn = (lambda m: {k: v for k, v in ner_score(m, tokenizer, dev_docs).items() if isinstance(v, float)}) if dev_docs else None
    return fit(model, tokenizer, options, output, dataset, token_collate(tokenizer.pad_token_id), eval_fn,
               metric="f1", greater_is_better=True, task="ner", device=device, display=display)


# ============================================================================ classification
def train_classify(train_file: Path, output: Path, *, config_file: Optional[Path] = None, display: Any = None, **given: Any) -> dict[str, Any]:
    """A document classification head, single- or multi-label (`labels` lists in the data);
    micro F1 on `dev` picks model-best."""
    from biogpt.model import BioGptForSequenceClassification

    options = resolve_options(config_file, given)
    rows, multi = classify_rows(train_file)
    rows = rows[: options["max_samples"]]
    dev_rows: list[tuple[str, list[str]]] | None = None
    if options["dev"]:
        dev_rows, dev_multi = classify_rows(Path(options["dev"]))
        multi = multi or dev_multi
    names = sorted({label for _, labels in rows + (dev_rows or []) for label in labels})
    problem = "multi_label_classification" if multi else "single_label_classification"
    device = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForSequenceClassification, options, device, id2label=dict(enumerate(names)), problem_type=problem)
    model.config.problem_type = problem
    size = model.config.max_position_embeddings
    dataset = cached_features(
        [train_file], {"kind": "classify", "labels": names, "multi": multi, "size": size, "vocab": len(tokenizer),
                       "max_samples": options["max_samples"]},
        lambda: classify_features(tokenizer, rows, names, model.config.label2id, multi=multi, size=size),
    )
    eval_fn = classify_eval(tokenizer, dev_rows, names) if dev_rows else None
    return fit(model, tokenizer, options, output, dataset, classify_collate(tokenizer.pad_token_id, multi=multi), eval_fn,
               metric="f1_micro", greater_is_better=True, task="classify", device=device, display=display)


def classify_eval(tokenizer: Any, dev_rows: list[tuple[str, list[str]]], names: list[str]) -> Callable[[Any], dict[str, float]]:
    """Accuracy and macro / micro F1 of the head's labels on the dev documents."""

    def eval_fn(model: Any) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        from biogpt.heads import classify_with_head

        gold = [labels for _, labels in dev_rows]
        pred = [classify_with_head(model, tokenizer, text)["labels"] for text, _ in dev_rows]
        binar = MultiLabelBinarizer(classes=names).fit([names])
        y_true, y_pred = binar.transform(gold), binar.transform(pred)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        }

    return eval_fn


# ============================================================================ language model
def train_lm(corpus: Path, output: Path, *, config_file: Optional[Path] = None, display: Any = None, **given: Any) -> dict[str, Any]:
    """Continued causal-LM training on packed blocks; dev perplexity picks model-best."""
    from biogpt.model import BioGptForCausalLM

    options = resolve_options(config_file, given)
    texts = corpus_texts(corpus)[: options["max_samples"]]  # bad data fails before a model is built
    device = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForCausalLM, options, device)
    block = min(options["block_size"] or model.config.max_position_embeddings, model.config.max_position_embeddings)
    dataset = cached_features(
        [corpus], {"kind": "lm", "block": block, "vocab": len(tokenizer), "max_samples": options["max_samples"]},
        lambda: pack_blocks(tokenizer, texts, block),
    )
    if not len(dataset):
        raise TrainingError(f"{corpus}: too little text for one block")
    eval_fn = perplexity_eval(pack_blocks(tokenizer, corpus_texts(Path(options["dev"])), block)) if options["dev"] else None
    return fit(model, tokenizer, options, output, dataset, token_collate(tokenizer.pad_token_id), eval_fn,
               metric="loss", greater_is_better=False, task="lm", device=device, display=display)


def perplexity_eval(blocks: list[dict[str, list[int]]]) -> Callable[[Any], dict[str, float]]:
    """Mean next-token loss (and its perplexity) over the dev blocks."""

    def eval_fn(model: Any) -> dict[str, float]:
        import torch

        total, count = 0.0, 0
        for b in blocks:
            ids = torch.tensor([b["input_ids"]], device=model.device)
            n = ids.shape[1] - 1
            total += float(model(ids, labels=ids, use_cache=False).loss) * n  # a score: no cache
            count += n
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    return eval_fn


# ============================================================================ generative tasks
def generative_eval(task: Any, tokenizer: Any, examples: list[Any], prompt: Any, *, positions: int, max_new_tokens: int | None) -> Callable[[Any], dict[str, float]]:
    """Greedy generation on the dev examples, parsed and scored by the task."""
    from biogpt.tasks.runner import SourceCuts, encode_source, generate_outputs

    cuts = SourceCuts()
    inputs = [encode_source(tokenizer, ex.source, prompt, limit=source_limit(positions), cuts=cuts) for ex in examples]
    cuts.report("dev sources")
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


def generative_task(command: str, task_name: str | None, options: dict[str, Any]) -> Any:
    """The task to fine-tune on: `task` (or `task_name`), a custom one from `template`."""
    from biogpt.tasks import TaskDataError, get_task

    name = options["task"] or task_name
    if not name:
        raise TrainingError(f"train {command}: pass --task (or --template for your own relation schema)")
    try:
        task = get_task(name)
    except TaskDataError as exc:
        raise TrainingError(f"--task {name}: {exc}") from None
    if options["recipe"] not in RECIPES:
        raise TrainingError(f"--recipe {options['recipe']}: expected {', '.join(RECIPES)}")
    if task.name == "custom":
        from biogpt.tasks.custom import CustomRelationTask

        try:
            task = CustomRelationTask(options["template"])
        except TaskDataError as exc:
            raise TrainingError(f"--template: {exc}") from None
    return task


def load_examples(task: Any, data: Path, options: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(training examples, dev examples): the dev split of `dev`, else of the training data
    (where it is missing, no dev set: model-best is then the last model)."""
    from biogpt.model.errors import PathError
    from biogpt.tasks import TaskDataError

    load_options: dict[str, Any] = {}
    if "setting" in task.options and options["setting"]:
        load_options["setting"] = options["setting"]
    # the data's own errors go up as they are: bad data exits 1, a missing path 2 (as in `eval`)
    examples = task.load(data, options["data_split"], **load_options)[: options["max_samples"]]
    dev_examples: list[Any] = []
    if options["dev_limit"] != 0:
        dev_source = Path(options["dev"]) if options["dev"] else data
        try:
            dev_examples = task.load(dev_source, options["dev_split"], **load_options)[: options["dev_limit"]]
        except (TaskDataError, PathError) as exc:
            if options["dev"]:
                raise
            logger.warning("no dev set (%s): model-best is the last model", exc)
    return examples, dev_examples


def train_generative(
    command: str, task_name: str | None, data: Optional[Path], output: Path, *,
    config_file: Optional[Path] = None, display: Any = None, **given: Any,
) -> dict[str, Any]:
    """Causal-LM fine-tuning on a task's source → target (`biogpt train re`, `train qa`,
    `train classify --generative`); `command` names the run in messages and metrics."""
    from biogpt.model import BioGptForCausalLM
    from biogpt.tasks.runner import PromptRecipe, save_recipe

    options = resolve_options(config_file, given)
    if options["template"] and options["task"] in (None, "custom"):
        options["task"] = "custom"
    task = generative_task(command, task_name, options)
    official = options["recipe"] == "official"
    if official:
        if task.recipe is None:
            raise TrainingError(f"--recipe official: {task.name} has no official recipe (use --recipe default)")
        options = resolve_options(config_file, given, base=official_defaults(task))
    if data is None:
        raise TrainingError(f"train {command}: no data given (the task's folder or file)")
    examples, dev_examples = load_examples(task, data, options)
    device = resolve_train_device(options["device"])
    model, tokenizer = build_model(BioGptForCausalLM, options, device)
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
    summary = fit(model, tokenizer, options, output, dataset, collate, eval_fn, metric=metric,
                  greater_is_better=True, task=f"{command}:{task.name}", device=device, display=display)
    if options["average_last"]:
        from .averaging import average_checkpoints, newest_checkpoints
        from .trainer import dist_info

        if dist_info()[0] == 0:
            dirs = newest_checkpoints(output, options["average_last"])
            if dirs:
                average_checkpoints(dirs, output / "model-average")
                logger.info("averaged %d checkpoints into %s", len(dirs), output / "model-average")
    return summary
