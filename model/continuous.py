"""Continuous batching: greedy decoding of many prompts through a fixed set of rows.

Why: a batch job (relation extraction over thousands of abstracts) decoded in static batches
runs every batch until its longest output ends, and rows that finished early compute padding
meanwhile. Here a finished row is refilled with the next prompt: its slot of the static KV cache
is overwritten by the new prompt's prefill and decoding goes on, so every row keeps doing useful
work and the job takes about sum(output lengths) / rows steps instead of the sum of the batches'
longest outputs.

Built on the static decode step (generation.static.StaticDecoder, a CUDA graph on a GPU): every row
writes its keys at its own position and sees only its own keys (a per-row mask), so rows at
different points of different prompts share one step. Each row's tokens are those of
`model.generate(prompt, max_new_tokens=..., min_new_tokens=...)` for that prompt alone (greedy);
tests check this token for token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from torch import nn

from .generation.config import EOS_CHECK_EVERY, GenerationConfig
from .generation.static import GRAPH_LENGTH_STEP, GRAPH_ROW_BUCKETS, StaticDecoder, bucket, static_decoder
from .generation.steps import prefill
from .kv_cache import KVCache


class Completion(NamedTuple):
    index: int  # position of the prompt in the input
    tokens: list[int]  # new token ids, up to and including the end-of-sequence token
    seconds: float  # from the prompt's prefill to its last token (wall time, shared rows)


def generate_continuous(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    rows: int = 8,
    max_new_tokens: int | Sequence[int] = 20,
    min_new_tokens: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    max_prefill_tokens: int | None = None,
    refill_every: int | None = None,
    cuda_graph: bool | None = None,
) -> Iterator[Completion]:
    """A Completion for every prompt, in the order they finish (prompts start shortest first).

    `max_new_tokens` is one limit or one per prompt; a prompt also stops where the model's
    positions end. Finished rows are refilled every `refill_every` steps (default: every step on
    a CPU, where checking is free; every few steps on a GPU, where it is a synchronisation).
    `max_prefill_tokens` caps the padded tokens of one refill's prefill (activation memory)."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    n_prompts = len(prompts)
    if n_prompts == 0:
        return
    limits = _limits(model, prompts, max_new_tokens)
    config = model.config
    device = model.device
    eos_list = eos_ids(eos_token_id if eos_token_id is not None else config.eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (config.pad_token_id if config.pad_token_id is not None else 0)
    every = refill_every or (EOS_CHECK_EVERY if device.type == "cuda" else 1)

    longest = max(len(p) for p in prompts)
    capacity = -(-(longest + max(limits)) // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP
    # Inference mode only around the work, never across a `yield`: the caller's code between
    # completions must not run in it.
    with torch.inference_mode():
        decoder = build_decoder(model, device, min(rows, n_prompts), capacity, cuda_graph)
        slots = _Slots(model, decoder, prompts, limits, eos_list, pad, max_prefill_tokens)
        slots.fill(list(range(decoder.rows)))
    step = 0
    while True:
        step += 1
        with torch.inference_mode():
            slots.step(min_new_tokens)
            done = slots.harvest() if step % every == 0 else []  # a synchronisation on a GPU
        yield from done
        if slots.empty():
            return


def _limits(model, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int]) -> list[int]:
    max_positions = model.config.max_position_embeddings
    if isinstance(max_new_tokens, int):
        wanted = [max_new_tokens] * len(prompts)
    else:
        wanted = list(max_new_tokens)
        if len(wanted) != len(prompts):
            raise ValueError(f"{len(wanted)} max_new_tokens for {len(prompts)} prompts")
    limits = []
    for i, (p, n) in enumerate(zip(prompts, wanted)):
        if not p:
            raise ValueError(f"prompt {i} is empty")
        if n < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {n}")
        if len(p) >= max_positions:
            raise ValueError(f"prompt {i} has {len(p)} tokens; the model has {max_positions} positions")
        limits.append(min(n, max_positions - len(p)))
    return limits


def eos_ids(value: int | Sequence[int] | None) -> list[int]:
    """An eos_token_id setting (one id, several, or none) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def build_decoder(model, device: torch.device, rows: int, capacity: int, cuda_graph: bool | None) -> StaticDecoder:
    """The bucket's static step shared with `generate` (captured on a GPU; cuda_graph=True on a
    CPU shares the eager one, as generate does), or a private eager one."""
    rows_b = bucket(rows, GRAPH_ROW_BUCKETS, 64)
    if cuda_graph or (device.type == "cuda" and cuda_graph is None):
        decoder = static_decoder(model, device, rows_b, capacity, GenerationConfig(cuda_graph=cuda_graph))
        if decoder is not None:
            return decoder
    return StaticDecoder(model, device, rows_b, capacity, capture=False)


class _Slots:
    """The rows of a continuous-batching run: which prompt each holds, its tokens so far, and the
    decoder's per-row buffers (positions, write positions, key masks, scores)."""

    def __init__(
        self,
        model,
        dec: StaticDecoder,
        prompts: Sequence[Sequence[int]],
        limits: list[int],
        eos_list: list[int],
        pad: int,
        max_prefill_tokens: int | None,
    ) -> None:
        device = dec.tokens.device
        N = dec.rows  # every row of the bucket is a slot
        self.model, self.dec, self.prompts, self.limits = model, dec, prompts, limits
        self.pad, self.max_prefill_tokens, self.device = pad, max_prefill_tokens, device
        self.eos = torch.tensor(eos_list, dtype=torch.long, device=device)
        self.out = torch.full((N, max(limits) + 1), pad, dtype=torch.long, device=device)  # new tokens per slot
        self.count = torch.zeros(N, dtype=torch.long, device=device)  # tokens chosen so far per slot
        self.limit = torch.zeros(N, dtype=torch.long, device=device)
        self.unfinished = torch.zeros(N, dtype=torch.bool, device=device)  # slots still decoding
        self.arange = torch.arange(N, device=device)
        self.scores = torch.zeros(N, model.config.vocab_size, dtype=torch.float32, device=device)
        self.slot_prompt = [-1] * N  # which prompt each slot holds (-1: none)
        self.slot_start = [0.0] * N
        # the cache column each slot writes at the next step (an upper bound for a slot that
        # finished since the last look): attention reads no further than the largest
        self.slot_column = [0] * N
        # prompts are taken shortest first, so those prefilled together have similar lengths
        self.order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        self.next_prompt = 0  # position in `order`
        # Empty slots write at column 0 and stay there (see `step`) until they are filled.
        dec.write_pos.zero_()
        dec.positions.zero_()
        dec.key_mask.fill_(True)
        dec.tokens.fill_(pad)

    def fill(self, slots: list[int]) -> None:
        """Give the next prompts to `slots` and prefill them (their first scores come from it)."""
        taken = []
        for s in slots:
            if self.next_prompt == len(self.order):
                break
            i = self.order[self.next_prompt]
            self.slot_prompt[s] = i
            self.slot_start[s] = time.perf_counter()
            taken.append((s, i))
            self.next_prompt += 1
        if not taken:
            return
        for group in _prefill_groups(taken, self.prompts, self.max_prefill_tokens):
            slots_g = [s for s, _ in group]
            width = prefill_into(self.model, self.dec, slots_g, [self.prompts[i] for _, i in group], self.pad, self.scores)
            for s in slots_g:
                self.slot_column[s] = width
        index = torch.tensor([s for s, _ in taken], device=self.device)
        self.count[index] = 0
        self.limit[index] = torch.tensor([self.limits[i] for _, i in taken], device=self.device)
        self.unfinished[index] = True
        self.out[index] = self.pad

    def step(self, min_new: int) -> None:
        """Choose each slot's next token from its scores (as generate's greedy loop does), then run
        the decode step on them."""
        scores, eos, dec = self.scores, self.eos, self.dec
        if min_new > 0 and eos.numel():
            banned = scores[:, eos]  # (N, E)
            scores[:, eos] = torch.where((self.count < min_new)[:, None], -math.inf, banned)
        tokens = torch.where(self.unfinished, scores.argmax(-1), self.pad)
        self.out[self.arange, self.count] = tokens  # a finished slot writes padding after its last token
        done = self.unfinished & (self.count + 1 >= self.limit)
        if eos.numel():
            done |= self.unfinished & torch.isin(tokens, eos)
        self.count += self.unfinished.long()
        self.unfinished &= ~done
        # finished and empty slots repeat their last column and position instead of advancing:
        # what they compute is never read, and they never run past the cache or the positions
        frozen = (~self.unfinished).long()
        dec.tokens.copy_(tokens)
        live = [s for s, p in enumerate(self.slot_prompt) if p >= 0]
        span = max((self.slot_column[s] for s in live), default=0) + 1
        self.scores = dec.run_step(span).float()
        dec.write_pos -= frozen
        dec.positions -= frozen
        for s in live:
            self.slot_column[s] += 1

    def harvest(self) -> list[Completion]:
        """Completions of the slots that finished, which then take the next prompts."""
        state = self.unfinished.tolist()
        finished = [s for s, p in enumerate(self.slot_prompt) if p >= 0 and not state[s]]
        if not finished:
            return []
        index = torch.tensor(finished, device=self.device)
        now = time.perf_counter()
        done = []
        for s, n, row in zip(finished, self.count[index].tolist(), self.out[index].tolist()):
            done.append(Completion(self.slot_prompt[s], row[:n], now - self.slot_start[s]))
            self.slot_prompt[s] = -1
        self.fill(finished)  # their next scores come from this prefill, not from the last step
        return done

    def empty(self) -> bool:
        return all(p < 0 for p in self.slot_prompt)


