"""One optimisation step, fast on a GPU: fused AdamW, and the whole step (forward, backward,
clipping, AdamW) captured as a CUDA graph per batch shape and replayed.

Why a graph: a BioGPT training step is a few thousand kernels; in eager mode the host spends
about as long launching them as the GPU spends running them. Replaying a captured step removes
the launch cost. A graph holds one shape, so batches are padded to a multiple of
`PAD_MULTIPLE` tokens (`pad_to_length`: padding changes no loss) and each shape gets its own
graph; all graphs share one memory pool, so they cost the memory of the largest. The step makes
no host synchronisation, which is why the loss comes back as a device tensor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .modeling import no_host_sync

logger = logging.getLogger(__name__)

#: batch lengths are padded to a multiple of this in graph mode: few shapes, little padding
PAD_MULTIPLE = 64


def adamw(
    model: torch.nn.Module,
    *,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    capturable: bool = False,
) -> torch.optim.AdamW:
    """AdamW with no decay on biases and LayerNorms; one fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    on_cuda = bool(params) and params[0].device.type == "cuda"
    extra: dict = {"fused": True} if on_cuda else {}
    if capturable:
        extra["capturable"] = True
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # a tensor learning rate can change between replays of a captured step
    return torch.optim.AdamW(groups, lr=torch.tensor(lr, device=params[0].device) if capturable else lr, betas=betas, **extra)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)`, keeping this optimizer's own settings. Why:
    load_state_dict takes the saved groups whole, so a checkpoint written by an eager run (or on
    another device) would turn a capturable optimizer non-capturable, give it a CPU learning rate
    and leave its step counters on the wrong device; a captured step would then fail or read a
    stale learning rate."""
    keep = [{k: g[k] for k in ("fused", "capturable", "foreach") if k in g} for g in optimizer.param_groups]
    lr_device = [g["lr"].device if isinstance(g["lr"], torch.Tensor) else None for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags, device in zip(optimizer.param_groups, keep, lr_device):
        group.update(flags)
        for key in ("lr", "initial_lr"):
            if key in group:
                value = float(group[key])
                group[key] = torch.tensor(value, device=device) if device is not None else value
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if isinstance(step, torch.Tensor):
                optimizer.state[p]["step"] = step.to(p.device if on_device else "cpu", torch.float32)


def pad_to_length(batch: dict[str, torch.Tensor], length: int, *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """`batch` right-padded to `length` tokens: input_ids with the pad token, attention_mask with
    0 (added if absent), token labels with -100. The loss does not change: the model attends to
    no padding, positions count only attended tokens, sequence classification pools the last
    non-pad token, and -100 labels are ignored. Other keys, or labels of another shape
    (classification), are left as they are."""
    ids = batch["input_ids"]
    B, T = ids.shape
    if length <= T:
        return batch
    out = dict(batch)
    out["input_ids"] = torch.cat([ids, ids.new_full((B, length - T), pad_token_id)], dim=1)
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    out["attention_mask"] = torch.cat([mask, mask.new_zeros((B, length - T))], dim=1)
    labels = batch.get("labels")
    if labels is not None and labels.shape == ids.shape and not labels.is_floating_point():
        out["labels"] = torch.cat([labels, labels.new_full((B, length - T), -100)], dim=1)
    return out


def padded_length(length: int, *, limit: int, multiple: int = PAD_MULTIPLE) -> int:
    """`length` rounded up to a multiple of `multiple`, at most `limit` (never below `length`)."""
    return max(length, min(-(-length // multiple) * multiple, limit))


def capture_graph(fn: Callable[[], torch.Tensor], *, pool: Any) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """`fn` captured as a CUDA graph sharing memory pool `pool` (None: a new pool), and its output.
    Nothing runs now: each `replay()` runs it. (One function so that tests can emulate a capture
    on the CPU.)"""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph, out


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    loss: torch.Tensor


Shape = tuple[tuple[str, tuple[int, ...], torch.dtype], ...]


def _shape(batch: dict[str, torch.Tensor]) -> Shape:
    return tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(batch.items()))


class TrainStep:
    """`step(batch) -> loss (device tensor)`.

    graph=True (CUDA only): after `warmup` eager steps, each batch shape is captured at its second
    occurrence (its first runs eagerly: lazy initialisations such as attention kernels' plans
    must not happen inside a capture) and replayed from then on; at most `max_graphs` shapes,
    the others run eagerly. All graphs share one memory pool: they are replayed one at a time and
    keep nothing but their inputs and loss between replays. A failed capture logs a warning and
    leaves that step and every later one eager. Every step in graph mode, eager or not, runs
    under `no_host_sync()` (same kernels either way). The optimizer must be built with
    capturable=True (see `adamw`). graph=False: the plain eager step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        bf16: bool = True,
        max_grad_norm: float | None = 1.0,
        graph: bool = False,
        warmup: int = 3,
        max_graphs: int = 16,
        loss_fn: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.bf16, self.max_grad_norm = bf16, max_grad_norm
        self.graph_wanted, self.warmup, self.max_graphs = graph, warmup, max_graphs
        self.loss_fn = loss_fn or (lambda m, batch: m(**batch).loss)
        self.calls = self.replays = 0
        self.graphs: dict[Shape, _Captured] = {}
        self.seen: dict[Shape, int] = {}
        self.pool: Any = None
        self.capture_failed: str | None = None
        self.side = torch.cuda.Stream() if graph else None
        self.capture_seconds = 0.0  # all captures together

    @property
    def graph(self) -> torch.cuda.CUDAGraph | None:
        """The first captured graph (None while every step has run eagerly)."""
        return next(iter(self.graphs.values())).graph if self.graphs else None

    def _eager(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device_type = next(self.model.parameters()).device.type
        # autocast's weight-cast cache must be off inside a graph capture
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=not self.graph_wanted):
            loss = self.loss_fn(self.model, batch)
        loss.float().backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm, foreach=self.graph_wanted or None)
        self.optimizer.step()
        return loss.detach()

    def _graph_body(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step as captured, and as graph mode runs it eagerly (the same kernels either way)."""
        with no_host_sync():
            return self._eager(batch)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if not self.graph_wanted:
            self.optimizer.zero_grad(set_to_none=True)
            return self._eager(batch)
        key = _shape(batch)
        captured = self.graphs.get(key)
        if (
            captured is None
            and self.capture_failed is None
            and self.calls > self.warmup
            and self.seen.get(key, 0) >= 1
            and len(self.graphs) < self.max_graphs
        ):
            captured = self._capture(key, batch)
        if captured is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._graph_body(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        for k, v in batch.items():
            captured.inputs[k].copy_(v, non_blocking=True)
        captured.graph.replay()
        self.replays += 1
        return captured.loss.clone()

    def _capture(self, key: Shape, batch: dict[str, torch.Tensor]) -> _Captured | None:
        start = time.perf_counter()
        inputs = {k: v.clone() for k, v in batch.items()}  # outside the pool: they outlive every replay
        # gradients are (re)allocated inside the capture: its backward writes them, never accumulates
        self.optimizer.zero_grad(set_to_none=True)
        try:
            graph, loss = capture_graph(lambda: self._graph_body(inputs), pool=self.pool)
            torch.cuda.synchronize()
        except Exception as exc:  # an op that cannot be captured: train on, eagerly
            self.capture_failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
            logger.warning("could not capture the training step as a CUDA graph (%s); training goes on eagerly", self.capture_failed)
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.pool is None:
            self.pool = graph.pool()
        seconds = time.perf_counter() - start
        self.capture_seconds += seconds
        logger.debug("captured the training step for %s in %.2f s", key, seconds)
        self.graphs[key] = _Captured(graph, inputs, loss)
        return self.graphs[key]
