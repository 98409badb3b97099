"""The key/value cache: one preallocated buffer per keys and values, written in place.

Shape (L, B, H, capacity, D). Attention reads the filled prefix `[:length]`. Generation sizes the
buffer once for prompt + max_new_tokens, so decoding allocates nothing per step; the public
`forward(use_cache=True)` API starts small and grows by doubling when a caller keeps appending.
Beam search reorders rows with `reorder(beam_idx)`.
"""

from __future__ import annotations

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
        shape = (num_layers, batch_size, num_heads, max(capacity, 1), head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0  # positions filled, identical for every row (padding is masked, not skipped)
        self.growable = growable
        # Leading positions known to be identical in every row that `reorder` can exchange (beam
        # search: the prompt, copied to each beam), so reordering never copies them.
        self.shared_prefix = 0
        # Static decoding (generation.StaticDecoder): when set, `update` writes the step's keys at
        # this device-held position and returns the whole buffer (attention masks the rest).
        self.write_index: torch.Tensor | None = None

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

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def get_seq_length(self) -> int:
        return self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's (B, H, T, D) keys/values after the filled prefix; return the prefix
        including them. `advance` (called once per forward, after all layers) moves `length`."""
        if self.write_index is not None:
            self.k[layer].index_copy_(2, self.write_index, k)  # (B, H, S, D) <- (B, H, 1, D)
            self.v[layer].index_copy_(2, self.write_index, v)
            return self.k[layer], self.v[layer]
        end = self.length + k.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def _grow(self, needed: int) -> None:
        if not self.growable:
            raise ValueError(f"KV cache of capacity {self.capacity} cannot hold {needed} positions")
        capacity = max(needed, 2 * self.capacity)
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_zeros((*old.shape[:3], capacity, old.shape[4]))
            new[:, :, :, : self.length] = old[:, :, :, : self.length]
            setattr(self, name, new)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam search: each new beam continues an old one), in place."""
        n = self.length
        moved = (index != torch.arange(index.numel(), device=index.device)).nonzero().flatten()
        if moved.numel() == 0:  # every beam continued itself: nothing to copy
            return
        source = index[moved]
        start = min(self.shared_prefix, n)
        # The right-hand side is gathered before the write, so overlapping rows are safe.
        self.k[:, moved, :, start:n] = self.k[:, source, :, start:n]
        self.v[:, moved, :, start:n] = self.v[:, source, :, start:n]

    def first_rows(self, rows: int) -> "KVCache":
        """An empty, fixed-size cache over this one's first `rows` rows (same memory)."""
        view = KVCache.__new__(KVCache)
        view.__dict__.update(self.__dict__)
        view.k, view.v = self.k[:, :rows], self.v[:, :rows]
        view.length, view.growable, view.shared_prefix, view.write_index = 0, False, 0, None
        return view

    def to_legacy(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """transformers' legacy format: per layer (keys, values), each (B, H, T, D)."""
        n = self.length
        return tuple((self.k[i, :, :, :n], self.v[i, :, :, :n]) for i in range(self.k.shape[0]))

    @classmethod
    def from_legacy(cls, past: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> "KVCache":
        k0 = past[0][0]
        B, H, T, D = k0.shape
        cache = cls(len(past), B, H, D, T, dtype=k0.dtype, device=k0.device)
        for i, (k, v) in enumerate(past):
            cache.k[i, :, :, :T] = k
            cache.v[i, :, :, :T] = v
        cache.length = T
        return cache
