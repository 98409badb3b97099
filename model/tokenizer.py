"""BioGptTokenizer: Moses tokenization then BPE, id-for-id identical to transformers'.

Why our own: the reference has no character offsets (NER output needs them), needs the whole
transformers stack, and is slow. We reproduce its exact behaviour, quirks included (Moses with
XML escaping and aggressive dash splits; added tokens split out before Moses; decoding that
glues an added token to the next word), because parity is what lets checkpoints and outputs
move between the two.

It loads Hugging Face (vocab.json + merges.txt) and fairseq (dict.txt + bpecodes) vocabularies,
converting the latter on load (the forms and their readers: vocab_files.py). The BioGPT and
BioGPT-Large vocabularies ship inside this package (model/vocab), so the tokenizers of
microsoft/biogpt and microsoft/BioGPT-Large load with no network.

Why one file of this length: it is one class, the slow-tokenizer API that code written for
transformers calls (encode, __call__ with padding/truncation/offsets, decode, save/load); the
vocabulary readers and the Moses rules, which stand alone, live in vocab_files.py and moses.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from .errors import VocabularyError
from .files import write_text_atomic
from .moses import FastMosesTokenizer
from .vocab_files import (
    ADDED_TOKENS_FILE,
    BUNDLED_VOCABULARIES,
    FAIRSEQ_BPE_FILE,
    FAIRSEQ_DICT_FILE,
    MERGES_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    VOCAB_DIR,
    VOCAB_FILE,
    fairseq_dict_to_vocab,
    load_bpe_table,
    read_json_object,
    read_merges,
    read_vocab_json,
)

logger = logging.getLogger(__name__)

# sacremoses' escape_xml table: escaped form -> original character.
_XML_ENTITIES: tuple[tuple[str, str], ...] = (
    ("&amp;", "&"),
    ("&#124;", "|"),
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&apos;", "'"),
    ("&quot;", '"'),
    ("&#91;", "["),
    ("&#93;", "]"),
)
# Rank of a pair that is not a merge: above every real rank (an int, so `min` stays in C).
_NO_MERGE = 1 << 62
# Bound of the per-chunk ids cache: a long-running process must not grow without limit.
_MAX_CACHE = 500_000
# Characters Moses drops (ASCII control characters) or treats as token separators.
_SKIPPABLE = re.compile(r"[\s\x00-\x1f]")

Offset = tuple[int, int]


class BatchEncoding(dict):
    """The tokenizer's output: a dict (`enc["input_ids"]`) with attribute access and `.to()`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> "BatchEncoding":
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