def _prefill_groups(taken: list[tuple[int, int]], prompts: Sequence[Sequence[int]], budget: int | None):
    """Split (slot, prompt) pairs into prefill batches of at most `budget` padded tokens."""
    if not taken:
        return []
    taken = sorted(taken, key=lambda t: len(prompts[t[1]]))
    groups: list[list[tuple[int, int]]] = [[]]
    for pair in taken:
        group = groups[-1]
        width = max([len(prompts[i]) for _, i in group] + [len(prompts[pair[1]])])
        if group and budget is not None and width * (len(group) + 1) > budget:
            groups.append([pair])
        else:
            group.append(pair)
    return groups


def prefill_into(model, dec: StaticDecoder, slots: list[int], prompts: list[Sequence[int]], pad: int, scores: torch.Tensor) -> int:
    """Prefill `prompts` (left-padded together) and move their keys and values into `slots` of the
    decoder's cache; set those rows' positions, write positions and key masks, and their first
    scores. Returns the padded width (the column of their first decode step)."""
    device = dec.tokens.device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    padded = width != min(len(p) for p in prompts)
    tmp = KVCache.for_model(model.config, len(prompts), width, dtype=dec.cache.kv.dtype, device=device)
    logits = prefill(dec.net, ids, mask if padded else None, tmp)  # (k, V)
    index = torch.tensor(slots, device=device)
    dec.cache.kv[:, :, index, :, :width] = tmp.kv
    dec.key_mask[index] = True
    dec.key_mask[index, :width] = mask.bool()
    dec.write_pos[index] = width
    dec.positions[index] = mask.sum(1)
    scores[index] = logits.float()
    return width
