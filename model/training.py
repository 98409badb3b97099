"""One optimisation step, fast on a GPU: fused AdamW, and the whole step (forward, backward,
clipping, AdamW) captured as a CUDA graph per batch shape and replayed; with gradient
accumulation, one graph per micro-batch shape plus one for the update.

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


def drop_right_padding_mask(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`batch` without its attention_mask when the mask only marks right padding whose token
    labels are -100 (checked here, on the host, before the batch goes to the device). Why: with a
    mask, attention runs a masked kernel, without one SDPA's causal flash kernel, faster; and for
    right padding the mask changes nothing the loss sees: causal attention never lets a real
    token see a later pad, real tokens' positions equal their index either way, sequence
    classification pools the last non-pad token (found from input_ids), and padded positions
    carry no label. A captured step always builds the mask it is given (the model looks at no
    mask values while a CUDA graph is captured), so this is decided per batch here."""
    mask = batch.get("attention_mask")
    if mask is None or mask.device.type != "cpu" or mask.dim() != 2:
        return batch
    lengths = mask.sum(1, keepdim=True)
    if not torch.equal(mask.bool(), torch.arange(mask.shape[1])[None, :] < lengths):
        return batch  # not right padding (left padding, holes)
    labels = batch.get("labels")
    if labels is not None and labels.shape == mask.shape and not bool((labels[mask == 0] == -100).all()):
        return batch  # a padded position has a label: the mask keeps it out of the loss
    return {k: v for k, v in batch.items() if k != "attention_mask"}


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
    out: torch.Tensor | None


Key = tuple[Any, ...]


def _shape(batch: dict[str, torch.Tensor]) -> tuple[tuple[str, tuple[int, ...], torch.dtype], ...]:
    return tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(batch.items()))


