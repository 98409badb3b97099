"""One optimisation step, fast on a GPU: fused AdamW, and for fixed-shape batches the whole
step (forward, backward, clipping, AdamW) captured once as a CUDA graph and replayed.

Why a graph: a BioGPT training step is a few thousand kernels; in eager mode the host spends
about as long launching them as the GPU spends running them. Replaying a captured step removes
the launch cost. It needs fixed shapes (pad or pack batches to one length) and no host
synchronisation inside the step, which is why the loss comes back as a device tensor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


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


class TrainStep:
    """`step(batch) -> loss (device tensor)` for batches of one fixed shape.

    graph=True (CUDA only): the first `warmup` calls run eagerly on a side stream (they are real
    steps, as the graph requires), the next call captures the step and replays it; later calls
    copy the batch into the captured input buffers and replay. graph=False: the same step eagerly.
    The optimizer must be built with capturable=True for graph=True (see `adamw`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        bf16: bool = True,
        max_grad_norm: float | None = 1.0,
        graph: bool = False,
        warmup: int = 3,
        loss_fn: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.bf16, self.max_grad_norm = bf16, max_grad_norm
        self.graph_wanted, self.warmup = graph, warmup
        self.loss_fn = loss_fn or (lambda m, batch: m(**batch).loss)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, torch.Tensor] = {}
        self.static_loss: torch.Tensor | None = None
        self.side = torch.cuda.Stream() if graph else None
        self.capture_seconds = 0.0

    def _eager(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device_type = next(self.model.parameters()).device.type
        # autocast's weight-cast cache must be off inside a graph capture
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=not self.graph_wanted):
            loss = self.loss_fn(self.model, batch)
        loss.float().backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm, foreach=True)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if not self.graph_wanted:
            self.optimizer.zero_grad(set_to_none=True)
            return self._eager(batch)
        if self.graph is None and self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._eager(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        if self.graph is None:
            start = time.perf_counter()
            self.static = {k: v.clone() for k, v in batch.items()}
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss = self._eager(self.static)
            torch.cuda.synchronize()
            self.capture_seconds = time.perf_counter() - start
            logger.debug("captured the training step in %.2f s", self.capture_seconds)
        for k, v in batch.items():
            self.static[k].copy_(v)
        self.graph.replay()
        return self.static_loss.clone()
