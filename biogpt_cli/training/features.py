"""Feature builders of the training runs: token ids and labels per example, batches and their
collation, and a tokenization cache."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from biogpt.heads import Span, encode_words, windows, word_tags
from biogpt.model.files import open_input

from .errors import TrainingError

logger = logging.getLogger(__name__)


def cached_features(sources: list[Path], key: dict[str, Any], build: Callable[[], list[dict[str, Any]]]) -> Any:
    """Tokenize once: the features of `sources` are stored with `datasets` (Arrow, memory-mapped
    on reuse) under its cache, keyed by the files' contents and the tokenization settings, so a
    second run on the same data (another seed, a resume, a sweep) skips tokenization."""
    import hashlib

    import datasets

    datasets.disable_progress_bars()  # the CLI's own progress goes to stderr; keep -q quiet
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(key, sort_keys=True, default=str).encode())
    for path in sources:
        with open_input(path) as source:  # the content as read (a gzip file's text, not its bytes)
            for _, raw in source.raw_lines():
                digest.update(raw)
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


def pad_rows(rows: list[list[int]], value: int) -> Any:
    """Right-padded to the longest row, as one tensor."""
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def token_collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    """Batches of `{"input_ids","labels"}` rows: padded ids, their mask, labels padded with -100."""

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids = pad_rows([r["input_ids"] for r in rows], pad_id)
        return {"input_ids": ids, "attention_mask": (ids != pad_id).long(), "labels": pad_rows([r["labels"] for r in rows], -100)}

    return collate


def ner_features(tokenizer: Any, text: str, spans: list[Span], label2id: dict[str, int], size: int) -> list[dict[str, list[int]]]:
    """Training windows of one document: ids and labels on each word's first piece (-100
    elsewhere), windowed as `biogpt tag` reads a long document."""
    ids, _, words = encode_words(tokenizer, text)
    labels = [-100] * len(ids)
    for (first, _, _), tag in zip(words, word_tags(text, words, spans)):
        if tag not in label2id:
            raise TrainingError(f"label {tag!r} is not in the model's labels ({', '.join(label2id)})")
        labels[first] = label2id[tag]
    return [{"input_ids": ids[:1] + ids[s:e], "labels": [-100] + labels[s:e]} for s, e in windows(len(ids), size)]


def classify_features(
    tokenizer: Any, rows: list[tuple[str, list[str]]], names: list[str], label2id: dict[str, int], *, multi: bool, size: int
) -> list[dict[str, Any]]:
    """`{"input_ids","label"}` per document: its label's index, or a 0/1 vector over `names` when
    multi-label; a document longer than the model's positions is cut (one warning for the run)."""
    features, cut, longest = [], 0, 0
    for text, labels in rows:
        ids = tokenizer(text)["input_ids"]
        if len(ids) > size:
            cut, longest = cut + 1, max(longest, len(ids))
        target: Any = [1.0 if name in labels else 0.0 for name in names] if multi else label2id[labels[0]]
        features.append({"input_ids": ids[:size], "label": target})
    if cut:  # one line for the run, not one per document
        logger.warning("%d documents truncated to %d tokens for training (longest: %d tokens)", cut, size, longest)
    return features


def classify_collate(pad_id: int, *, multi: bool) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = pad_rows([r["input_ids"] for r in batch], pad_id)
        labels = torch.tensor([r["label"] for r in batch], dtype=torch.float if multi else torch.long)
        return {"input_ids": ids, "attention_mask": (ids != pad_id).long(), "labels": labels}

    return collate


def pack_blocks(tokenizer: Any, texts: list[str], block: int) -> list[dict[str, list[int]]]:
    """Documents (each starting with </s>, as BioGPT saw them) concatenated and cut into blocks."""
    stream = [i for text in texts for i in tokenizer(text)["input_ids"]]
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    blocks = [b for b in blocks if len(b) > 1]
    return [{"input_ids": b, "labels": b} for b in blocks]


def generative_features(
    tokenizer: Any, examples: list[Any], prompt: Any, *, positions: int, prompt_length: int, full_loss: bool
) -> list[dict[str, list[int]]]:
    """`</s>` + source (cut at max_source_positions with `...`) + prompt + target + `</s>`; the
    target is cut at 1024 − max_source_positions − prompt length (and to fit the model's
    positions) with its last kept token replaced by `...`. Labels: the whole sequence
    (`full_loss`, the official recipe) or only target + `</s>`."""
    from biogpt.tasks.runner import SourceCuts, encode_source

    eos, dots = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("...</w>")
    msp = prompt.max_source_positions or positions
    limit = source_limit(positions)
    out = []
    cuts = SourceCuts()
    for ex in examples:
        src = encode_source(tokenizer, ex.source, prompt, limit=limit, cuts=cuts)
        tgt = list(tokenizer(ex.target, add_special_tokens=False)["input_ids"])
        cap = min(1024 - msp - prompt_length, positions - len(src) - 1)
        if cap < 1:
            raise TrainingError(f"{ex.id}: no room for the target after a source of {len(src)} tokens")
        if len(tgt) > cap:
            tgt = tgt[:cap]
            tgt[-1] = dots
        ids = src + tgt + [eos]
        labels = list(ids) if full_loss else [-100] * len(src) + tgt + [eos]
        out.append({"input_ids": ids, "labels": labels})
    cuts.report("training sources")
    return out


def source_limit(positions: int) -> int | None:
    """Longest source of a model with `positions` positions: none for the paper's models;
    small ones (tests, from scratch) keep a quarter of their positions for the target."""
    return None if positions >= 1024 else max(8, positions - max(4, positions // 4))


def token_budget_batches(features: list[dict[str, list[int]]], max_tokens: int, max_sentences: int | None) -> list[dict[str, Any]]:
    """Deterministic batches of at most `max_tokens` (padded) tokens, examples grouped by length
    (fairseq's batching, as the batch commands plan theirs): each item of the returned dataset
    is one batch; the trainer shuffles batches per epoch. An example longer than the budget is
    a batch of its own."""
    from biogpt.batching import plan_batches

    lengths = [len(f["input_ids"]) for f in features]
    batches = plan_batches(lengths, batch_size=max_sentences or max(len(features), 1), max_tokens=max_tokens)
    return [{"input_ids": [features[i]["input_ids"] for i in b], "labels": [features[i]["labels"] for i in b]} for b in batches]


def batch_collate(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Collation of `token_budget_batches` items (each one whole batch)."""
    inner = token_collate(pad_id)

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return inner([{"input_ids": i, "labels": l} for item in items for i, l in zip(item["input_ids"], item["labels"])])

    return collate