class TrainStep:
    """One optimizer step on one batch: `step(batch) -> loss (device tensor)`; or, with gradient
    accumulation, `step.accumulate(batch, scale=1/n) -> loss` for each of n micro-batches, then
    `step.update()`. Use one style or the other with one TrainStep.

    graph=True (CUDA only): each batch shape's work (`step(batch)`: forward, backward, clipping
    and AdamW; `accumulate`: forward and backward into the gradients) runs eagerly at its first
    use and during the first `warmup` optimizer steps (lazy initialisations such as AdamW's state
    or attention kernels' plans must not happen inside a capture), is captured at its next use
    and replayed from then on; at most `max_graphs` shapes, the others stay eager. `update()`
    (clipping, AdamW, zeroing the gradients) is one more graph. All graphs share one memory pool:
    they are replayed one at a time and keep nothing but their inputs and outputs between
    replays. `step(batch)` captures its backward writing fresh gradients (no accumulation, no
    zeroing); `accumulate` adds into gradients that live outside the graphs. A failed capture
    logs a warning and leaves that work and everything after it eager. During a capture the
    model builds every padding mask it is given without looking at its values (a host
    synchronisation; see modeling's forward). The optimizer must be
    built with capturable=True (see `adamw`). graph=False: the plain eager step.
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
        self.batches = self.replays = self.updates = 0
        self.style: str | None = None  # "step" or "accumulate", fixed by the first call
        self.graphs: dict[Key, _Captured] = {}
        self.seen: dict[Key, int] = {}
        self.pool: Any = None
        self.capture_failed: str | None = None
        self.side = torch.cuda.Stream() if graph else None
        self.scale: torch.Tensor | None = None  # accumulate's loss multiplier, a device scalar
        self.weights: tuple[int, ...] = ()  # the parameters' addresses when the graphs were captured
        self.capture_seconds = 0.0  # all captures together

    @property
    def graph(self) -> torch.cuda.CUDAGraph | None:
        """The first captured graph (None while everything has run eagerly)."""
        return next(iter(self.graphs.values())).graph if self.graphs else None

    @property
    def shapes(self) -> int:
        """How many batch shapes have a captured graph."""
        return sum(1 for key in self.graphs if key[0] != "update")

    # ---------------------------------------------------------------- the work itself
    def _forward_backward(self, batch: dict[str, torch.Tensor], scale: torch.Tensor | float | None) -> torch.Tensor:
        device_type = next(self.model.parameters()).device.type
        # autocast's weight-cast cache must be off inside a graph capture
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=not self.graph_wanted):
            loss = self.loss_fn(self.model, batch)
        (loss.float() if scale is None else loss.float() * scale).backward()
        return loss.detach()

    def _clip_and_step(self) -> None:
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm, foreach=self.graph_wanted or None)
        self.optimizer.step()

    def _eager(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self._forward_backward(batch, None)
        self._clip_and_step()
        return loss

    def _step_body(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # gradients set to None here (at capture: host-side only) make the backward write them
        # afresh, which a replay repeats: no zeroing, no accumulation kernels
        self.optimizer.zero_grad(set_to_none=True)
        return self._eager(batch)

    def _accumulate_body(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._forward_backward(batch, self.scale)

    def _update_body(self, batch: dict[str, torch.Tensor]) -> None:
        self._clip_and_step()
        torch._foreach_zero_([p.grad for p in self.model.parameters() if p.grad is not None])

    # ---------------------------------------------------------------- the API
    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self._fix_style("step")
        self.batches += 1
        if not self.graph_wanted:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._eager(batch)
        else:
            loss = self._run(("step", *_shape(batch)), batch, self._step_body)
        self.updates += 1
        return loss

    def accumulate(self, batch: dict[str, torch.Tensor], *, scale: float = 1.0) -> torch.Tensor:
        """Add `scale` x the gradient of `batch`'s loss to the gradients; returns the loss."""
        self._fix_style("accumulate")
        self.batches += 1
        if not self.graph_wanted:
            return self._forward_backward(batch, None if scale == 1.0 else scale)
        if self.scale is None:
            device = next(self.model.parameters()).device
            self.scale = torch.ones((), device=device)
            for p in self.model.parameters():  # gradients outside every graph, accumulated in place
                if p.requires_grad and p.grad is None:
                    p.grad = torch.zeros_like(p)
        self.scale.fill_(scale)
        return self._run(("accumulate", *_shape(batch)), batch, self._accumulate_body)

    def update(self) -> None:
        """Clip, step the optimizer and zero the gradients accumulated since the last update."""
        self._fix_style("accumulate")
        if not self.graph_wanted:
            self._clip_and_step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self._run(("update",), {}, self._update_body)
        self.updates += 1

    def _fix_style(self, style: str) -> None:
        if self.style is None:
            self.style = style
        elif self.style != style:
            raise ValueError(f"this TrainStep runs {self.style!r} steps; use another one for {style!r}")

    # ---------------------------------------------------------------- graph mode
    def _weights(self) -> tuple[int, ...]:
        return tuple(p.data_ptr() for p in self.model.parameters())

    def _run(self, key: Key, batch: dict[str, torch.Tensor], body: Callable[[dict[str, torch.Tensor]], torch.Tensor | None]) -> Any:
        if self.graphs and self._weights() != self.weights:
            # a graph reads and writes the weights' old addresses: moved, converted or replaced
            # weights must never meet an old graph; recapture at next use
            logger.info("the weights have new storage: %d captured graphs dropped", len(self.graphs))
            self.graphs.clear()
            self.pool = None
        captured = self.graphs.get(key)
        if (
            captured is None
            and self.capture_failed is None
            and self.updates >= self.warmup
            and self.seen.get(key, 0) >= 1
            and (key[0] == "update" or self.shapes < self.max_graphs)
        ):
            captured = self._capture(key, batch, body)
        if captured is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                out = body(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        for k, v in batch.items():
            captured.inputs[k].copy_(v, non_blocking=True)
        captured.graph.replay()
        if key[0] != "update":
            self.replays += 1
        return None if captured.out is None else captured.out.clone()

    def _capture(self, key: Key, batch: dict[str, torch.Tensor], body: Callable[[dict[str, torch.Tensor]], Any]) -> _Captured | None:
        start = time.perf_counter()
        inputs = {k: v.clone() for k, v in batch.items()}  # outside the pool: they outlive every replay
        try:
            graph, out = capture_graph(lambda: body(inputs), pool=self.pool)
            torch.cuda.synchronize()
        except Exception as exc:  # an op that cannot be captured: train on, eagerly
            self.capture_failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
            logger.warning("could not capture the training step as a CUDA graph (%s); training goes on eagerly", self.capture_failed)
            return None
        if self.pool is None:
            self.pool = graph.pool()
            self.weights = self._weights()
        seconds = time.perf_counter() - start
        self.capture_seconds += seconds
        logger.debug("captured %s in %.2f s", key[0] if key[0] == "update" else key, seconds)
        self.graphs[key] = _Captured(graph, inputs, out)
        return self.graphs[key]
