"""Streaming: transformers' streamer interface, and a text streamer for Moses-detokenised output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class Streamer(Protocol):
    """transformers' streamer interface: `put` gets the prompt ids first, then each new token."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


class TextStreamer:
    """Calls `callback(text)` with each new piece of decoded text as tokens arrive.

    Moses detokenisation can change the spacing of the last word once the next one arrives, so
    the final word is held back until it is followed by another (or the stream ends)."""

    def __init__(self, tokenizer, callback: Callable[[str], None], *, skip_prompt: bool = True) -> None:
        self.tokenizer = tokenizer
        self.callback = callback
        self.skip_prompt = skip_prompt
        self.ids: list[int] = []
        self.printed = 0
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        values = value.flatten().tolist()
        if not self.prompt_seen:
            self.prompt_seen = True
            if self.skip_prompt:
                return
        self.ids.extend(values)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = text.rfind(" ")
        if cut > self.printed:
            self.callback(text[self.printed : cut])
            self.printed = cut

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.printed:
            self.callback(text[self.printed :])
        self.printed = len(text)