class BioGptTokenizer:
    """Moses + BPE tokenizer of BioGPT with the API names of transformers' BioGptTokenizer."""

    vocab_files_names = {"vocab_file": VOCAB_FILE, "merges_file": MERGES_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab: dict[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        added_tokens: dict[str, int] | None = None,
        model_max_length: int = 1024,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        sep_token: str = "</s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        padding_side: str = "right",
        truncation_side: str = "right",
        name_or_path: str = "",
    ) -> None:
        import sacremoses  # imported here so `import biogpt.model` works without it

        self.encoder = dict(vocab)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.model_max_length = model_max_length
        self.bos_token, self.eos_token, self.sep_token = bos_token, eos_token, sep_token
        self.unk_token, self.pad_token = unk_token, pad_token
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.name_or_path = name_or_path
        for token in self.special_tokens:
            if token not in self.encoder:
                raise VocabularyError(
                    f"special token {token!r} is missing from the vocabulary"
                    + (f" of {name_or_path}" if name_or_path else "")
                )
        self._moses = sacremoses.MosesTokenizer(lang="en")
        # Same tokens as self._moses (proved by tests/model/test_moses.py), memoised per chunk.
        self._fast_moses = FastMosesTokenizer(self._moses)
        self._detok = sacremoses.MosesDetokenizer(lang="en")
        self._bpe_cache: dict[str, tuple[str, ...]] = {}
        # The shipped table for these merges, if any: words whose BPE is the single piece
        # `word</w>`, and the pieces of the other table words (a cold process skips their merges).
        self._bpe_words, self._bpe_table = load_bpe_table(merges)
        self._word_cache: dict[str, tuple[int, ...]] = {}
        # Ids of a whole Moses chunk (a tuple of tokens), so encoding stays in C-level loops.
        self._group_cache: dict[tuple[str, ...], tuple[int, ...]] = {}
        # Added tokens: the specials plus extra symbols (e.g. learned1..learned9), atomic.
        self.added_tokens_encoder: dict[str, int] = {t: self.encoder[t] for t in self.special_tokens}
        self._build_splitter()
        if added_tokens:
            for token, index in sorted(added_tokens.items(), key=lambda kv: kv[1]):
                self._add_token(token, index)
            self._build_splitter()

    # ----------------------------------------------------------------- vocabulary
    @property
    def special_tokens(self) -> list[str]:
        seen: list[str] = []
        for t in (self.bos_token, self.eos_token, self.unk_token, self.sep_token, self.pad_token):
            if t not in seen:
                seen.append(t)
        return seen

    @property
    def all_special_tokens(self) -> list[str]:
        return self.special_tokens

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.special_tokens]

    @property
    def added_tokens_decoder(self) -> dict[int, str]:
        return {i: t for t, i in self.added_tokens_encoder.items()}

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary (without added tokens), as in transformers."""
        return len(self.encoder)

    def __len__(self) -> int:
        return len(set(self.encoder.values()) | set(self.added_tokens_encoder.values()))

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    @property
    def bos_token_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def eos_token_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def sep_token_id(self) -> int:
        return self.encoder[self.sep_token]

    @property
    def pad_token_id(self) -> int:
        return self.encoder[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    def add_tokens(self, tokens: str | Iterable[str]) -> int:
        """Add atomic tokens after the current vocabulary; returns how many were new."""
        if isinstance(tokens, str):
            tokens = [tokens]
        added = 0
        for token in tokens:
            if not token or token in self.added_tokens_encoder:
                continue
            index = self.encoder.get(token, len(self))
            self._add_token(token, index)
            added += 1
        if added:
            self._build_splitter()
        return added

    def _add_token(self, token: str, index: int) -> None:
        self.added_tokens_encoder[token] = index
        self._word_cache.clear()
        self._group_cache.clear()

    def _build_splitter(self) -> None:
        # Leftmost match, longest token first: the semantics of transformers' added-token trie.
        alternatives = sorted(self.added_tokens_encoder, key=len, reverse=True)
        self._splitter = re.compile("|".join(re.escape(t) for t in alternatives))

    # ----------------------------------------------------------------- BPE
    def bpe(self, token: str) -> tuple[str, ...]:
        """BPE pieces of one Moses token; the last piece carries `</w>` (transformers' rule)."""
        cached = self._bpe_cache.get(token)
        if cached is not None:
            return cached
        if token in self._bpe_words:
            pieces = self._bpe_cache[token] = (token + "</w>",)
            return pieces
        cached = self._bpe_table.get(token)
        if cached is not None:
            self._bpe_cache[token] = cached
            return cached
        word = list(token[:-1]) + [token[-1] + "</w>"]
        get = self.bpe_ranks.get
        while len(word) > 1:
            # Ranks of all adjacent pairs in C (`map` over dict.get with a default); the lowest
            # rank wins, and every non-overlapping occurrence of that pair merges, left to right.
            pairs = list(zip(word, word[1:]))
            ranks = list(map(get, pairs, repeat(_NO_MERGE)))
            best = min(ranks)
            if best == _NO_MERGE:
                break
            at = ranks.index(best)
            first, second = pairs[at]
            if ranks.count(best) == 1:  # the usual case: one occurrence
                word[at : at + 2] = [first + second]
                continue
            merged: list[str] = word[:at]
            i = at
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        pieces = tuple(word)
        if pieces == ("\n  </w>",):  # transformers' special case, kept for parity
            pieces = ("\n</w>",)
        self._bpe_cache[token] = pieces
        return pieces

    def _moses_tokenize(self, text: str) -> list[str]:
        """sacremoses' `tokenize(text, aggressive_dash_splits=True, return_str=False,
        escape=True)` for English, computed by the exact memoised version in model/moses.py."""
        return self._fast_moses.tokenize(text)

    def _split_added(self, text: str) -> list[tuple[str, int, bool]]:
        """(piece, start offset, is_added_token) in order; plain pieces go through Moses."""
        parts: list[tuple[str, int, bool]] = []
        pos = 0
        for match in self._splitter.finditer(text):
            if match.start() > pos:
                parts.append((text[pos : match.start()], pos, False))
            parts.append((match.group(), match.start(), True))
            pos = match.end()
        if pos < len(text):
            parts.append((text[pos:], pos, False))
        return parts

    def tokenize(self, text: str) -> list[str]:
        """Tokens (BPE pieces in vocab.json form) without special tokens added."""
        tokens: list[str] = []
        for piece, _, is_added in self._split_added(text):
            if is_added:
                tokens.append(piece)
            else:
                for word in self._moses_tokenize(piece):
                    if word:
                        tokens.extend(self.bpe(word))
        return tokens

    def _word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._word_cache.get(word)
        if ids is None:
            unk = self.encoder[self.unk_token]
            ids = tuple(self.encoder.get(p, unk) for p in self.bpe(word))
            self._word_cache[word] = ids
        return ids

    def _group_ids(self, groups: list[tuple[str, ...]]) -> list[tuple[int, ...]]:
        """Ids of each group of Moses tokens; hits are a C-level `map` over a dict."""
        cache = self._group_cache
        found: list[tuple[int, ...] | None] = list(map(cache.get, groups))
        if None in found:
            if len(cache) >= _MAX_CACHE:
                cache.clear()
            word_ids = self._word_ids
            for i, ids in enumerate(found):
                if ids is None:
                    group = groups[i]
                    ids = tuple(chain.from_iterable(map(word_ids, group)))
                    cache[group] = ids
                    found[i] = ids
        return found  # type: ignore[return-value]

    def _encode_text(self, text: str, with_offsets: bool) -> tuple[list[int], list[Offset]]:
        ids: list[int] = []
        offsets: list[Offset] = []
        for piece, start, is_added in self._split_added(text):
            if is_added:
                ids.append(self.added_tokens_encoder[piece])
                offsets.append((start, start + len(piece)))
                continue
            groups = self._fast_moses.tokenize_chunks(piece)
            ids.extend(chain.from_iterable(self._group_ids(groups)))
            if with_offsets:
                words = [w for w in chain.from_iterable(groups) if w]
                offsets.extend(self._offsets(piece, start, words))
        return ids, offsets

    # ----------------------------------------------------------------- offsets
    def _offsets(self, text: str, base: int, words: list[str]) -> list[Offset]:
        """Character span in `text` (shifted by `base`) of every BPE piece of `words`."""
        spans: list[Offset] = []
        pos = 0
        for word in words:
            surface, char_of = _unescape(word)
            starts = _align(text, pos, surface)
            if starts is None and word == "@-@":  # Moses' aggressive dash split marker
                surface, char_of = "-", [0, 0, 0]
                starts = _align(text, pos, surface)
            if starts is None:  # a normalisation we do not model: zero-width spans, no advance
                logger.debug("could not align Moses token %r at offset %d", word, base + pos)
                spans.extend((base + pos, base + pos) for _ in self.bpe(word))
                continue
            at = 0
            for piece in self.bpe(word):
                length = len(piece) - 4 if piece.endswith("</w>") else len(piece)
                first, last = char_of[at], char_of[at + length - 1] if length else char_of[at]
                spans.append((base + starts[first], base + starts[last] + 1))
                at += length
            pos = starts[-1] + 1
        return spans

    # ----------------------------------------------------------------- encoding
    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool | str | None = None,
        max_length: int | None = None,
    ) -> list[int]:
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            truncation=truncation,
            max_length=max_length,
            return_attention_mask=False,
        )["input_ids"]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        def one(token: str) -> int:
            if token in self.added_tokens_encoder:
                return self.added_tokens_encoder[token]
            return self.encoder.get(token, self.encoder[self.unk_token])

        return one(tokens) if isinstance(tokens, str) else [one(t) for t in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], *, skip_special_tokens: bool = False
    ) -> str | list[str]:
        added = self.added_tokens_decoder

        def one(index: int) -> str:
            return added[index] if index in added else self.decoder.get(index, self.unk_token)

        if isinstance(ids, int):
            return one(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [one(int(i)) for i in ids if int(i) not in skip]

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """`</s> A` or `</s> A </s> B`: fairseq's (and the reference's) sequence layout."""
        sep = [self.sep_token_id]
        return sep + token_ids_0 if token_ids_1 is None else sep + token_ids_0 + sep + token_ids_1

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> BatchEncoding:
        """Encode one text or a batch, with transformers' padding and truncation semantics."""
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        if text_pair is None:
            pairs: list[str | None] = [None] * len(texts)
        else:
            pairs = list(text_pair) if batched else [text_pair]  # type: ignore[list-item]
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} text pairs")
        for t in [*texts, *pairs]:
            if t is not None and not isinstance(t, str):
                raise TypeError(f"text must be a string or a list of strings, got {type(t).__name__}")

        padding_strategy = _padding_strategy(padding)
        if truncation is None:
            truncation = max_length is not None and padding_strategy == "do_not_pad"
        truncation_strategy = _truncation_strategy(truncation)
        if max_length is None and (truncation_strategy != "do_not_truncate" or padding_strategy == "max_length"):
            max_length = self.model_max_length
        padding_side = padding_side or self.padding_side
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")

        all_ids: list[list[int]] = []
        all_offsets: list[list[Offset]] = []
        for first, second in zip(texts, pairs):
            ids_a, off_a = self._encode_text(first, return_offsets_mapping)
            ids_b, off_b = self._encode_text(second, return_offsets_mapping) if second is not None else ([], [])
            if truncation_strategy != "do_not_truncate":
                assert max_length is not None
                n_special = (2 if second is not None else 1) if add_special_tokens else 0
                ids_a, off_a, ids_b, off_b = self._truncate(
                    ids_a, off_a, ids_b, off_b, max_length - n_special, truncation_strategy
                )
            if add_special_tokens:
                ids = self.build_inputs_with_special_tokens(ids_a, ids_b if second is not None else None)
                offsets = [(0, 0), *off_a] + ([(0, 0), *off_b] if second is not None else [])
            else:
                ids, offsets = ids_a + ids_b, off_a + off_b
            all_ids.append(ids)
            all_offsets.append(offsets)

        masks = [[1] * len(ids) for ids in all_ids]
        lengths = [len(ids) for ids in all_ids]
        if padding_strategy != "do_not_pad":
            target = max(lengths) if padding_strategy == "longest" else max_length
            assert target is not None
            if pad_to_multiple_of and target % pad_to_multiple_of:
                target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
            for i, ids in enumerate(all_ids):
                n = target - len(ids)
                if n <= 0:
                    continue
                pad_ids, pad_mask, pad_off = [self.pad_token_id] * n, [0] * n, [(0, 0)] * n
                if padding_side == "right":
                    all_ids[i], masks[i], all_offsets[i] = ids + pad_ids, masks[i] + pad_mask, all_offsets[i] + pad_off
                else:
                    all_ids[i], masks[i], all_offsets[i] = pad_ids + ids, pad_mask + masks[i], pad_off + all_offsets[i]

        out: dict[str, Any] = {"input_ids": all_ids}
        if return_attention_mask:
            out["attention_mask"] = masks
        if return_offsets_mapping:
            out["offset_mapping"] = all_offsets
        if return_length:
            out["length"] = lengths
        if return_tensors is not None:
            if return_tensors != "pt":
                raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt'")
            import torch

            if len({len(ids) for ids in all_ids}) > 1:
                raise ValueError(
                    "sequences have different lengths: pass padding=True to return a tensor batch"
                )
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        elif not batched:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out)

    def _truncate(
        self,
        ids_a: list[int],
        off_a: list[Offset],
        ids_b: list[int],
        off_b: list[Offset],
        budget: int,
        strategy: str,
    ) -> tuple[list[int], list[Offset], list[int], list[Offset]]:
        budget = max(budget, 0)
        excess = len(ids_a) + len(ids_b) - budget
        if excess <= 0:
            return ids_a, off_a, ids_b, off_b
        if strategy == "only_second":
            keep_b = max(len(ids_b) - excess, 0)
            keep_a = len(ids_a)
        elif strategy == "only_first" or not ids_b:
            keep_a, keep_b = max(len(ids_a) - excess, 0), len(ids_b)
        else:  # longest_first: remove one token at a time from the longer sequence
            keep_a, keep_b = len(ids_a), len(ids_b)
            for _ in range(excess):
                if keep_a > keep_b:
                    keep_a -= 1
                else:
                    keep_b -= 1
        if self.truncation_side == "left":
            return ids_a[len(ids_a) - keep_a :], off_a[len(off_a) - keep_a :], ids_b[len(ids_b) - keep_b :], off_b[len(off_b) - keep_b :]
        return ids_a[:keep_a], off_a[:keep_a], ids_b[:keep_b], off_b[:keep_b]

    # ----------------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Undo BPE (`</w>` ends a word), then Moses-detokenize (which also unescapes XML)."""
        words = "".join(t.replace(" ", "").replace("</w>", " ") for t in tokens).split()
        return self._detok.detokenize(words)

    def decode(
        self,
        token_ids: Any,
        *,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> str:
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        text = self.convert_tokens_to_string(tokens)  # type: ignore[arg-type]
        if clean_up_tokenization_spaces:
            text = _clean_up_tokenization(text)
        return text

    def batch_decode(
        self,
        sequences: Any,
        *,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [
            self.decode(
                s,
                skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            )
            for s in sequences
        ]

    # ----------------------------------------------------------------- saving
    def save_vocabulary(self, save_directory: str | os.PathLike[str], filename_prefix: str | None = None) -> tuple[str, str]:
        directory = Path(save_directory)
        if not directory.is_dir():
            raise VocabularyError(f"{directory}: not a directory")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_file = directory / f"{prefix}{VOCAB_FILE}"
        merges_file = directory / f"{prefix}{MERGES_FILE}"
        # each file atomically: a full disk leaves the old file (or none), never a cut vocabulary
        write_text_atomic(vocab_file, json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        ordered = sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])
        write_text_atomic(merges_file, "".join(f"{a} {b}\n" for (a, b), _ in ordered))
        return str(vocab_file), str(merges_file)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> tuple[str, ...]:
        """Write files transformers' BioGptTokenizer loads with the same ids (each atomically)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = list(self.save_vocabulary(directory))
        specials = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "sep_token": self.sep_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
        }
        special_set = set(self.special_tokens)
        added_decoder = {
            str(index): {
                "content": token,
                "lstrip": False,
                "normalized": token not in special_set,
                "rstrip": False,
                "single_word": False,
                "special": token in special_set,
            }
            for token, index in sorted(self.added_tokens_encoder.items(), key=lambda kv: kv[1])
        }
        config = {
            **specials,
            "added_tokens_decoder": added_decoder,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": False,
            "tokenizer_class": "BioGptTokenizer",
        }
        path = directory / TOKENIZER_CONFIG_FILE
        write_text_atomic(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        files.append(str(path))
        path = directory / SPECIAL_TOKENS_MAP_FILE
        write_text_atomic(path, json.dumps(specials, indent=2) + "\n")
        files.append(str(path))
        extra = {t: i for t, i in self.added_tokens_encoder.items() if t not in special_set}
        if extra:
            path = directory / ADDED_TOKENS_FILE
            write_text_atomic(path, json.dumps(extra, indent=2, ensure_ascii=False) + "\n")
            files.append(str(path))
        return tuple(files)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_files(
        cls,
        vocab_file: str | os.PathLike[str],
        merges_file: str | os.PathLike[str],
        **kwargs: Any,
    ) -> "BioGptTokenizer":
        """From a Hugging Face vocab.json + merges.txt pair."""
        return cls(read_vocab_json(vocab_file), read_merges(merges_file), **kwargs)

    @classmethod
    def from_fairseq(
        cls,
        dict_file: str | os.PathLike[str],
        bpecodes_file: str | os.PathLike[str],
        *,
        extra_symbols: Sequence[str] = (),
        **kwargs: Any,
    ) -> "BioGptTokenizer":
        """From fairseq's dict.txt + bpecodes; `extra_symbols` (e.g. learned1..learned9) follow
        the dictionary's last entry as atomic added tokens, as fairseq's `add_symbol` places them."""
        vocab = fairseq_dict_to_vocab(dict_file)
        added = {s: len(vocab) + i for i, s in enumerate(extra_symbols)}
        return cls(vocab, read_merges(bpecodes_file), added_tokens=added, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        extra_symbols: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> "BioGptTokenizer":
        """Load from a local directory (Hugging Face or fairseq files), a bundled vocabulary
        (microsoft/biogpt, microsoft/BioGPT-Large: no network), or a hub id.

        extra_symbols: for fairseq vocabularies, the symbols after dict.txt's last entry (a
        loaded model's `tokenizer_source` has them); None counts them from the checkpoint in a
        fairseq directory (none for a bundled vocabulary)."""
        from .hub import resolve_file

        name = str(name_or_path)
        path = Path(name).expanduser()
        if path.is_dir():
            if (path / VOCAB_FILE).is_file() or (path / MERGES_FILE).is_file():
                return cls._from_hf_files(
                    path / VOCAB_FILE,
                    path / MERGES_FILE,
                    _maybe(path / TOKENIZER_CONFIG_FILE),
                    _maybe(path / ADDED_TOKENS_FILE),
                    name,
                    kwargs,
                )
            if (path / FAIRSEQ_DICT_FILE).is_file() or (path / FAIRSEQ_BPE_FILE).is_file():
                if extra_symbols is None:
                    extra_symbols = _fairseq_learned_symbols(path)
                kwargs.setdefault("name_or_path", name)
                return cls.from_fairseq(
                    path / FAIRSEQ_DICT_FILE, path / FAIRSEQ_BPE_FILE, extra_symbols=extra_symbols, **kwargs
                )
            raise VocabularyError(
                f"{path}: no tokenizer files; expected {VOCAB_FILE} + {MERGES_FILE} "
                f"(Hugging Face) or {FAIRSEQ_DICT_FILE} + {FAIRSEQ_BPE_FILE} (fairseq)"
            )
        bundled = BUNDLED_VOCABULARIES.get(name.lower())
        if bundled is not None and revision is None:
            folder, max_len = bundled
            kwargs.setdefault("model_max_length", max_len)
            kwargs.setdefault("name_or_path", name)
            return cls.from_fairseq(
                VOCAB_DIR / folder / FAIRSEQ_DICT_FILE,
                VOCAB_DIR / folder / FAIRSEQ_BPE_FILE,
                extra_symbols=extra_symbols or (),
                **kwargs,
            )
        common = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
        vocab_file = resolve_file(name, VOCAB_FILE, **common)
        merges_file = resolve_file(name, MERGES_FILE, **common)
        config_file = resolve_file(name, TOKENIZER_CONFIG_FILE, required=False, **common)
        added_file = resolve_file(name, ADDED_TOKENS_FILE, required=False, **common)
        assert vocab_file is not None and merges_file is not None
        return cls._from_hf_files(vocab_file, merges_file, config_file, added_file, name, kwargs)

    @classmethod
    def _from_hf_files(
        cls,
        vocab_file: Path,
        merges_file: Path,
        config_file: Path | None,
        added_file: Path | None,
        name: str,
        kwargs: dict[str, Any],
    ) -> "BioGptTokenizer":
        vocab = read_vocab_json(vocab_file)
        merges = read_merges(merges_file)
        config = read_json_object(config_file) if config_file else {}
        added: dict[str, int] = {}
        for index, entry in (config.get("added_tokens_decoder") or {}).items():
            content = entry["content"] if isinstance(entry, dict) else str(entry)
            if vocab.get(content) != int(index):
                added[content] = int(index)
        if added_file:
            added.update({str(k): int(v) for k, v in read_json_object(added_file).items()})
        options: dict[str, Any] = {"name_or_path": name}
        for key in ("bos_token", "eos_token", "sep_token", "unk_token", "pad_token"):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                options[key] = value
        max_len = config.get("model_max_length")
        if isinstance(max_len, int) and max_len < 10**9:
            options["model_max_length"] = max_len
        for key in ("padding_side", "truncation_side"):
            if config.get(key) in ("left", "right"):
                options[key] = config[key]
        options.update(kwargs)
        return cls(vocab, merges, added_tokens=added, **options)

    def __repr__(self) -> str:
        return (
            f"BioGptTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"added_tokens={len(self) - self.vocab_size}, model_max_length={self.model_max_length})"
        )


# --------------------------------------------------------------------- loading helpers
def _maybe(path: Path) -> Path | None:
    return path if path.is_file() else None


def _fairseq_learned_symbols(directory: Path) -> list[str]:
    """The learned prompt symbols (learned1...learnedN) of the fairseq checkpoint beside this
    dictionary, counted from its embedding rows: a tokenizer loaded without its model needs them
    too. Imported here because reading a checkpoint needs torch, and only this case reads one."""
    from .fairseq_files import checkpoint_learned_symbols

    return checkpoint_learned_symbols(directory)


# --------------------------------------------------------------------- offsets helpers
def _unescape(word: str) -> tuple[str, list[int]]:
    """Undo Moses' XML escaping; also map each escaped character to its surface character."""
    if "&" not in word:
        return word, list(range(len(word)))
    surface: list[str] = []
    char_of: list[int] = []
    i = 0
    while i < len(word):
        for escaped, original in _XML_ENTITIES:
            if word.startswith(escaped, i):
                char_of.extend([len(surface)] * len(escaped))
                surface.append(original)
                i += len(escaped)
                break
        else:
            char_of.append(len(surface))
            surface.append(word[i])
            i += 1
    return "".join(surface), char_of


def _align(text: str, pos: int, surface: str) -> list[int] | None:
    """Index in `text` of each character of `surface`, matching from `pos` on and skipping the
    characters Moses removes (whitespace, ASCII control characters); None if it does not match."""
    starts: list[int] = []
    i = pos
    n = len(text)
    for ch in surface:
        while i < n and text[i] != ch and _SKIPPABLE.match(text[i]):
            i += 1
        if i >= n or text[i] != ch:
            return None
        starts.append(i)
        i += 1
    return starts


def _padding_strategy(padding: bool | str) -> str:
    if padding is True or padding == "longest":
        return "longest"
    if padding is False or padding is None or padding == "do_not_pad":
        return "do_not_pad"
    if padding == "max_length":
        return "max_length"
    raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")


def _truncation_strategy(truncation: bool | str) -> str:
    if truncation is True:
        return "longest_first"
    if truncation is False or truncation == "do_not_truncate":
        return "do_not_truncate"
    if truncation in ("longest_first", "only_first", "only_second"):
        return str(truncation)
    raise ValueError(
        "truncation must be True, False, 'longest_first', 'only_first', 'only_second' or "
        f"'do_not_truncate', got {truncation!r}"
    )


def _clean_up_tokenization(text: str) -> str:
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
