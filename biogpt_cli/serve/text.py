"""The running text of a completion's choice as its tokens arrive: stream-safe pieces, stop
strings, and the token strings of logprobs.

BioGPT's detokenizer (Moses + BPE) is not prefix-stable in general, and decoding the whole
sequence on every token costs O(n²) on the event loop. So the running text grows by the
difference a token makes to the decode of a short window before it (O(1) per token); the final
text of a choice is one full `tokenizer.decode(ids, skip_special_tokens=True)` (exactly what
`model.generate` + decode gives). Streamed text is only ever appended to: text already sent never
changes, and a suffix that could be the start of a stop string is held back until it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WINDOW = 8  # tokens of left context when decoding one more token (Moses joins over a few tokens)


class TokenStrings:
    """The string of one token for logprobs (`tokens`, `top_logprobs` keys), cached: the
    token decoded alone, special tokens kept (`</s>`), as vLLM reports them."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.cache[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return text


class TextTracker:
    """The text of one choice as its tokens arrive (see the module docstring)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""  # running text (cut at a stop string once one is found)
        self.offsets: list[int] = []  # where each token's text starts in `text`
        self.stopped = False  # a stop string was found: `text` ends before it
        self.sent = ""  # what `take` has handed out (always a prefix of what it will hand out)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def add(self, token_id: int) -> None:
        if self.stopped:
            return
        self.ids.append(token_id)
        start = max(0, len(self.ids) - 1 - WINDOW)
        before, after = self._decode(self.ids[start:-1]), self._decode(self.ids[start:])
        common = len(before) if after.startswith(before) else _common_prefix(before, after)
        piece = after[common:]
        checked_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=0))
        self.offsets.append(len(self.text))
        self.text += piece
        if self.stops:
            cut = _first_stop(self.text, self.stops, checked_from)
            if cut is not None:
                self.text, self.stopped = self.text[:cut], True

    def final_text(self) -> str:
        """The choice's text: the full decode of its tokens, cut at the first stop string."""
        full = self._decode(self.ids)
        if self.stops:
            cut = _first_stop(full, self.stops, 0)
            if cut is not None:
                return full[:cut]
            if self.stopped:  # the running text found a stop the full decode joins differently
                return self.text
        return full

    def take(self, *, final: bool = False) -> str:
        """New text that is safe to send: never changes what was sent, and holds back a tail
        that may still become a stop string (unless `final` or stopped)."""
        text = self.final_text() if final else self.text
        if not text.startswith(self.sent):
            return ""  # the detokenizer rejoined sent text: nothing can be taken back
        end = len(text)
        if not final and not self.stopped and self.stops:
            end -= _stop_prefix_tail(text, self.stops)
        new = text[len(self.sent) : end] if end > len(self.sent) else ""
        self.sent += new
        return new


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _first_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    longest = min(max(len(s) for s in stops) - 1, len(text))
    for k in range(longest, 0, -1):
        tail = text[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0
