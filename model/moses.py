"""Exact, memoised Moses tokenization (English, aggressive dash splits, XML escaping).

Why: transformers' BioGptTokenizer spends about three quarters of its time in sacremoses'
`MosesTokenizer.tokenize`, which runs a dozen regular expressions over the whole text and,
for every token ending in '.', rebuilds Python sets of ~10,000 characters. Our tokenizer must
produce the very same Moses tokens (ids, offsets and decoding depend on them), so this module
does not approximate Moses: it runs sacremoses' own regular expressions, in sacremoses' order,
on one whitespace-delimited chunk at a time, and remembers the result per chunk. Abstracts
repeat most of their chunks ("the", "of", "patients", "(n", "=", ...), so after a few texts
almost every chunk is a dictionary hit, and the per-text work is C-level (split, map, chain).

Why chunking is exact (sacremoses 0.2.0, lang="en", aggressive_dash_splits=True, escape=True):

* Normalisation (`\\s+` -> " ", delete [\\x00-\\x1f], strip) leaves non-space chunks separated by
  one or more spaces. Deleting the non-whitespace control characters and then splitting on
  whitespace gives the same chunks: whitespace control characters were already spaces when
  sacremoses deletes the rest, which only ever join their neighbours. (`\\s`, str.split and
  str.strip all use the same Unicode whitespace test.)
* Every regular expression of the pipeline up to the apostrophe rules (padding of non-alnum
  characters, hyphen split, multi-dots, the three comma rules, the five English apostrophe
  rules) matches a run of non-space characters plus at most one context character on either
  side, and none deletes or rewrites a space. So a pass over " " + chunk + " " finds exactly
  the matches the pass finds over the whole text, with the text's first chunk lacking the
  leading space and its last chunk lacking the trailing one (`$` in COMMA_SEPARATE_3, the
  multi-dot marker's trailing space).
  The one exception: a pass that can consume the same boundary space from both sides. Only
  EN_SPECIFIC_1 (`([^alpha])'([^alpha])`) can, and only when a chunk ends with "'" and the next
  one starts with "'". Such texts go to sacremoses unchanged (counted in `fallbacks`).
* The non-breaking-prefix rule reads the next token's first character. For a chunk's last
  token that is the next chunk's first character ("D" when it starts with a multi-dot marker):
  we store both outcomes ("X." kept, or split into "X" ".") and choose once the next chunk is
  known. The trailing ".'" rule concerns only the text's last chunk, processed as such.
* Restoring multi-dots and XML escaping act inside single tokens.

A pass is only run on a chunk that contains a character it can match ('-', '..', ',', "'"):
no pass creates such a character, so skipping is exact. The reference (sacremoses) stays the
oracle: tests compare the two on adversarial strings and on every text of the shared corpora.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain, compress
from typing import Any

__all__ = ["FastMosesTokenizer"]

# Chunk positions: the context a chunk sees at its edges (text start/end vs. a space).
_FIRST, _MID, _LAST, _ONLY = range(4)

Tokens = tuple[str, ...]
# (tokens if the chunk's final "X." stays whole, tokens if it is split into "X" "." or None when
# no next chunk can change it, whether "X" is a numeric-only prefix such as "No" / "pp").
_Entry = tuple[Tokens, "Tokens | None", bool]

_ASCII_DIGITS = frozenset("0123456789")
# Memo size limit: a long-running process over a huge corpus must not grow without bound;
# clearing is cheap and only costs recomputation.
_MAX_MEMO = 500_000
_TEMPLATE = re.compile(r"(?:[^\\]|\\[1-9](?![0-9]))*")
_GROUP_REF = re.compile(r"\\([1-9])")


def _replacer(template: str) -> str | Callable[[re.Match[str]], str]:
    """A callable equivalent of a `\\1`-style replacement template.

    Why: Python 3.11 expands group templates in pure Python per match (`expand_template`),
    ten times slower than a small closure. Templates with anything but literals and `\\N`
    references are returned unchanged (then `re` itself interprets them)."""
    if _TEMPLATE.fullmatch(template) is None:
        return template
    parts = _GROUP_REF.split(template)
    literals, groups = parts[0::2], [int(g) for g in parts[1::2]]
    if len(groups) == 1:
        a, b = literals
        (g,) = groups
        return lambda m: a + (m.group(g) or "") + b
    if len(groups) == 2:
        a, b, c = literals
        g, h = groups
        return lambda m: a + (m.group(g) or "") + b + (m.group(h) or "") + c
    return lambda m: "".join(
        literals[i // 2] if i % 2 == 0 else (m.group(groups[i // 2]) or "") for i in range(2 * len(groups) + 1)
    )


def _pass(rule: tuple[re.Pattern[str], str]) -> tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]:
    pattern, template = rule
    return pattern, _replacer(template)


class FastMosesTokenizer:
    """`tokenize(text)` == `MosesTokenizer(lang="en").tokenize(text, aggressive_dash_splits=True,
    return_str=False, escape=True)` for every string, computed per whitespace chunk and memoised."""

    def __init__(self, reference: Any = None) -> None:
        if reference is None:
            import sacremoses

            reference = sacremoses.MosesTokenizer(lang="en")
        if getattr(reference, "lang", None) != "en":
            raise ValueError("FastMosesTokenizer reproduces the English Moses rules only")
        self.reference = reference
        ref = reference
        # The regular expressions themselves come from sacremoses, so the character classes
        # (Perl's IsAlnum, IsN, IsAlpha, ...) are the reference's own.
        self._pad = _pass(ref.PAD_NOT_ISALNUM)
        self._hyphen = _pass(ref.AGGRESSIVE_HYPHEN_SPLIT)
        self._comma = tuple(_pass(r) for r in (ref.COMMA_SEPARATE_1, ref.COMMA_SEPARATE_2, ref.COMMA_SEPARATE_3))
        self._apostrophe = tuple(_pass(r) for r in ref.ENGLISH_SPECIFIC_APOSTROPHE)
        # A chunk of IsAlnum characters only passes through every rule unchanged. The class is
        # written the way sacremoses writes it (unescaped), so it means the same to `re`.
        self._plain: re.Pattern[str] | None = re.compile(r"[{}]+".format(ref.IsAlnum))
        if any(self._plain.match(c) for c in "-.,'`&|<>\"[] "):
            self._plain = None  # a pass or the escaping could touch an "alnum" chunk
        self._nonbreaking = frozenset(ref.NONBREAKING_PREFIXES)
        self._numeric_only = frozenset(ref.NUMERIC_ONLY_PREFIXES)
        self._lower = frozenset(ref.IsLower)
        self._alpha = frozenset(ref.IsAlpha)
        # Control characters that are not whitespace: Moses deletes them (joining neighbours).
        junk = "".join(chr(c) for c in range(0x20) if not chr(c).isspace())
        self._junk = re.compile("[" + re.escape(junk) + "]")
        # Chunks inside a text (a space on both sides): final tokens when context-free or kept,
        # and, for chunks ending in a breakable "X.", the split variant.
        self._mid_keep: dict[str, Tokens] = {}
        self._mid_split: dict[str, tuple[Tokens, bool]] = {}
        # Chunks at the start / end of a text, or alone: rarer, full entries.
        self._edge: tuple[dict[str, _Entry], ...] = ({}, {}, {}, {})
        self._final: dict[str, str] = {}
        #: How many texts went to sacremoses because chunk-wise processing is not exact for them.
        self.fallbacks = 0

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle (multiprocessing, deepcopy) as the reference alone: the replacement closures
        cannot be pickled and the memos are only a cache."""
        return (type(self), (self.reference,))

    # ------------------------------------------------------------------ public
    def tokenize(self, text: str) -> list[str]:
        """Moses tokens of `text`, identical to the reference's."""
        return list(chain.from_iterable(self.tokenize_chunks(text)))

    def tokenize_chunks(self, text: str) -> list[Tokens]:
        """The Moses tokens of `text` grouped by input chunk (each group a non-empty tuple);
        flattened, they are exactly the reference's tokens.

        Why groups: callers can memoise per group (e.g. BPE ids of a whole chunk) and stay in
        C-level loops (`map`, `chain`)."""
        if self._junk.search(text) is not None:
            text = self._junk.sub("", text)
        chunks = text.split()
        n = len(chunks)
        if n == 0:
            return []
        if n == 1:
            return [self._edge_entry(chunks[0], _ONLY)[0]]
        if "'" in text and self._boundary_quote_clash(chunks):
            self.fallbacks += 1
            return [tuple(self.reference.tokenize(text, aggressive_dash_splits=True, return_str=False, escape=True))]
        if len(self._mid_keep) >= _MAX_MEMO:
            # Replaced, not cleared: a call running in another thread keeps its own pair of
            # dicts, so a chunk's kept and split variants are always looked up together.
            self._mid_keep, self._mid_split = {}, {}
        keep, split = self._mid_keep, self._mid_split
        groups: list[Any] = list(map(keep.get, chunks))
        if n > 2:
            try:
                i = groups.index(None, 1, n - 1)
                while True:
                    groups[i] = self._mid(chunks[i], keep, split)
                    i = groups.index(None, i + 1, n - 1)
            except ValueError:
                pass
            lower = self._lower
            for i in compress(range(1, n - 1), map(split.__contains__, chunks[1 : n - 1])):
                variant, numeric = split[chunks[i]]
                if not self._keeps_before(chunks[i + 1], numeric, lower):
                    groups[i] = variant
        first = self._edge_entry(chunks[0], _FIRST)
        groups[0] = first[0]
        if first[1] is not None and not self._keeps_before(chunks[1], first[2], self._lower):
            groups[0] = first[1]
        groups[-1] = self._edge_entry(chunks[-1], _LAST)[0]
        return groups

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _keeps_before(following: str, numeric: bool, lower: frozenset[str]) -> bool:
        """Context half of the non-breaking-prefix rule: does "X." stay whole before the chunk
        `following`? Its first token starts with the chunk's first character, or with the "D"
        of the multi-dot marker ("DOTDOTMULTI") when the chunk starts with two dots."""
        c = following[0]
        if c == "." and following.startswith(".."):
            c = "D"
        return c in lower or (numeric and c in _ASCII_DIGITS)

    @staticmethod
    def _boundary_quote_clash(chunks: list[str]) -> bool:
        """A chunk ending with "'" followed by one starting with "'": EN_SPECIFIC_1 could use the
        space between them from both sides, so chunk-wise processing might differ."""
        return any(a[-1] == "'" and b[0] == "'" for a, b in zip(chunks, chunks[1:]))

    def _mid(self, chunk: str, keep_memo: dict[str, Tokens], split_memo: dict[str, tuple[Tokens, bool]]) -> Tokens:
        """Compute and remember a chunk with a space on both sides (split variant first, so a
        concurrent reader that sees the kept variant also sees the split one)."""
        keep, split, numeric = self._compute(chunk, _MID)
        if split is not None:
            split_memo[chunk] = (split, numeric)
        keep_memo[chunk] = keep
        return keep

    def _edge_entry(self, chunk: str, position: int) -> _Entry:
        memo = self._edge[position]
        entry = memo.get(chunk)
        if entry is None:
            entry = self._compute(chunk, position)
            if len(memo) >= _MAX_MEMO:
                memo.clear()
            memo[chunk] = entry
        return entry

    def _compute(self, chunk: str, position: int) -> _Entry:
        """Run the reference's passes on the chunk with the context of its position."""
        plain = self._plain
        if plain is not None and "MULTI" not in chunk and plain.fullmatch(chunk) is not None:
            # Only IsAlnum characters: no pass changes it, no prefix rule applies (no '.').
            return (chunk,), None, False
        text = chunk
        if position == _MID or position == _LAST:
            text = " " + text
        if position == _FIRST or position == _MID:
            text = text + " "
        pattern, replacement = self._pad
        text = pattern.sub(replacement, text)
        if "-" in chunk:
            pattern, replacement = self._hyphen
            text = pattern.sub(replacement, text)
        if ".." in chunk:
            text = self.reference.replace_multidots(text)
        if "," in chunk:
            for pattern, replacement in self._comma:
                text = pattern.sub(replacement, text)
        if "'" in chunk:
            for pattern, replacement in self._apostrophe:
                text = pattern.sub(replacement, text)
        tokens = text.split()
        ends_text = position == _LAST or position == _ONLY

        # Non-breaking prefixes for every token whose next token is inside this chunk.
        last = len(tokens) - 1
        for i in range(last):
            token = tokens[i]
            if len(token) > 1 and token[-1] == ".":
                prefix = token[:-1]
                if self._keeps_period(prefix):
                    continue
                following = tokens[i + 1][0]
                if following in self._lower:
                    continue
                if prefix in self._numeric_only and following in _ASCII_DIGITS:
                    continue
                tokens[i] = prefix + " ."
        # The chunk's last token: decided here at the end of the text, else by the next chunk.
        split: list[str] | None = None
        numeric = False
        token = tokens[last]
        if len(token) > 1 and token[-1] == "." and not self._keeps_period(token[:-1]):
            if ends_text:
                tokens[last] = token[:-1] + " ."
            else:
                split = tokens[:last] + [token[:-1] + " ."]
                numeric = token[:-1] in self._numeric_only
        if ends_text:
            tokens = " ".join(tokens).split()
            tail = tokens[-1]
            if tail.endswith(".'"):  # TRAILING_DOT_APOSTROPHE: `\.' ?$` -> " . ' "
                tokens[-1:] = ([tail[:-2]] if len(tail) > 2 else []) + [".", "'"]
        keep = self._finish(tokens)
        return keep, (self._finish(split) if split is not None else None), numeric

    def _keeps_period(self, prefix: str) -> bool:
        """The context-free half of Moses' non-breaking-prefix test for the token prefix + '.'."""
        if "." in prefix and not self._alpha.isdisjoint(prefix):
            return True
        return prefix in self._nonbreaking and prefix not in self._numeric_only

    def _finish(self, tokens: list[str]) -> Tokens:
        """Split tokens joined by the prefix rule, restore multi-dots, escape XML characters."""
        final = self._final
        out: list[str] = []
        ref = self.reference
        for token in " ".join(tokens).split():
            done = final.get(token)
            if done is None:
                done = ref.escape_xml(ref.restore_multidots(token))
                if len(final) >= _MAX_MEMO:
                    final.clear()
                final[token] = done
            out.append(done)
        return tuple(out)
