"""Logits processors: each maps (ids (N, L), scores (N, V)) to new scores, as transformers' do,
built in transformers' order by `build_processors`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .config import GenerationConfig

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids (N, L), scores (N, V)) -> scores


def repetition_penalty(penalty: float, ignore_lengths: torch.Tensor | None) -> LogitsProcessor:
    """Divide positive / multiply negative scores of tokens already present (left padding ignored)."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if ignore_lengths is not None:
            cols = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(cols[None, :] < ignore_lengths[:, None], V)
        ids = ids.clamp(max=V)
        padded = F.pad(scores, (0, 1))
        seen = padded.gather(1, ids)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return padded.scatter(1, ids, seen)[:, :V]

    return apply


def no_repeat_ngram(n: int) -> LogitsProcessor:
    """Ban every token that would repeat an n-gram already in the sequence."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        L = ids.shape[1]
        if L < n:
            return scores
        prefix = ids[:, L + 1 - n :]  # (N, n-1)
        windows = ids.unfold(1, n, 1)  # (N, L-n+1, n)
        hits = (windows[..., :-1] == prefix[:, None, :]).all(-1)  # (N, L-n+1)
        V = scores.shape[-1]
        banned = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(hits, windows[..., -1].clamp(max=V), V), True)
        return scores.masked_fill(banned[:, :V], -math.inf)

    return apply


def bad_words(bad_words_ids: Sequence[Sequence[int]], eos: Sequence[int]) -> LogitsProcessor:
    """Forbid the last token of each banned sequence when the tokens before it were just produced."""
    if not bad_words_ids or any(not seq or any(int(t) < 0 for t in seq) for seq in bad_words_ids):
        raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {bad_words_ids!r}")
    sequences = [tuple(int(t) for t in seq) for seq in bad_words_ids if list(seq) not in ([e] for e in eos)]
    singles = [s[0] for s in sequences if len(s) == 1]
    multi: dict[int, list[tuple[int, ...]]] = {}
    for seq in sequences:
        if len(seq) > 1:
            multi.setdefault(len(seq) - 1, []).append(seq)

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        V = scores.shape[-1]
        if any(t >= V for seq in sequences for t in seq):
            raise ValueError(f"bad_words_ids names token ids beyond the vocabulary ({V})")
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if singles:
            banned[:, singles] = True
        for k, group in multi.items():
            if k > ids.shape[1]:
                continue
            prefixes = torch.tensor([s[:-1] for s in group], device=ids.device)  # (G, k)
            last = torch.tensor([s[-1] for s in group], device=ids.device)  # (G,)
            match = (ids[:, None, -k:] == prefixes[None]).all(-1)  # (N, G)
            rows, which = match.nonzero(as_tuple=True)
            banned[rows, last[which]] = True
        return scores.masked_fill(banned, -math.inf)

    return apply


def min_new_tokens(prompt_length: int, n: int, eos: Sequence[int]) -> LogitsProcessor:
    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] - prompt_length < n:
            scores = scores.clone()
            scores[:, list(eos)] = -math.inf
        return scores

    return apply


def prefix_allowed(fn: Callable[[int, torch.Tensor], list[int]], num_beams: int) -> LogitsProcessor:
    """Constrained decoding: only the tokens `fn(batch_id, sequence)` allows (tasks use it to force
    entity names copied from the source)."""

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, -math.inf)
        for row in range(ids.shape[0]):
            allowed = fn(row // num_beams, ids[row])
            if len(allowed) == 0:
                raise ValueError(f"prefix_allowed_tokens_fn allowed no token for batch {row // num_beams}")
            mask[row, allowed] = 0
        out = scores + mask
        # A row whose allowed tokens all score -inf keeps the allowed set (uniformly) instead.
        dead = out.amax(-1).isneginf().view(-1, num_beams).all(-1, keepdim=True)
        return torch.where(dead.repeat_interleave(num_beams, 0), mask, out)

    return apply


def temperature_warper(t: float) -> LogitsProcessor:
    return lambda ids, scores: scores / t


def top_k_warper(k: int, min_keep: int = 1) -> LogitsProcessor:
    k = max(k, min_keep)

    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        kth = torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, -math.inf)

    return apply


def top_p_warper(p: float, min_keep: int = 1) -> LogitsProcessor:
    def apply(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - p)
        remove[..., -min_keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)

    return apply


def build_processors(
    cfg: GenerationConfig,
    *,
    prompt_length: int,
    eos: Sequence[int],
    pad_lengths: torch.Tensor | None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None,
    extra: Sequence[LogitsProcessor] = (),
) -> list[LogitsProcessor]:
    """transformers' order: repetition penalty, no-repeat n-gram, bad words, min new tokens,
    prefix constraint; then the caller's own (`logits_processor=`, as transformers merges its
    LogitsProcessorList there); then, when sampling, temperature, top-k, top-p."""
    procs: list[LogitsProcessor] = []
    if cfg.repetition_penalty != 1.0:
        procs.append(repetition_penalty(float(cfg.repetition_penalty), pad_lengths))
    if cfg.no_repeat_ngram_size:
        procs.append(no_repeat_ngram(cfg.no_repeat_ngram_size))
    if cfg.bad_words_ids is not None:
        procs.append(bad_words(cfg.bad_words_ids, eos))
    if cfg.min_new_tokens and eos:
        procs.append(min_new_tokens(prompt_length, cfg.min_new_tokens, eos))
    if prefix_allowed_tokens_fn is not None:
        procs.append(prefix_allowed(prefix_allowed_tokens_fn, max(cfg.num_beams, cfg.num_return_sequences)))
    procs.extend(extra)
    if cfg.do_sample:
        min_keep = (len(eos) + 1) if cfg.num_beams > 1 else 1
        if cfg.temperature != 1.0:
            procs.append(temperature_warper(float(cfg.temperature)))
        if cfg.top_k:
            procs.append(top_k_warper(int(cfg.top_k), min_keep))
        if cfg.top_p < 1.0:
            procs.append(top_p_warper(float(cfg.top_p), min_keep))
    return procs


def apply_processors(procs: list[LogitsProcessor], ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for proc in procs:
        scores = proc(ids, scores)
    return scores
