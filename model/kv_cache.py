"""The key/value cache: one preallocated buffer holding keys and values, written in place.

Shape (L, 2, B, H, capacity, D): keys at [:, 0], values at [:, 1], so one step's keys and values
are written by one copy per layer (a GPU decode step is launch-bound: one kernel fewer per layer).
Attention reads the filled prefix `[:length]`. Generation sizes the
buffer once for prompt + max_new_tokens, so decoding allocates nothing per step; the public
`forward(use_cache=True)` API starts small and grows by doubling when a caller keeps appending.
Beam search reorders rows with `reorder(beam_idx)`.

The model's forward also takes the caches transformers code passes (`model_cache`): a
transformers `Cache` (DynamicCache, ...; recognised by its interface, never imported) and the
legacy tuples of (keys, values) per layer.
"""

from __future__ import annotations

from typing import Any

import torch


class KVCache:
    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        capacity: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        growable: bool = True,
    ) -> None:
        shape = (num_layers, 2, batch_size, num_heads, max(capacity, 1), head_dim)
        self.kv = torch.zeros(shape, dtype=dtype, device=device)
        # index tensors for static decoding, kept: a CUDA graph reads their addresses
        self.row_ids = torch.arange(batch_size, device=device)
        self.layer_ids = torch.arange(num_layers, device=device)
        self.length = 0  # positions filled, identical for every row (padding is masked, not skipped)
        self.growable = growable
        # Leading positions known to be identical in every row that `reorder` can exchange (beam
        # search: the prompt, copied to each beam), so reordering never copies them.
        self.shared_prefix = 0
        # Static decoding (generation.static.StaticDecoder): when set, `update` writes each row's keys at
        # its own device-held position (N,) and returns the whole buffer (attention masks the rest).
        self.write_index: torch.Tensor | None = None
        self.read_span: int | None = None  # static decoding: columns attention reads (None: all)

    @property
    def k(self) -> torch.Tensor:
        return self.kv[:, 0]  # (L, B, H, S, D)

    @property
    def v(self) -> torch.Tensor:
        return self.kv[:, 1]  # (L, B, H, S, D)

    @classmethod
    def for_model(
        cls,
        config,
        batch_size: int,
        max_length: int | None = None,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> "KVCache":
        return cls(
            config.num_hidden_layers,
            batch_size,
            config.num_attention_heads,
            config.head_dim,
            max_length or 64,
            dtype=dtype,
            device=device,
            growable=max_length is None,
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Positions filled (transformers' Cache method name, for code that asks it)."""
        return self.length

    @property
    def capacity(self) -> int:
        return self.kv.shape[4]

    @property
    def batch_size(self) -> int:
        return self.kv.shape[2]

    def update(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys and values, (2, B, H, T, D), after the filled prefix; return the
        (keys, values) prefix including them. `advance` (called once per forward, after all
        layers) moves `length`."""
        if self.write_index is not None:
            # one indexed write on the whole buffer, not on a view of it: torch.compile then
            # updates the buffer in place
            return self.write_columns(self.kv, [self.layer_ids[layer : layer + 1]], kv, layer=layer)
        end = self.length + kv.shape[3]
        if end > self.capacity:
            self._grow(end)
        if kv.requires_grad and torch.is_grad_enabled():
            # Under autograd attention must not read a view of the buffer: the next layer's
            # write changes the buffer in place and backward would find its saved keys modified.
            # The buffer keeps a detached copy; attention gets new tensors (past keys carry no
            # gradient, as they came from an earlier forward).
            self.kv[layer, :, :, :, self.length : end] = kv.detach()
            if self.length == 0:
                return kv[0], kv[1]
            past = self.kv[layer, :, :, :, : self.length]
            return torch.cat((past[0], kv[0]), dim=2), torch.cat((past[1], kv[1]), dim=2)
        self.kv[layer, :, :, :, self.length : end] = kv
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]

    def write_columns(
        self, buffer: torch.Tensor, leading: list[torch.Tensor], kv: torch.Tensor, *, layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Static decoding: row b's keys and values go to column write_index[b] of `buffer`
        (`leading` indexes its dimensions before (2, B, H, S, D)): buffer[..., :, b, :, w_b] =
        (B, 2, H, D)[b], one advanced-indexing write (on a CPU, scatter_ would copy the whole
        layer). Returns the keys and values attention reads: the first `read_span` columns."""
        rows = self.row_ids[: kv.shape[1]]
        torch.ops.aten.index_put_(buffer, [*leading, None, rows, None, self.write_index], kv[:, :, :, 0].transpose(0, 1))
        span = self.read_span or self.capacity
        layer_kv = buffer if layer is None else buffer[layer]  # (2, B, H, S, D)
        return layer_kv[0, :, :, :span], layer_kv[1, :, :, :span]

    def advance(self, n: int) -> None:
        if self.write_index is None:  # static decoding keeps its positions on the device
            self.length += n

    def _grow(self, needed: int) -> None:
        if not self.growable:
            raise ValueError(f"KV cache of capacity {self.capacity} cannot hold {needed} positions")
        capacity = max(needed, 2 * self.capacity)
        old = self.kv
        self.kv = old.new_zeros((*old.shape[:4], capacity, old.shape[5]))
        self.kv[..., : self.length, :] = old[..., : self.length, :]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam search: each new beam continues an old one), in place."""
        n = self.length
        moved = (index != torch.arange(index.numel(), device=index.device)).nonzero().flatten()
        if moved.numel() == 0:  # every beam continued itself: nothing to copy
            return
        source = index[moved]
        start = min(self.shared_prefix, n)
        # The right-hand side is gathered before the write, so overlapping rows are safe.
        self.kv[:, :, moved, :, start:n] = self.kv[:, :, source, :, start:n]

    def first_rows(self, rows: int) -> "KVCache":
        """An empty, fixed-size cache over this one's first `rows` rows (same memory)."""
        view = KVCache.__new__(KVCache)
        view.__dict__.update(self.__dict__)
        view.kv, view.row_ids = self.kv[:, :, :rows], self.row_ids[:rows]
        view.length, view.growable, view.shared_prefix, view.write_index = 0, False, 0, None
        return view

    def detached(self, length: int) -> "KVCache":
        """A growable copy of the first `length` positions that the caller owns: what generate
        returns as `cache`. The search's own cache can be a view of a captured decoder's buffer,
        which the next call overwrites, and (static decoding) keeps its length on the device,
        so the length is given."""
        copy = KVCache.__new__(KVCache)
        copy.__dict__.update(self.__dict__)
        copy.kv = self.kv[..., :length, :].clone()
        copy.row_ids = torch.arange(copy.kv.shape[2], device=copy.kv.device)
        copy.layer_ids = self.layer_ids.clone()
        copy.length, copy.growable, copy.shared_prefix = length, True, 0
        copy.write_index, copy.read_span = None, None
        return copy

    def to_legacy(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """transformers' legacy format: per layer (keys, values), each (B, H, T, D)."""
        n = self.length
        return tuple((self.kv[i, 0, :, :, :n], self.kv[i, 1, :, :, :n]) for i in range(self.kv.shape[0]))

    @classmethod
    def from_legacy(cls, past: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> "KVCache":
        k0 = past[0][0]
        B, H, T, D = k0.shape
        cache = cls(len(past), B, H, D, T, dtype=k0.dtype, device=k0.device)
        for i, (k, v) in enumerate(past):
            cache.kv[i, 0, :, :, :T] = k
            cache.kv[i, 1, :, :, :T] = v
        cache.length = T
        return cache


class LayerCacheView:
    """One layer's part of a static decoding cache (`KVCache` with `write_index`), with the same
    `update` as the cache. Why: a decoder layer compiled once and reused by every layer
    (`StaticDecoder(compile_step="layers")`) must not index the shared buffer with its layer
    number (a Python int, which torch.compile would specialise on: one compilation per layer);
    each layer gets its own view, and the views differ only in their offset."""

    def __init__(self, cache: KVCache, layer: int) -> None:
        self.kv = cache.kv[layer]  # (2, B, H, S, D), a view
        self.cache = cache

    def update(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As KVCache.update in static decoding; `layer` is ignored (this view is one layer's)."""
        return self.cache.write_columns(self.kv, [], kv)


class ForeignCache:
    """A transformers `Cache` (DynamicCache, StaticCache, ...) seen through KVCache's interface:
    what the attention layers call (`update(layer, kv)`, `length`, `advance`). The wrapped cache
    keeps and counts its own keys and values; this only translates the calls."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.length = int(cache.get_seq_length())
        self.write_index = None  # never a static-decoding cache

    def update(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(kv[0], kv[1], layer)

    def advance(self, n: int) -> None:
        self.length += n


def model_cache(cache: Any) -> KVCache | ForeignCache | None:
    """What the model's layers write to, for a cache as a caller passes it: ours as is, a
    transformers Cache (by its methods `update(key, value, layer_idx)` and `get_seq_length()`)
    wrapped, legacy tuples ((keys, values) per layer, each (B, H, T, D)) copied into a KVCache."""
    if cache is None or isinstance(cache, KVCache):
        return cache
    if isinstance(cache, (tuple, list)):
        return KVCache.from_legacy(tuple(cache)) if len(cache) else None
    if callable(getattr(cache, "update", None)) and callable(getattr(cache, "get_seq_length", None)):
        return ForeignCache(cache)
    raise TypeError(
        f"cache of type {type(cache).__name__} is not supported: pass a KVCache, a transformers Cache "
        "or a tuple of (keys, values) per layer"
    )


def returned_cache(given: Any, used: KVCache | ForeignCache | None) -> Any:
    """What forward returns as `cache`: the caller's own object (a transformers Cache, updated in
    place), legacy tuples for legacy tuples (as transformers 4 returned them), else our KVCache."""
    if isinstance(used, ForeignCache):
        return used.cache
    if isinstance(given, (tuple, list)) and used is not None:
        return used.to_legacy()
    return used
