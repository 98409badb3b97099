"""Constrained decoding for relation extraction: entity names can only be copied from the source.

The output grammar comes from the task's `clause_template` (fixed words, COPY slots, a tuple of
allowed words, or None for a free word sequence), clauses joined by the task's separator and
closed by "." then end-of-sequence. At every step `allowed(row, generated)` replays the tokens
generated so far through that grammar and returns the tokens that keep the output inside it; a
COPY slot only accepts a token that continues a contiguous run of source tokens, so every entity
in the output occurs verbatim in the source (as BioGPT's own generator did).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .base import COPY


@dataclass
class _Element:
    kind: str  # "fixed", "copy", "choice", "free"
    sequences: list[list[int]]  # fixed: one sequence; choice: one per word


class CopyConstraint:
    def __init__(
        self,
        tokenizer: Any,
        template: Sequence[Any],
        *,
        separator: str,
        sources: Sequence[Sequence[int]],
        prompt_length: int,
        vocab_size: int,
    ) -> None:
        def ids(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        self.elements: list[_Element] = []
        for part in template:
            if part == COPY:
                self.elements.append(_Element("copy", []))
            elif part is None:
                self.elements.append(_Element("free", []))
            elif isinstance(part, tuple):
                self.elements.append(_Element("choice", [ids(w) for w in part]))
            else:
                self.elements.append(_Element("fixed", [ids(part)]))
        self.sep = ids(separator.strip())[0]
        self.end = ids(".")[0]
        self.eos = tokenizer.eos_token_id
        self.sources = [list(s) for s in sources]
        self.prompt_length = prompt_length
        self.vocab = list(range(vocab_size))
        self.word_final = {
            i for t, i in tokenizer.get_vocab().items() if t.endswith("</w>")
        }
        # Tokens an entity may not contain: the words that close a slot ("and", "exists", "is")
        # and the clause punctuation. The official parser splits clauses on ";" and entities on
        # the last " and " (greedy regex), so an entity holding them would be parsed apart.
        self.reserved = {self.sep, self.end} | {
            el.sequences[0][0] for el in self.elements if el.kind == "fixed" and el.sequences[0]
        }

    # ------------------------------------------------------------------ grammar walk
    def allowed(self, row: int, generated: Sequence[int]) -> list[int]:
        source = self.sources[row]
        state = self._walk(generated)
        if state is None:  # already off-grammar (cannot happen when constrained from the start)
            return [self.eos]
        return state(source)

    def _walk(self, tokens: Sequence[int]) -> Callable[[list[int]], list[int]] | None:
        element, offset, partial = 0, 0, []  # position in the clause template
        done = False
        for tok in tokens:
            if done:
                return lambda source: [self.eos]
            if element == len(self.elements):  # clause complete: separator or end
                if tok == self.sep:
                    element, offset, partial = 0, 0, []
                    continue
                if tok == self.end:
                    done = True
                    continue
                return None
            el = self.elements[element]
            if el.kind == "fixed":
                if tok != el.sequences[0][offset]:
                    return None
                offset += 1
                if offset == len(el.sequences[0]):
                    element, offset = element + 1, 0
            elif el.kind == "copy":
                nxt = self._first_of(element + 1)
                # a slot closes on the next fixed word once the entity ends a word; mid-word
                # (e.g. "studied" + "." of a Moses token "studied.") it keeps copying
                if partial and partial[-1] in self.word_final and tok in nxt:
                    element, partial = element + 1, []
                    offset = 1
                    if offset == len(self.elements[element].sequences[0]):
                        element, offset = element + 1, 0
                else:
                    partial.append(tok)
            elif el.kind == "choice":
                partial.append(tok)
                if not any(seq[: len(partial)] == partial for seq in el.sequences):
                    return None
                if any(seq == partial for seq in el.sequences) and not any(
                    len(seq) > len(partial) and seq[: len(partial)] == partial for seq in el.sequences
                ):
                    element, partial = element + 1, []
            else:  # free
                if partial and tok in (self.sep, self.end):
                    if tok == self.end:
                        done = True
                    element, offset, partial = 0, 0, []
                    continue
                partial.append(tok)
        if done:
            return lambda source: [self.eos]
        return self._allowed_at(element, offset, list(partial))

    def _first_of(self, element: int) -> set[int]:
        if element >= len(self.elements):
            return {self.sep, self.end}
        el = self.elements[element]
        return {seq[0] for seq in el.sequences if seq} if el.kind in ("fixed", "choice") else set()

    def _allowed_at(self, element: int, offset: int, partial: list[int]) -> Callable[[list[int]], list[int]]:
        if element == len(self.elements):
            return lambda source: [self.sep, self.end]
        el = self.elements[element]
        if el.kind == "fixed":
            token = el.sequences[0][offset]
            return lambda source: [token]
        if el.kind == "choice":
            options = sorted({seq[len(partial)] for seq in el.sequences if len(seq) > len(partial) and seq[: len(partial)] == partial})
            return lambda source: options
        if el.kind == "free":
            if not partial:
                return lambda source: [t for t in self.vocab if t not in (self.sep, self.end, self.eos)]
            return lambda source: [t for t in self.vocab if t != self.eos]

        def copy(source: list[int]) -> list[int]:
            if not partial:
                starts = {t for i, t in enumerate(source) if i == 0 or source[i - 1] in self.word_final}
                return sorted(starts - self.reserved) or sorted(self._first_of(element + 1))
            n = len(partial)
            follow = {
                source[j + n]
                for j in range(len(source) - n)
                if source[j : j + n] == partial
            }
            if partial[-1] in self.word_final:
                follow = (follow - self.reserved) | self._first_of(element + 1)
            elif not follow:  # the source ends mid-word: nothing to copy, close anyway
                follow = self._first_of(element + 1)
            return sorted(follow)

        return copy

    # ------------------------------------------------------------------ engine hook
    def prefix_allowed_tokens_fn(self) -> Callable[[int, torch.Tensor], list[int]]:
        def fn(batch_id: int, sentence: torch.Tensor) -> list[int]:
            return self.allowed(batch_id, sentence[self.prompt_length :].tolist())

        return fn
