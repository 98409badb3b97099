"""Greedy decoding with the token choice inside the static step's graph.

Why: each replay both picks the next tokens (min_new_tokens and end-of-sequence bookkeeping
included) and runs the decode step, so a token costs one launch and the host only checks every
EOS_CHECK_EVERY steps whether all rows are done. Same tokens as search.greedy_or_sample's
eager loop (tests check it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import EOS_CHECK_EVERY


class GreedyLoop:
    """The greedy loop of one static decoder: its buffers (allocated at first use) and one
    captured graph per (end-of-sequence ids, pad id, min_new_tokens or not)."""

    def __init__(self, decoder: Any) -> None:
        self.dec = decoder
        self.graphs: dict = {}
        self.out: torch.Tensor | None = None

    def run(
        self, first_logits: torch.Tensor, prompt: torch.Tensor, *, max_new: int, eos: torch.Tensor, pad: int, min_new: int
    ) -> torch.Tensor:
        """Prompt plus greedy continuation (rows, length), trimmed where the last row ended."""
        dec = self.dec
        rows, P = prompt.shape
        key = (tuple(eos.tolist()), pad, min_new > 0)
        if key not in self.graphs:
            self._make_buffers()
            # The graph reads these addresses on every replay: its own copy of the EOS ids, not
            # this call's tensor (freed when the call returns).
            own_eos = eos.clone()
            own_pad = torch.full((), pad, dtype=torch.long, device=dec.tokens.device)
            graph = dec._capture_keeping_state(lambda: self.body(own_eos, own_pad, min_new > 0))
            self.graphs[key] = (graph, own_eos, own_pad)
        graph, eos, pad_t = self.graphs[key]
        self.out.fill_(pad)
        self.out[:rows, :P] = prompt
        self.unfinished.fill_(True)
        self.last_col.fill_(P + max_new - 1)
        self.cur.fill_(P)
        self.min_col.fill_(P + min_new)
        self.next_logits[:rows] = first_logits
        for step in range(max_new):
            if graph is None:
                self.body(eos, pad_t, min_new > 0)
            else:
                graph.replay()
            if step == max_new - 1:
                break
            if (step + 1) % EOS_CHECK_EVERY == 0 and not bool(self.unfinished[:rows].any()):
                break
        length = int(self.last_col[:rows].max()) + 1
        return self.out[:rows, :length].clone()

    def _make_buffers(self) -> None:
        if self.out is not None:
            return
        dec = self.dec
        device, rows = dec.tokens.device, dec.rows
        self.out = torch.zeros(rows, dec.capacity, dtype=torch.long, device=device)
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        self.last_col = torch.zeros(rows, dtype=torch.long, device=device)  # each row's last column of out
        self.cur = torch.zeros(1, dtype=torch.long, device=device)  # the column this step writes
        self.min_col = torch.zeros(1, dtype=torch.long, device=device)  # EOS banned before this column
        self.next_logits = torch.zeros(rows, dec.config.vocab_size, dtype=dec.dtype, device=device)

    def body(self, eos: torch.Tensor, pad: torch.Tensor, has_min_new: bool) -> None:
        """One token per row, then the decode step. Written for few kernels (a batch-1 replay is
        launch-bound): results go straight into the buffers (`out=`), one position counter, and
        the scores stay in the model's dtype (argmax of the exact float32 copy is the same)."""
        dec = self.dec
        if dec.fused is not None:  # the fused step's greedy kernel: what the else branch does, in one
            from ..fast.triton_step import greedy_pick

            greedy_pick(
                self.next_logits, eos=eos, pad=pad, cur=self.cur, min_col=self.min_col, unfinished=self.unfinished,
                out=self.out, last_col=self.last_col, tokens=dec.tokens, ban=has_min_new, pdl=dec.fused.pdl,
            )  # fmt: skip
        else:
            scores = self.next_logits  # (N, V), overwritten by this body's step anyway
            if has_min_new and eos.numel():
                banned = scores[:, eos]  # (N, E)
                scores[:, eos] = torch.where(self.cur < self.min_col, -math.inf, banned)
            torch.where(self.unfinished, scores.argmax(-1), pad, out=dec.tokens)  # finished rows: pad
            self.out.index_copy_(1, self.cur, dec.tokens[:, None])
            if eos.numel():
                is_eos = (dec.tokens[:, None] == eos[None, :]).any(-1)  # (N,)
                torch.where(self.unfinished & is_eos, self.cur, self.last_col, out=self.last_col)
                torch.gt(self.unfinished, is_eos, out=self.unfinished)  # unfinished and not EOS
        self.cur += 1
        self.next_logits.copy_(dec.step_fn())
