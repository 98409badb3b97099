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
transformers calls (construction from vocab_file + merges_file, encode, __call__ with padding,
truncation with overflow and stride, pre-split words, masks and "pt"/"np" tensors, pad() for the
data collators, added and special tokens, chat templates, decode, save/load); the vocabulary
readers and the Moses rules, which stand alone, live in vocab_files.py and moses.py. Public methods that transformers
lets callers pass positionally (pad, decode, add_tokens, ...) keep its parameter order, so code
written for it runs unchanged; __call__'s options stay keyword-only, as everyone passes them.
A plain call (no truncation or extra outputs) takes a short path (`_plain`) that gives the same
result without the general path's bookkeeping: the per-text cost must not grow.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import re
import warnings
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from .errors import ModelPathError, VocabularyError
from .files import atomic_directory, write_text_atomic
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
# The logger transformers' tokenizers warn on (see _warn_if_too_long); a name only, no import.
_HF_LOGGER = logging.getLogger("transformers.tokenization_utils_base")

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
# Where transformers 5 saves chat templates (and looks for them first when loading).
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"


# transformers' "no limit" for model_max_length (its VERY_LARGE_INTEGER), and the bound above which
# it treats a model_max_length as unset (LARGE_INTEGER): both only compared, never allocated.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)
# The named special tokens transformers knows, in its order (which is also the order in which
# missing ones are appended to a vocabulary and listed by all_special_tokens).
SPECIAL_TOKENS_ATTRIBUTES: tuple[str, ...] = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)
_MISSING = object()
_PADDING = {"longest": "longest", "max_length": "max_length", "do_not_pad": "do_not_pad"}
_TRUNCATION = ("longest_first", "only_first", "only_second", "do_not_truncate")


class BatchEncoding(dict):
    """The tokenizer's output: a dict (`enc["input_ids"]`) with attribute access, `.to()` and
    `.convert_to_tensors()`, as transformers' BatchEncoding of a slow tokenizer."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        tensor_type: Any = None,
        prepend_batch_axis: bool = False,
    ) -> None:
        super().__init__(data or {})
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis=prepend_batch_axis)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    # pickle and copy must not go through __getattr__ (a dict subclass has no instance dict to find)
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __reduce__(self) -> Any:
        return (BatchEncoding, (dict(self),))

    @property
    def data(self) -> dict[str, Any]:
        """transformers' BatchEncoding is a UserDict: code reads `.data`."""
        return dict(self)

    @property
    def is_fast(self) -> bool:
        return False

    def convert_to_tensors(self, tensor_type: Any = None, prepend_batch_axis: bool = False) -> "BatchEncoding":
        """Values to "pt" (torch) or "np" (numpy) arrays; ragged batches raise ValueError as in
        transformers. torch and numpy are imported here: plain lists need neither."""
        if tensor_type is None:
            return self
        kind = str(getattr(tensor_type, "value", tensor_type))
        if kind == "pt":
            import torch

            def as_tensor(value: Any) -> Any:
                if torch.is_tensor(value):
                    return value
                if isinstance(value, list) and value and type(value[0]).__module__ == "numpy":
                    import numpy as np

                    return torch.from_numpy(np.array(value))
                return torch.tensor(value, dtype=torch.int64 if _is_empty(value) else None)

        elif kind == "np":
            import numpy as np

            def as_tensor(value: Any) -> Any:
                if isinstance(value, np.ndarray):
                    return value
                if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
                    if len({len(v) for v in value}) > 1:  # ragged: an object array, as transformers
                        ragged = np.empty(len(value), dtype=object)
                        ragged[:] = [np.asarray(v) for v in value]
                        return ragged
                return np.asarray(value, dtype=np.int64 if _is_empty(value) else None)

        else:
            raise ValueError(f"return_tensors={tensor_type!r} is not supported; use 'pt' or 'np'")
        for key, value in list(self.items()):
            try:
                self[key] = as_tensor([value] if prepend_batch_axis else value)
            except Exception as exc:
                if key == "overflowing_tokens":
                    raise ValueError(
                        "Unable to create tensor returning overflowing tokens of different lengths."
                    ) from exc
                raise ValueError(
                    "Unable to create tensor, you should probably activate truncation and/or padding with"
                    " 'padding=True' 'truncation=True' to have batched tensors with the same length"
                    f" (`{key}` in this case)."
                ) from exc
        return self

    def to(self, device: Any, *, non_blocking: bool = False) -> "BatchEncoding":
        return BatchEncoding(
            {k: v.to(device, non_blocking=non_blocking) if hasattr(v, "to") else v for k, v in self.items()}
        )


@dataclass(eq=False)
class AddedToken:
    """An added token and how it matches, as transformers' (tokenizers') AddedToken: `str()` is
    its text. transformers' own AddedToken objects are accepted wherever this one is (by their
    attributes), since product code does not import transformers."""

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True
    special: bool = False

    def __str__(self) -> str:
        return self.content

    def __getstate__(self) -> dict[str, Any]:
        """The dict transformers writes into tokenizer_config.json's added_tokens_decoder."""
        return {
            "content": self.content,
            "lstrip": self.lstrip,
            "normalized": self.normalized,
            "rstrip": self.rstrip,
            "single_word": self.single_word,
            "special": self.special,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _as_added_token(token: Any, *, special: bool | None = None) -> AddedToken:
    """A str, our AddedToken, a transformers/tokenizers AddedToken or a saved dict -> AddedToken."""
    if isinstance(token, str):
        is_special = bool(special)
        return AddedToken(token, normalized=not is_special, special=is_special)
    if isinstance(token, dict):
        fields = {k: token[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in token}
        return AddedToken(str(token["content"]), **fields)
    content = getattr(token, "content", None)
    if not isinstance(content, str):
        raise TypeError(f"Token {token!r} is not a string but a {type(token).__name__}.")
    return AddedToken(
        content,
        single_word=bool(getattr(token, "single_word", False)),
        lstrip=bool(getattr(token, "lstrip", False)),
        rstrip=bool(getattr(token, "rstrip", False)),
        normalized=bool(getattr(token, "normalized", True)),
        special=bool(getattr(token, "special", False)) or bool(special),
    )


def _special_token_property(name: str) -> property:
    def get(self: "BioGptTokenizer") -> str | None:
        return self._special_tokens_map[name]

    def set_(self: "BioGptTokenizer", value: Any) -> None:
        self._set_special_token(name, value)

    return property(get, set_, doc=f"The {name.replace('_', ' ')} (None when unset), as in transformers.")


def _special_token_id_property(name: str) -> property:
    def get(self: "BioGptTokenizer") -> int | None:
        token = self._special_tokens_map[name]
        return None if token is None else self.convert_tokens_to_ids(token)

    def set_(self: "BioGptTokenizer", value: int | None) -> None:
        self._set_special_token(name, None if value is None else self.convert_ids_to_tokens(int(value)))

    return property(get, set_, doc=f"The id of the {name.replace('_', ' ')} (None when unset).")


class BioGptTokenizer:
    """Moses + BPE tokenizer of BioGPT with the API of transformers' (slow) BioGptTokenizer.

    Construction as transformers': `BioGptTokenizer(vocab_file, merges_file, unk_token, bos_token,
    eos_token, sep_token, pad_token, **kwargs)`; vocab_file/merges_file may also be an already read
    vocabulary (dict) and merge list. Why **kwargs and not typed keyword options: transformers
    stores every keyword in `init_kwargs` and writes it to tokenizer_config.json, and its loader
    passes every key of that file back; the recognised ones (model_max_length, padding_side,
    truncation_side, clean_up_tokenization_spaces, split_special_tokens, model_input_names,
    extra_special_tokens / additional_special_tokens, added_tokens_decoder, name_or_path, and
    ours: added_tokens {token: id}) are read by `_read_options`, the rest kept as transformers does.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE, "merges_file": MERGES_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    SPECIAL_TOKENS_ATTRIBUTES = list(SPECIAL_TOKENS_ATTRIBUTES)

    bos_token = _special_token_property("bos_token")
    eos_token = _special_token_property("eos_token")
    unk_token = _special_token_property("unk_token")
    sep_token = _special_token_property("sep_token")
    pad_token = _special_token_property("pad_token")
    cls_token = _special_token_property("cls_token")
    mask_token = _special_token_property("mask_token")
    bos_token_id = _special_token_id_property("bos_token")
    eos_token_id = _special_token_id_property("eos_token")
    unk_token_id = _special_token_id_property("unk_token")
    sep_token_id = _special_token_id_property("sep_token")
    pad_token_id = _special_token_id_property("pad_token")
    cls_token_id = _special_token_id_property("cls_token")
    mask_token_id = _special_token_id_property("mask_token")

    def __init__(
        self,
        vocab_file: str | os.PathLike[str] | dict[str, int],
        merges_file: str | os.PathLike[str] | Sequence[tuple[str, str]],
        unk_token: Any = "<unk>",
        bos_token: Any = "<s>",
        eos_token: Any = "</s>",
        sep_token: Any = "</s>",
        pad_token: Any = "<pad>",
        **kwargs: Any,
    ) -> None:
        import sacremoses  # imported here so `import biogpt.model` works without it

        # transformers refuses a keyword that would shadow a method (from_pretrained passes every
        # key of a tokenizer_config.json here: `add_special_tokens: true` there must not silently
        # replace the method on the instance). Checked on the class, so no property runs yet.
        for key in kwargs:
            if callable(getattr(type(self), key, None)):
                raise AttributeError(f"{key} conflicts with the method {key} in {type(self).__name__}")
        vocab = dict(vocab_file) if isinstance(vocab_file, dict) else read_vocab_json(vocab_file)
        merges = read_merges(merges_file) if isinstance(merges_file, (str, os.PathLike)) else list(merges_file)
        added_tokens: dict[str, int] = dict(kwargs.pop("added_tokens", None) or {})
        saved_added: dict[Any, Any] = dict(kwargs.pop("added_tokens_decoder", None) or {})
        if "additional_special_tokens" in kwargs and "extra_special_tokens" not in kwargs:
            kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
        specials = {
            "bos_token": bos_token, "eos_token": eos_token, "sep_token": sep_token,
            "unk_token": unk_token, "pad_token": pad_token,
        }
        # transformers' init_kwargs: the special tokens, every other keyword, and its backend tag
        self.init_kwargs: dict[str, Any] = {**copy.deepcopy(specials), **copy.deepcopy(kwargs), "backend": "custom"}
        self.init_inputs: tuple[Any, ...] = ()
        self.backend = "custom"
        self.deprecation_warnings: dict[str, bool] = {}

        self.encoder = vocab
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self._special_tokens_map: dict[str, str | None] = dict.fromkeys(SPECIAL_TOKENS_ATTRIBUTES)
        for key in ("cls_token", "mask_token"):
            specials[key] = kwargs.pop(key, None)
        for key, value in specials.items():
            self._special_tokens_map[key] = None if value is None else str(getattr(value, "content", value))
        self._extra_special_tokens: list[str] = []
        self._read_options(kwargs)
        # A Jinja template, or {name: template}; tokenizer_config.json stores several as a list of
        # {"name", "template"} (transformers' format), turned back into the dict here.
        chat_template = kwargs.pop("chat_template", None)
        if isinstance(chat_template, (list, tuple)):
            chat_template = {t["name"]: t["template"] for t in chat_template}
        self.chat_template: str | dict[str, str] | None = chat_template

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
        # Added tokens (atomic: split out before Moses): token -> id, and each one's flags.
        self.added_tokens_encoder: dict[str, int] = {}
        self._added_tokens: dict[str, AddedToken] = {}
        self._added_ids: dict[int, str] = {}
        # Saved added tokens first (a reloaded tokenizer keeps their ids), then the fairseq extra
        # symbols, then, as transformers does, every special token not yet known: its vocabulary id,
        # or the next free id (so a vocabulary without <s> </s> <pad> gets them appended).
        for index, token in sorted(((int(i), t) for i, t in saved_added.items()), key=lambda it: it[0]):
            self._register_added(_as_added_token(token), index)
        for token, index in sorted(added_tokens.items(), key=lambda kv: kv[1]):
            if token not in self.added_tokens_encoder:
                self._register_added(_as_added_token(token), int(index))
        self._refresh_added()
        self._add_tokens(
            [t for t in self.all_special_tokens if t not in self.added_tokens_encoder], special_tokens=True
        )

    def _read_options(self, kwargs: dict[str, Any]) -> None:
        max_len = kwargs.pop("model_max_length", kwargs.pop("max_len", None))
        self.model_max_length: int = int(max_len) if max_len is not None else VERY_LARGE_INTEGER
        self.padding_side = kwargs.pop("padding_side", None) or type(self).padding_side
        self.truncation_side = kwargs.pop("truncation_side", None) or type(self).truncation_side
        for name, side in (("Padding", self.padding_side), ("Truncation", self.truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{name} side should be selected between 'right' and 'left', current value: {side}")
        self.model_input_names = list(kwargs.pop("model_input_names", None) or type(self).model_input_names)
        self.clean_up_tokenization_spaces = bool(kwargs.pop("clean_up_tokenization_spaces", False))
        self.split_special_tokens = bool(kwargs.pop("split_special_tokens", False))
        self.verbose = bool(kwargs.pop("verbose", False))
        self.name_or_path = str(kwargs.pop("name_or_path", "") or "")
        extra = kwargs.pop("extra_special_tokens", None)
        if isinstance(extra, dict):  # named model-specific tokens: kept as extra special tokens
            extra = list(extra.values())
        self._extra_special_tokens = [str(getattr(t, "content", t)) for t in extra or ()]

    # ----------------------------------------------------------------- special tokens
    def _set_special_token(self, name: str, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            content = getattr(value, "content", None)
            if not isinstance(content, str):
                raise ValueError(f"Cannot set a non-string value as the {name}")
            value = content
        self._special_tokens_map[name] = value
        if name == "unk_token":  # unknown pieces map to the unk id, which the caches hold
            self._word_cache.clear()
            self._group_cache.clear()

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {k: v for k, v in self._special_tokens_map.items() if v is not None}

    @property
    def extra_special_tokens(self) -> list[str]:
        return list(self._extra_special_tokens)

    @extra_special_tokens.setter
    def extra_special_tokens(self, value: Sequence[Any] | None) -> None:
        self._extra_special_tokens = [str(getattr(t, "content", t)) for t in value or ()]

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self._extra_special_tokens]

    @extra_special_tokens_ids.setter
    def extra_special_tokens_ids(self, value: Sequence[int] | None) -> None:
        self._extra_special_tokens = [self.convert_ids_to_tokens(int(i)) for i in value or ()]

    # transformers 4's names for the extra special tokens
    additional_special_tokens = extra_special_tokens
    additional_special_tokens_ids = extra_special_tokens_ids

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (transformers' attribute order), then the extra ones, unique."""
        seen: list[str] = []
        for token in chain(self._special_tokens_map.values(), self._extra_special_tokens):
            if token is not None and token not in seen:
                seen.append(token)
        return seen

    special_tokens = all_special_tokens  # this package's earlier name

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def pad_token_type_id(self) -> int:
        return 0

    @property
    def is_fast(self) -> bool:
        return False

    def add_special_tokens(
        self, special_tokens_dict: dict[str, Any], replace_extra_special_tokens: bool = True
    ) -> int:
        """Set named special tokens (and extra ones) and add those not in the vocabulary after it;
        returns how many ids were new (transformers' rules, including its key names)."""
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get("extra_special_tokens"):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        allowed = set(SPECIAL_TOKENS_ATTRIBUTES) | {"extra_special_tokens"}
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise ValueError(f"Key {key} is not a valid special token. Valid keys are: {allowed}")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"Tokens {value} for key {key} should all be str or AddedToken instances")
                new = [
                    _as_added_token(t, special=True) if isinstance(t, str) else _as_added_token(t)
                    for t in value
                    if replace_extra_special_tokens or str(getattr(t, "content", t)) not in self._extra_special_tokens
                ]
                if replace_extra_special_tokens and new:
                    self._extra_special_tokens = [t.content for t in new]
                else:
                    self._extra_special_tokens.extend(t.content for t in new)
                to_add.extend(new)
            else:
                token = _as_added_token(value, special=True) if isinstance(value, str) else _as_added_token(value)
                self._set_special_token(key, token.content)
                to_add.append(token)
        return self.add_tokens(to_add, special_tokens=True)

    # ----------------------------------------------------------------- vocabulary
    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return {i: self._added_tokens[t] for i, t in sorted(self._added_ids.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return dict(self.added_tokens_encoder)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary (without added tokens), as in transformers."""
        return len(self.encoder)

    def __len__(self) -> int:
        """Size of the whole vocabulary, added tokens included: transformers counts tokens (keys)."""
        return self._total_size

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Add atomic tokens (str or AddedToken) after the current vocabulary; returns how many ids
        were new. A token already in the vocabulary keeps its id (and becomes atomic)."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        return self._add_tokens(list(new_tokens), special_tokens=special_tokens)

    def _add_tokens(self, new_tokens: list[Any], special_tokens: bool = False) -> int:
        """transformers' PythonBackend._add_tokens: new ids count on from len(get_vocab())."""
        current = self.get_vocab()
        next_id = len(current)
        added = 0
        specials = set(self.all_special_tokens)
        for raw in new_tokens:
            if isinstance(raw, str):
                if not raw or raw in self.added_tokens_encoder:
                    continue
                token = _as_added_token(raw, special=raw in specials or special_tokens)
            else:
                token = _as_added_token(raw, special=True if special_tokens else None)
                if not token.content:
                    continue
            if token.content not in current:
                index = current[token.content] = next_id + added
                added += 1
            else:
                index = current[token.content]
            if token.special and token.content not in specials:
                self._extra_special_tokens.append(token.content)
                specials.add(token.content)
            self._register_added(token, index)
        self._refresh_added()
        return added

    def _register_added(self, token: AddedToken, index: int) -> None:
        self.added_tokens_encoder[token.content] = index
        self._added_tokens[token.content] = token
        self._added_ids[index] = token.content

    def _refresh_added(self) -> None:
        """After the added tokens changed: drop cached ids, rebuild the splitter and the size."""
        self._word_cache.clear()
        self._group_cache.clear()
        self._total_size = len(self.encoder.keys() | self.added_tokens_encoder.keys())
        # Leftmost match, longest token first: the semantics of transformers' added-token trie.
        alternatives = sorted(self.added_tokens_encoder, key=len, reverse=True)
        self._splitter = re.compile("|".join(re.escape(t) for t in alternatives)) if alternatives else None
        self._flagged = any(t.lstrip or t.rstrip or t.single_word for t in self._added_tokens.values())


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

    def _split_added(self, text: str, split_special: bool = False) -> list[tuple[str, int, bool]]:
        """(piece, start offset, is_added_token) in order; plain pieces go through Moses.
        split_special: no added token is atomic (transformers' split_special_tokens).
        A piece's characters appear in `text` in order from its start, possibly with whitespace
        between them that an lstrip/rstrip token removed (offsets are aligned on `text`)."""
        if split_special or self._splitter is None:
            return [(text, 0, False)] if text else []
        parts: list[tuple[str, int, bool]] = []
        pos = 0
        for match in self._splitter.finditer(text):
            if match.start() > pos:
                parts.append((text[pos : match.start()], pos, False))
            parts.append((match.group(), match.start(), True))
            pos = match.end()
        if pos < len(text):
            parts.append((text[pos:], pos, False))
        if self._flagged:
            parts = self._apply_flags(parts)
        return parts

    def _apply_flags(self, parts: list[tuple[str, int, bool]]) -> list[tuple[str, int, bool]]:
        """transformers' PythonBackend.tokenize, step for step: left to right, an added token with
        rstrip/lstrip eats the whitespace after/before it, and a single_word token touching a
        word (no space on that side) is not a token there: it joins that word, left side first,
        and the joined text is tokenized as plain text. The neighbours are read before this
        token's own strips, as transformers reads them."""
        texts = [p[0] for p in parts]
        starts = [p[1] for p in parts]
        last = len(parts) - 1
        for i in range(len(parts)):
            if texts[i] not in self._added_tokens:  # transformers tests the piece's current text
                continue
            token = self._added_tokens[texts[i]]
            left = texts[i - 1] if i > 0 else ""
            right = texts[i + 1] if i < last else ""
            if token.rstrip and right:
                stripped = right.lstrip()
                starts[i + 1] += len(right) - len(stripped)
                texts[i + 1] = stripped
            if token.lstrip and left:
                texts[i - 1] = left.rstrip()
            if token.single_word:
                if left and left[-1] != " ":
                    texts[i - 1] += texts[i]
                    texts[i] = ""
                elif right and right[0] != " ":
                    texts[i + 1] = texts[i] + texts[i + 1]
                    starts[i + 1] = starts[i]
                    texts[i] = ""
        # as transformers: whatever piece is now exactly an added token is one, the rest is text
        encoder = self.added_tokens_encoder
        return [(t, at, t in encoder) for t, at in zip(texts, starts) if t]

    def tokenize(self, text: str, *, split_special_tokens: bool | None = None, **kwargs: Any) -> list[str]:
        """Tokens (BPE pieces in vocab.json form) without special tokens added. Other keywords are
        accepted and ignored, as transformers' slow tokenizers do."""
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        tokens: list[str] = []
        for piece, _, is_added in self._split_added(text, split):
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
            # transformers: a piece not in the vocabulary gets the vocabulary's id of unk_token
            unk = self.encoder.get(self._special_tokens_map["unk_token"])  # type: ignore[arg-type]
            ids = tuple(self.encoder.get(p, unk) for p in self.bpe(word))  # type: ignore[misc]
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

    def _encode_text(
        self, text: str, with_offsets: bool, split_special: bool = False
    ) -> tuple[list[int], list[Offset]]:
        ids: list[int] = []
        offsets: list[Offset] = []
        for piece, start, is_added in self._split_added(text, split_special):
            if is_added:
                ids.append(self.added_tokens_encoder[piece])
                offsets.append((start, start + len(piece)))
                continue
            groups = self._fast_moses.tokenize_chunks(piece)
            ids.extend(chain.from_iterable(self._group_ids(groups)))
            if with_offsets:
                words = [w for w in chain.from_iterable(groups) if w]
                # aligned on the whole text from the piece's start: a piece an lstrip/rstrip
                # single_word token was joined to is not contiguous there (whitespace between)
                offsets.extend(self._offsets(text, start, words))
        return ids, offsets

    # ----------------------------------------------------------------- offsets
    def _offsets(self, text: str, start: int, words: list[str]) -> list[Offset]:
        """Character span in `text` of every BPE piece of `words`, matched from `start` on."""
        spans: list[Offset] = []
        pos = start
        for word in words:
            surface, char_of = _unescape(word)
            starts = _align(text, pos, surface)
            if starts is None and word == "@-@":  # Moses' aggressive dash split marker
                surface, char_of = "-", [0, 0, 0]
                starts = _align(text, pos, surface)
            if starts is None:  # a normalisation we do not model: zero-width spans, no advance
                logger.debug("could not align Moses token %r at offset %d", word, pos)
                spans.extend((pos, pos) for _ in self.bpe(word))
                continue
            at = 0
            for piece in self.bpe(word):
                length = len(piece) - 4 if piece.endswith("</w>") else len(piece)
                first, last = char_of[at], char_of[at + length - 1] if length else char_of[at]
                spans.append((starts[first], starts[last] + 1))
                at += length
            pos = starts[-1] + 1
        return spans

    # ----------------------------------------------------------------- ids and tokens
    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        if tokens is None:
            return None
        if isinstance(tokens, str):  # one token: no closure (the special-token ids come here)
            index = self.added_tokens_encoder.get(tokens)
            if index is not None:
                return index
            return self.encoder.get(tokens, self.encoder.get(self._special_tokens_map["unk_token"]))  # type: ignore[arg-type]
        unk = self.encoder.get(self._special_tokens_map["unk_token"])  # type: ignore[arg-type]

        def one(token: str) -> int | None:
            if token in self.added_tokens_encoder:
                return self.added_tokens_encoder[token]
            return self.encoder.get(token, unk)

        return one(tokens) if isinstance(tokens, str) else [one(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        added = self._added_ids
        unk = self._special_tokens_map["unk_token"]

        def one(index: int) -> str:
            return added[index] if index in added else self.decoder.get(index, unk)  # type: ignore[return-value]

        if isinstance(ids, int):
            return one(ids)
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
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

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 where build_inputs_with_special_tokens puts a separator; with already_has_special_tokens,
        1 for every id of a special token (what the data collators ask for)."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(
                    "You should not supply a second sequence if the provided sequence of ids is already "
                    "formatted with special tokens for the model."
                )
            special = set(self.all_special_ids)
            return [1 if int(t) in special else 0 for t in token_ids_0]
        if token_ids_1 is not None:
            return [1] + [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1)
        return [1] + [0] * len(token_ids_0)

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """0 over `</s> A`, 1 over `</s> B` (transformers' default "bert_style" pattern)."""
        first = len(token_ids_0) + 1
        return [0] * first if token_ids_1 is None else [0] * first + [1] * (len(token_ids_1) + 1)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return len(self.build_inputs_with_special_tokens([], [] if pair else None))

    # ----------------------------------------------------------------- encoding
    def encode(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Ids of one text (or pair): a list, or a (1, n) tensor with return_tensors."""
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def __call__(
        self,
        text: Any = None,
        text_pair: Any = None,
        text_target: Any = None,
        text_pair_target: Any = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        max_target_length: int | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode one text, a pair, or a batch, with transformers' (slow tokenizer) semantics for
        padding, truncation (with overflow and stride), pre-split words, masks and tensors.
        Offsets (return_offsets_mapping) are ours: the slow reference has none. Other keywords
        (a seq2seq caller's src_lang, tgt_lang, ...) are accepted and unused, as transformers'
        slow BioGptTokenizer does, so code written for several tokenizers runs unchanged."""
        if kwargs:
            logger.debug("keyword arguments not used by BioGptTokenizer: %s", sorted(kwargs))
        if (
            # The fast path: plain text(s), no truncation, lists out. It gives what the general
            # path gives, without its per-call bookkeeping (which would double the cost of a
            # short text); anything else takes the general path below.
            text_target is None
            and not truncation
            and max_length is None
            and (padding is False or (padding is True and pad_to_multiple_of is None and self.pad_token is not None))
            and not (return_token_type_ids or return_overflowing_tokens or return_special_tokens_mask)
            and not (return_length or is_split_into_words or split_special_tokens or self.split_special_tokens)
            and return_attention_mask is not False
            and self.model_input_names == ["input_ids", "attention_mask"]
            and return_tensors in (None, "pt")
        ):
            if isinstance(text, str) and (text_pair is None or isinstance(text_pair, str)):
                out = self._plain(text, text_pair, add_special_tokens, return_offsets_mapping)
                self._warn_if_too_long(len(out["input_ids"]), None, verbose)
                return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=True) if return_tensors else out
            if (
                isinstance(text, (list, tuple))
                and text_pair is None
                and all(type(t) is str for t in text)
                and text
            ):
                return self._plain_batch(
                    text, add_special_tokens, return_offsets_mapping, padding, padding_side, return_tensors, verbose
                )
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        padding_strategy, truncation_strategy, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        options = dict(
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
            split_special=self.split_special_tokens if split_special_tokens is None else split_special_tokens,
            verbose=verbose,
        )
        encodings = self._encode_plus(text, text_pair, max_length=max_length, **options) if text is not None else None
        if text_target is None:
            assert encodings is not None
            return encodings
        target_length = max_target_length if max_target_length is not None else max_length
        targets = self._encode_plus(text_target, text_pair_target, max_length=target_length, **options)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _plain(
        self, text: str, text_pair: str | None, add_special_tokens: bool, with_offsets: bool
    ) -> BatchEncoding:
        """One text (or pair) with the default options: `</s> A [</s> B]` and its mask."""
        sep = self.sep_token_id if add_special_tokens else None
        ids, offsets = self._plain_ids(text, text_pair, sep, with_offsets)
        out = BatchEncoding({"input_ids": ids, "attention_mask": [1] * len(ids)})
        if with_offsets:
            out["offset_mapping"] = offsets
        return out

    def _plain_ids(
        self, text: str, text_pair: str | None, sep: int | None, with_offsets: bool
    ) -> tuple[list[int], list[Offset]]:
        ids, offsets = self._encode_text(text, with_offsets)
        if text_pair is None:
            if sep is None:
                return ids, offsets
            return [sep, *ids], [(0, 0), *offsets] if with_offsets else []
        ids_b, offsets_b = self._encode_text(text_pair, with_offsets)
        if sep is None:
            return ids + ids_b, offsets + offsets_b
        return [sep, *ids, sep, *ids_b], [(0, 0), *offsets, (0, 0), *offsets_b] if with_offsets else []

    def _plain_batch(
        self,
        texts: Sequence[str],
        add_special_tokens: bool,
        with_offsets: bool,
        padding: bool,
        padding_side: str | None,
        return_tensors: str | None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """A batch of texts with the default options, padded to the longest when asked."""
        sep = self.sep_token_id if add_special_tokens else None
        encoded = [self._plain_ids(t, None, sep, with_offsets) for t in texts]
        all_ids = [ids for ids, _ in encoded]
        self._warn_if_too_long(max(map(len, all_ids)), None, verbose)
        columns: dict[str, list[Any]] = {"input_ids": all_ids, "attention_mask": [[1] * len(ids) for ids in all_ids]}
        if with_offsets:
            columns["offset_mapping"] = [offsets for _, offsets in encoded]
        if padding:
            side = padding_side if padding_side is not None else self.padding_side
            if side not in ("left", "right"):
                raise ValueError(f"Invalid padding strategy:{side}")
            target = max(map(len, all_ids))
            fills = {"input_ids": self.pad_token_id, "attention_mask": 0, "offset_mapping": (0, 0)}
            for key, column in columns.items():
                fill = fills[key]
                for i, value in enumerate(column):
                    n = target - len(value)
                    if n:
                        column[i] = value + [fill] * n if side == "right" else [fill] * n + value
        return BatchEncoding(columns, tensor_type=return_tensors)

    def _encode_plus(
        self,
        text: Any,
        text_pair: Any,
        *,
        add_special_tokens: bool,
        padding_strategy: str,
        truncation_strategy: str,
        max_length: int | None,
        stride: int,
        is_split_into_words: bool,
        pad_to_multiple_of: int | None,
        padding_side: str | None,
        return_tensors: str | None,
        return_token_type_ids: bool | None,
        return_attention_mask: bool | None,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_length: bool,
        split_special: bool,
        verbose: bool = True,
    ) -> BatchEncoding:
        """transformers' PythonBackend._encode_plus: a batch is encoded item by item, then padded."""
        is_batched = isinstance(text, (list, tuple)) and (
            (not text and not is_split_into_words)
            or (bool(text) and is_split_into_words and isinstance(text[0], (list, tuple)))
            or (bool(text) and not is_split_into_words and isinstance(text[0], (str, list, tuple)))
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        item = dict(
            add_special_tokens=add_special_tokens,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            return_token_type_ids=return_token_type_ids,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            verbose=verbose,
        )
        if not is_batched:
            first = self._input_ids(text, is_split_into_words, return_offsets_mapping, split_special)
            second = (
                self._input_ids(text_pair, is_split_into_words, return_offsets_mapping, split_special)
                if text_pair is not None
                else None
            )
            out = self._prepare(first, second, keep_overflow=not return_tensors, **item)
            if padding_strategy != "do_not_pad" or return_attention_mask:
                out = self._pad(out, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask)
            if return_length:
                out["length"] = len(out["input_ids"])
            return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=True)

        if text_pair is not None and (not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text)):
            raise ValueError("If `text` is a batch, `text_pair` must also be a batch of the same length.")
        pairs = text_pair if text_pair is not None else [None] * len(text)
        batch: dict[str, list[Any]] = {}
        for current, current_pair in zip(text, pairs):
            # A tuple or list of two texts in a batch is a pair (for split words: only a tuple).
            if isinstance(current, (list, tuple)) and current and not isinstance(current[0], int) and current_pair is None:
                is_pair = (
                    len(current) == 2
                    and (not is_split_into_words or isinstance(current, tuple))
                    and isinstance(current[0], (str, list, tuple))
                    and isinstance(current[1], (str, list, tuple))
                )
                if is_pair:
                    current, current_pair = current
                elif len(current) == 1:
                    current = current[0]
                elif not is_split_into_words:
                    raise ValueError(f"Expected a pair of sequences, got {len(current)} sequences.")
            first = self._input_ids(current, is_split_into_words, return_offsets_mapping, split_special)
            second = (
                self._input_ids(current_pair, is_split_into_words, return_offsets_mapping, split_special)
                if current_pair is not None
                else None
            )
            out = self._prepare(first, second, keep_overflow=True, **item)
            if return_length:
                out["length"] = len(out["input_ids"])
            for key, value in out.items():
                batch.setdefault(key, []).append(value)
        if return_tensors and return_overflowing_tokens:  # lists of unequal length: no tensor
            batch.pop("overflowing_tokens", None)
            batch.pop("num_truncated_tokens", None)
        padded = self.pad(
            batch,
            padding=padding_strategy,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )
        return BatchEncoding(dict(padded), tensor_type=return_tensors)

    def _input_ids(
        self, text: Any, is_split_into_words: bool, with_offsets: bool, split_special: bool
    ) -> tuple[list[int], list[Offset]]:
        """Ids (and offsets) of a string, of pre-split words (each tokenized alone; offsets within
        its word, as transformers' fast tokenizers give them), of tokens, or ids as given."""
        if isinstance(text, str):
            return self._encode_text(text, with_offsets, split_special)
        if isinstance(text, (list, tuple)) and text:
            if isinstance(text[0], int):
                return list(text), [(0, 0)] * len(text) if with_offsets else []
            if isinstance(text[0], str):
                if is_split_into_words:
                    ids: list[int] = []
                    offsets: list[Offset] = []
                    for word in text:
                        word_ids, word_offsets = self._encode_text(word, with_offsets, split_special)
                        ids += word_ids
                        offsets += word_offsets
                    return ids, offsets
                tokens = self.convert_tokens_to_ids(list(text))
                return tokens, [(0, 0)] * len(tokens) if with_offsets else []
        raise ValueError(f"Input must be a string, list of strings, or list of ints, got: {type(text)}")

    def prepare_for_model(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = False,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        prepend_batch_axis: bool = False,
    ) -> BatchEncoding:
        """Special tokens, truncation and padding for ids already encoded (transformers' method)."""
        padding_strategy, truncation_strategy, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        out = self._prepare(
            (list(ids), []),
            (list(pair_ids), []) if pair_ids is not None else None,
            add_special_tokens=add_special_tokens,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            return_token_type_ids=return_token_type_ids,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            keep_overflow=not return_tensors,
            verbose=verbose,
        )
        if padding_strategy != "do_not_pad" or return_attention_mask:
            out = self._pad(out, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask)
        if return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

    def _prepare(
        self,
        first: tuple[list[int], list[Offset]],
        second: tuple[list[int], list[Offset]] | None,
        *,
        add_special_tokens: bool,
        truncation_strategy: str,
        max_length: int | None,
        stride: int,
        return_token_type_ids: bool,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        keep_overflow: bool,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
    ) -> dict[str, Any]:
        """One sequence (or pair): truncate, add the separators, build the masks (no padding)."""
        ids, offsets = first
        pair_ids, pair_offsets = second if second is not None else (None, [])
        pair = pair_ids is not None
        if return_overflowing_tokens and truncation_strategy == "longest_first" and pair:
            raise ValueError(
                "Not possible to return overflowing tokens for pair of sequences with the "
                "`longest_first`. Please select another truncation strategy than `longest_first`, "
                "for instance `only_second` or `only_first`."
            )
        n_special = self.num_special_tokens_to_add(pair=pair) if add_special_tokens else 0
        total = len(ids) + len(pair_ids or []) + n_special
        overflow: list[int] = []
        if truncation_strategy != "do_not_truncate" and max_length and total > max_length:
            ids, offsets, pair_ids, pair_offsets, overflow = self._truncate(
                ids, offsets, pair_ids, pair_offsets, total - max_length, truncation_strategy, stride
            )
        if add_special_tokens:
            sequence = self.build_inputs_with_special_tokens(ids, pair_ids)
            spans = [(0, 0), *offsets] + ([(0, 0), *pair_offsets] if pair_ids is not None else [])
        else:
            sequence = ids + (pair_ids or [])
            spans = offsets + pair_offsets
        self._warn_if_too_long(len(sequence), max_length, verbose)
        out: dict[str, Any] = {"input_ids": sequence}
        if return_token_type_ids:
            out["token_type_ids"] = (
                self.create_token_type_ids_from_sequences(ids, pair_ids) if add_special_tokens else [0] * len(sequence)
            )
        if return_special_tokens_mask:
            out["special_tokens_mask"] = (
                self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens else [0] * len(sequence)
            )
        if return_overflowing_tokens and keep_overflow and overflow:
            out["overflowing_tokens"] = overflow
            out["num_truncated_tokens"] = total - max_length if max_length else 0
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out

    def _warn_if_too_long(self, length: int, max_length: int | None, verbose: bool) -> None:
        """transformers' warning, once per tokenizer, for an untruncated sequence the model cannot
        take. Logged under transformers' logger name on purpose: code written for transformers
        silences or captures it there (transformers.logging.set_verbosity_error(), assertLogs),
        and logging by name needs no import of transformers."""
        if max_length is None and length > self.model_max_length and verbose and self.model_max_length != 0:
            key = "sequence-length-is-longer-than-the-specified-maximum"
            if not self.deprecation_warnings.get(key, False):
                _HF_LOGGER.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length "
                    f"for this model ({length} > {self.model_max_length}). Running this sequence through the model "
                    "will result in indexing errors"
                )
            self.deprecation_warnings[key] = True

    def truncate_sequences(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: str = "longest_first",
        stride: int = 0,
    ) -> tuple[list[int], list[int] | None, list[int]]:
        """transformers' truncate_sequences: (ids, pair_ids, overflowing tokens)."""
        strategy = str(getattr(truncation_strategy, "value", truncation_strategy))
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        ids, _, pair_ids, _, overflow = self._truncate(ids, [], pair_ids, [], num_tokens_to_remove, strategy, stride)
        return ids, pair_ids, overflow

    def _truncate(
        self,
        ids: list[int],
        offsets: list[Offset],
        pair_ids: list[int] | None,
        pair_offsets: list[Offset],
        remove: int,
        strategy: str,
        stride: int,
    ) -> tuple[list[int], list[Offset], list[int] | None, list[Offset], list[int]]:
        """Remove `remove` tokens by transformers' rules (offsets follow their tokens); the
        overflowing tokens carry `stride` tokens of context back from the kept part."""
        left = self.truncation_side == "left"

        def cut(seq: list[Any], n: int) -> list[Any]:
            if n <= 0:
                return seq
            return seq[n:] if left else seq[:-n]

        overflow: list[int] = []
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            window = min(len(ids), stride + remove)
            overflow = ids[:window] if left else ids[-window:] if window else []
            ids, offsets = cut(ids, remove), cut(offsets, remove)
        elif strategy == "longest_first":
            assert pair_ids is not None
            first_remove = min(abs(len(pair_ids) - len(ids)), remove)
            second_remove = remove - first_remove
            if len(ids) > len(pair_ids):
                from_ids = first_remove + second_remove // 2
                from_pair = second_remove - second_remove // 2
            else:
                from_ids = second_remove // 2
                from_pair = first_remove + second_remove - second_remove // 2
            ids, offsets = cut(ids, from_ids), cut(offsets, from_ids)
            pair_ids, pair_offsets = cut(pair_ids, from_pair), cut(pair_offsets, from_pair)
        elif strategy == "only_second" and pair_ids:
            window = min(len(pair_ids), stride + remove)
            overflow = pair_ids[:window] if left else pair_ids[-window:] if window else []
            pair_ids, pair_offsets = cut(pair_ids, remove), cut(pair_offsets, remove)
        return ids, offsets, pair_ids, pair_offsets, overflow

    def _strategies(
        self,
        padding: Any,
        truncation: Any,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        verbose: bool,
    ) -> tuple[str, str, int | None]:
        """transformers' _get_padding_truncation_strategies: (padding, truncation, max_length)."""
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # max_length alone truncates, as transformers
        if padding is False or padding is None:
            padding_strategy = "do_not_pad"
        elif padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`."
                )
            padding_strategy = "longest"
        elif padding in _PADDING:
            padding_strategy = _PADDING[padding]
        else:
            raise ValueError(f"{padding!r} is not a valid PaddingStrategy, please select one of {list(_PADDING)}")
        if truncation is False or truncation is None:
            truncation_strategy = "do_not_truncate"
        elif truncation is True:
            truncation_strategy = "longest_first"
        elif truncation in _TRUNCATION:
            truncation_strategy = str(truncation)
        else:
            raise ValueError(f"{truncation!r} is not a valid TruncationStrategy, please select one of {list(_TRUNCATION)}")
        if max_length is None:
            if padding_strategy == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding_strategy = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation_strategy != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    truncation_strategy = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if padding_strategy != "do_not_pad" and (self.pad_token is None or (self.pad_token_id or 0) < 0):
            raise ValueError(
                "Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
                "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
                "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`."
            )
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                "Truncation and padding are both activated but "
                f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding_strategy, truncation_strategy, max_length

    # ----------------------------------------------------------------- padding
    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad one encoding or a batch (a list of dicts, or a dict of lists; lists, numpy arrays
        or torch tensors) as transformers' `pad`: what data collators call. Tensors in give tensors
        of the same kind out unless return_tensors says otherwise."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0].keys()}
        else:
            encoded_inputs = dict(encoded_inputs)
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError(
                "You should supply an encoding or a list of encodings to this method "
                f"that includes {main}, but you provided {list(encoded_inputs.keys())}"
            )
        required = encoded_inputs[main]
        if required is None or (isinstance(required, Sized) and len(required) == 0):
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs)
        first = required[0]
        if isinstance(first, (list, tuple)):
            first = next((item[0] for item in required if len(item)), first)
        if not isinstance(first, (int, list, tuple)):
            module = type(first).__module__.split(".")[0]
            if module == "torch":
                return_tensors = return_tensors or "pt"
            elif module == "numpy":
                return_tensors = return_tensors or "np"
            else:
                raise ValueError(
                    f"type of {first} unknown: {type(first)}. Should be one of a python, numpy, or pytorch object."
                )
            encoded_inputs = {key: _to_python(value) for key, value in encoded_inputs.items()}
        padding_strategy, _, max_length = self._strategies(padding, None, max_length, None, verbose)
        required = encoded_inputs[main]
        if required and not isinstance(required[0], (list, tuple)):
            single = self._pad(
                encoded_inputs, max_length, padding_strategy, pad_to_multiple_of, padding_side, return_attention_mask
            )
            return BatchEncoding(single, tensor_type=return_tensors)
        batch_size = len(required)
        if any(len(v) != batch_size for v in encoded_inputs.values()):
            raise ValueError("Some items in the output dictionary have a different batch size than others.")
        if padding_strategy == "longest":
            max_length = max(len(inputs) for inputs in required)
            padding_strategy = "max_length"
        batch: dict[str, list[Any]] = {}
        for i in range(batch_size):
            outputs = self._pad(
                {k: v[i] for k, v in encoded_inputs.items()},
                max_length,
                padding_strategy,
                pad_to_multiple_of,
                padding_side,
                return_attention_mask,
            )
            for key, value in outputs.items():
                batch.setdefault(key, []).append(value)
        return BatchEncoding(batch, tensor_type=return_tensors)

    def _pad(
        self,
        encoded: dict[str, Any],
        max_length: int | None,
        padding_strategy: str,
        pad_to_multiple_of: int | None,
        padding_side: str | None,
        return_attention_mask: bool | None,
    ) -> dict[str, Any]:
        """Pad one sequence's lists in place (transformers' _pad; offsets pad with (0, 0))."""
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        main = self.model_input_names[0]
        required = encoded[main]
        if padding_strategy == "longest":
            max_length = len(required)
        if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if return_attention_mask and "attention_mask" not in encoded:
            encoded["attention_mask"] = [1] * len(required)
        if padding_strategy == "do_not_pad" or max_length is None or len(required) == max_length:
            return encoded
        n = max_length - len(required)
        if n < 0:
            return encoded
        side = padding_side if padding_side is not None else self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"Invalid padding strategy:{side}")
        fills = {
            "attention_mask": 0,
            "token_type_ids": self.pad_token_type_id,
            "special_tokens_mask": 1,
            "offset_mapping": (0, 0),
        }
        for key, fill in fills.items():
            if key in encoded and (key != "attention_mask" or return_attention_mask):
                value = list(encoded[key])
                encoded[key] = value + [fill] * n if side == "right" else [fill] * n + value
        pad_ids = [self.pad_token_id] * n
        encoded[main] = list(required) + pad_ids if side == "right" else pad_ids + list(required)
        return encoded

    # ----------------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Undo BPE (`</w>` ends a word), then Moses-detokenize (which also unescapes XML)."""
        words = "".join(t.replace(" ", "").replace("</w>", " ") for t in tokens).split()
        return self._detok.detokenize(words)

    def clean_up_tokenization(self, text: str) -> str:
        return _clean_up_tokenization(text)

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Text of one sequence of ids (list, array or tensor); a batch gives a list of texts, as
        transformers 5. Other keywords are accepted and ignored, as there."""
        token_ids = _to_python(token_ids)
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            return [self._decode(seq, skip_special_tokens, clean_up_tokenization_spaces) for seq in token_ids]
        return self._decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def _decode(self, token_ids: Any, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        text = self.convert_tokens_to_string(tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return _clean_up_tokenization(text) if clean else text

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        sequences = _to_python(sequences)
        if len(sequences) == 0:
            return []
        result = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)
        return [result] if isinstance(result, str) else result

    # ----------------------------------------------------------------- saving
    # ----------------------------------------------------------------- chat templates
    def get_chat_template(self, chat_template: str | None = None, tools: list[dict[str, Any]] | None = None) -> str:
        """The Jinja source to render: `chat_template` itself, or the template of that name when
        the tokenizer holds several (else its "tool_use" one when tools are given, else "default")."""
        if isinstance(self.chat_template, dict):
            templates = self.chat_template
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in templates:
                    return templates["tool_use"]
                if "default" in templates:
                    return templates["default"]
                raise ValueError(
                    "This model has multiple chat templates with no default specified! Please either pass a chat "
                    "template or the name of the template you wish to use to the `chat_template` argument. "
                    f"Available template names are {sorted(templates)}."
                )
        elif chat_template is None:
            if self.chat_template is None:
                raise ValueError(
                    "Cannot use chat template functions because tokenizer.chat_template is not set and no template "
                    "argument was passed!"
                )
            return self.chat_template
        return chat_template

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        tools: list[dict[str, Any]] | None = None,
        documents: list[dict[str, str]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """transformers' apply_chat_template: render one conversation (or a batch) with the Jinja
        template (its sandbox options: trim_blocks, lstrip_blocks, loop controls, `tojson`,
        `raise_exception`, `strftime_now`; the special tokens and extra keywords are template
        variables), then optionally encode it without adding special tokens. Parameter order is
        transformers', since callers pass the first ones positionally."""
        if return_assistant_tokens_mask:
            # needs the template's {% generation %} spans mapped to token offsets: not provided
            raise ValueError("return_assistant_tokens_mask: the {% generation %} template tag is not supported; BioGPT has no chat format")
        if continue_final_message and add_generation_prompt:
            raise ValueError(
                "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                "when you want the model to continue the final message, and add_generation_prompt when you want "
                "to add a header that will prompt it to start a new assistant message instead."
            )
        source = self.get_chat_template(chat_template, tools)
        is_batched = isinstance(conversation, (list, tuple)) and bool(conversation) and isinstance(
            conversation[0], (list, tuple)
        )
        conversations = list(conversation) if is_batched else [conversation]
        variables = {**self.special_tokens_map, **kwargs}
        template = _compile_chat_template(source)
        rendered = [
            _render_chat(
                template, source, [dict(m) for m in chat], tools, documents,
                add_generation_prompt, continue_final_message, variables,
            )
            for chat in conversations
        ]
        text: str | list[str] = rendered if is_batched else rendered[0]
        if not tokenize:
            return text
        out = self(
            text,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors=return_tensors,
            **(tokenizer_kwargs or {}),
        )
        return out if return_dict else out["input_ids"]

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

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> tuple[str, ...]:
        """Write the files transformers' save_pretrained writes (tokenizer_config.json from
        init_kwargs, added_tokens.json for ids past the vocabulary, vocab.json, merges.txt), plus
        special_tokens_map.json for transformers 4; each atomically. transformers loads them with
        the same ids, and so do we."""
        if push_to_hub:
            raise NotImplementedError("push_to_hub: upload the saved folder with huggingface_hub")
        if legacy_format is False:
            raise ValueError("Only fast tokenizers can be saved in non legacy format.")
        directory = Path(save_directory)
        # the files appear together or not at all (a full disk must not leave a config without
        # its vocabulary); into an existing folder each is moved in, other files kept
        with atomic_directory(directory) as folder:
            written = self._write_files(folder, filename_prefix=filename_prefix)
            # where each file ends up (named chat templates sit in a subfolder)
            final = tuple(str(directory / Path(f).relative_to(folder)) for f in written)
        return final

    def _write_files(self, directory: Path, *, filename_prefix: str | None) -> tuple[str, ...]:
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        config = copy.deepcopy(self.init_kwargs)
        # as transformers: each init keyword that is an attribute is saved with its current value
        for key in list(self.init_kwargs) + ["model_max_length"]:
            if key in ("extra_special_tokens", "additional_special_tokens", "name_or_path"):
                continue
            value = getattr(self, key, _MISSING)
            if value is not _MISSING and not callable(value):
                config[key] = value
        config.update(self.special_tokens_map)
        config.pop("added_tokens", None)
        config.pop("additional_special_tokens", None)
        config.pop("extra_special_tokens", None)
        if self._extra_special_tokens:
            config["extra_special_tokens"] = list(self._extra_special_tokens)
        # ours too: transformers keeps these only when given at construction
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        for key in (*self.vocab_files_names, "name_or_path", "special_tokens_map_file", "tokenizer_file", "device_map"):
            config.pop(key, None)
        config["added_tokens_decoder"] = {str(i): t.__getstate__() for i, t in self.added_tokens_decoder.items()}
        config["tokenizer_class"] = "BioGptTokenizer"
        config = {k: (str(getattr(v, "content", v)) if hasattr(v, "content") else v) for k, v in config.items()}
        # Chat templates go to their own files, as transformers 5 saves them (and reads them first):
        # the default one in chat_template.jinja, each other named one in additional_chat_templates/.
        config.pop("chat_template", None)
        template_files = self._write_chat_templates(directory, prefix)
        config_file = directory / f"{prefix}{TOKENIZER_CONFIG_FILE}"
        write_text_atomic(config_file, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        files = [str(config_file), *template_files]
        path = directory / f"{prefix}{SPECIAL_TOKENS_MAP_FILE}"
        write_text_atomic(path, json.dumps(self.special_tokens_map, indent=2) + "\n")
        files.append(str(path))
        files.extend(self.save_vocabulary(directory, filename_prefix=filename_prefix))
        past_vocabulary = {t: i for t, i in self.added_tokens_encoder.items() if i >= self.vocab_size}
        if past_vocabulary:
            path = directory / f"{prefix}{ADDED_TOKENS_FILE}"
            text = json.dumps(past_vocabulary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            write_text_atomic(path, text)
            files.append(str(path))
        return tuple(files)

    def _write_chat_templates(self, directory: Path, prefix: str) -> list[str]:
        templates = self.chat_template
        if templates is None:
            return []
        if isinstance(templates, str):
            templates = {"default": templates}
        written: list[str] = []
        named = directory / f"{prefix}{CHAT_TEMPLATE_DIR}"
        for name, template in templates.items():
            if name == "default":
                path = directory / f"{prefix}{CHAT_TEMPLATE_FILE}"
            else:
                path = named / f"{name}.jinja"
                # a name is a file name inside the folder, never a path out of it
                if path.resolve().parent != named.resolve():
                    raise ValueError(f"Invalid chat template name: {name!r}")
                named.mkdir(exist_ok=True)
            write_text_atomic(path, template)
            written.append(str(path))
        return written

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
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        subfolder: str = "",
        token: str | bool | None = None,
        force_download: bool = False,
        trust_remote_code: bool = False,
        extra_symbols: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> "BioGptTokenizer":
        """Load from a local directory (Hugging Face or fairseq files), a bundled vocabulary
        (microsoft/biogpt, microsoft/BioGPT-Large: no network), or a hub id.

        revision, cache_dir, local_files_only, subfolder, token, force_download: transformers'
        meanings; trust_remote_code is accepted and allows nothing (no code is fetched).

        extra_symbols: for fairseq vocabularies, the symbols after dict.txt's last entry (a
        loaded model's `tokenizer_source` has them); None counts them from the checkpoint in a
        fairseq directory (none for a bundled vocabulary)."""
        from .hub import resolve_file

        del trust_remote_code
        name = str(pretrained_model_name_or_path)
        path = Path(name).expanduser()
        subfolder = subfolder.strip("/")
        if subfolder and path.is_dir():  # a local folder: the subfolder is simply the tokenizer's folder
            path = path / subfolder
            name, subfolder = str(path), ""
            if not path.is_dir():
                raise ModelPathError(f"{path}: no such subfolder in {path.parent}")
        # as transformers: offline mode (HF_HUB_OFFLINE=1) forces local_files_only, which it then
        # records in init_kwargs
        local_files_only = bool(local_files_only) or _hub_offline()
        if path.is_dir():
            if (path / VOCAB_FILE).is_file() or (path / MERGES_FILE).is_file():
                # the loader's own keys, which transformers' from_pretrained also leaves in
                # init_kwargs (and so in a re-saved tokenizer_config.json)
                kwargs = {"is_local": True, "local_files_only": local_files_only, "tokenizer_file": None, **kwargs}
                return cls._from_hf_files(
                    path / VOCAB_FILE,
                    path / MERGES_FILE,
                    _maybe(path / TOKENIZER_CONFIG_FILE),
                    _maybe(path / ADDED_TOKENS_FILE),
                    name,
                    kwargs,
                    chat_templates=_local_chat_templates(path),
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
        if bundled is not None and revision is None and not subfolder:
            folder, max_len = bundled
            kwargs.setdefault("model_max_length", max_len)
            kwargs.setdefault("name_or_path", name)
            return cls.from_fairseq(
                VOCAB_DIR / folder / FAIRSEQ_DICT_FILE,
                VOCAB_DIR / folder / FAIRSEQ_BPE_FILE,
                extra_symbols=extra_symbols or (),
                **kwargs,
            )
        common = {
            "revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only,
            "subfolder": subfolder, "token": token, "force_download": force_download,
        }
        vocab_file = resolve_file(name, VOCAB_FILE, **common)
        merges_file = resolve_file(name, MERGES_FILE, **common)
        config_file = resolve_file(name, TOKENIZER_CONFIG_FILE, required=False, **common)
        added_file = resolve_file(name, ADDED_TOKENS_FILE, required=False, **common)
        assert vocab_file is not None and merges_file is not None
        chat_file = resolve_file(name, CHAT_TEMPLATE_FILE, required=False, **common)
        chat_templates = {"default": Path(chat_file).read_text(encoding="utf-8")} if chat_file else {}
        kwargs = {"is_local": False, "local_files_only": local_files_only, "tokenizer_file": None, **kwargs}
        return cls._from_hf_files(
            vocab_file, merges_file, config_file, added_file, name, kwargs, chat_templates=chat_templates
        )

    @classmethod
    def _from_hf_files(
        cls,
        vocab_file: Path,
        merges_file: Path,
        config_file: Path | None,
        added_file: Path | None,
        name: str,
        kwargs: dict[str, Any],
        *,
        chat_templates: dict[str, str] | None = None,
    ) -> "BioGptTokenizer":
        """As transformers' loader: every key of tokenizer_config.json is a constructor keyword
        (special tokens by their content), added_tokens_decoder keeps ids and flags, and
        added_tokens.json adds what the config does not list. Chat templates saved as .jinja
        files win over a chat_template in the config (transformers' order)."""
        vocab = read_vocab_json(vocab_file)
        merges = read_merges(merges_file)
        config = read_json_object(config_file) if config_file else {}
        options: dict[str, Any] = {
            k: v for k, v in config.items()
            if k not in ("tokenizer_class", "auto_map", "added_tokens_decoder", "processor_class", "backend",
                         "name_or_path", "special_tokens_map_file", "tokenizer_file")
        }
        if chat_templates:
            options["chat_template"] = (
                chat_templates["default"] if list(chat_templates) == ["default"] else dict(chat_templates)
            )
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = options.get(key)
            if isinstance(value, dict):
                options[key] = value.get("content")
        if not isinstance(options.get("model_max_length"), int):
            options.pop("model_max_length", None)
        if options.get("padding_side") not in ("left", "right"):
            options.pop("padding_side", None)
        if options.get("truncation_side") not in ("left", "right"):
            options.pop("truncation_side", None)
        saved: dict[int, Any] = {}
        for index, entry in (config.get("added_tokens_decoder") or {}).items():
            saved[int(index)] = entry if isinstance(entry, dict) else {"content": str(entry)}
        # As transformers: a special token the config names by content that is also a saved added
        # token is passed as that AddedToken (so init_kwargs hold it with its flags, as theirs do).
        by_content = {str(e["content"]): e for e in saved.values() if "content" in e}
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            value = options.get(key)
            if isinstance(value, str) and value in by_content:
                options[key] = _as_added_token(by_content[value])
        added: dict[str, int] = {}
        if added_file:
            known = {str(e["content"]) for e in saved.values()}
            added = {str(k): int(v) for k, v in read_json_object(added_file).items() if str(k) not in known}
        options["name_or_path"] = name
        options.update(kwargs)
        return cls(vocab, merges, added_tokens=added, added_tokens_decoder=saved, **options)

    def __repr__(self) -> str:
        return (
            f"BioGptTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"added_tokens={len(self) - self.vocab_size}, model_max_length={self.model_max_length})"
        )


# --------------------------------------------------------------------- chat templates
# Appended to the final message when continuing it, so the render can be cut right after it.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _compile_chat_template(source: str) -> Any:
    """A template in transformers' sandbox (immutable, no file system: a template from a model
    folder is untrusted input). jinja2 is imported here so the rest of the tokenizer never pays
    for it."""
    from datetime import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        # Jinja's own tojson escapes HTML characters, which would change the rendered prompt
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def _render_chat(
    template: Any,
    source: str,
    chat: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    documents: list[dict[str, str]] | None,
    add_generation_prompt: bool,
    continue_final_message: bool | str,
    variables: dict[str, Any],
) -> str:
    """One conversation rendered; with continue_final_message, cut right after the final
    message's text (transformers' rule: a tag is appended to it and the render is cut there)."""
    final = ""
    if continue_final_message:
        if not chat:
            raise ValueError("continue_final_message is set but the conversation is empty!")
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = chat[-1].get(field)
        if final is None:
            raise ValueError(f'continue_final_message is set but the final message has no "{field}" to continue!')
        if field not in source:
            raise ValueError(
                f'continue_final_message is set to "{field}" but this is not an accepted field in the chat_template'
            )
        if isinstance(final, (list, tuple)):
            blocks = [dict(b) for b in final]
            for block in reversed(blocks):
                if "text" in block:
                    final = block["text"]
                    block["text"] = block["text"] + _CONTINUE_TAG
                    break
            else:
                raise ValueError(
                    "continue_final_message is set but we could not find any text to continue in the final message!"
                )
            chat[-1][field] = blocks
        else:
            chat[-1][field] = final + _CONTINUE_TAG
    rendered = template.render(
        messages=chat, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **variables
    )
    if continue_final_message:
        if final.strip() not in rendered or _CONTINUE_TAG.strip() not in rendered:
            raise ValueError(
                "continue_final_message is set but the final message does not appear in the chat after "
                "applying the chat template! This can happen if the chat template deletes portions of "
                "the final message. Please verify the chat template and final message in your chat to "
                f"ensure they are compatible.Final message to continue: {final.strip()}\nRendered chat:\n{rendered}"
            )
        at = rendered.rindex(_CONTINUE_TAG.strip())
        # the template kept the tag's trailing space: cut exactly; it trimmed it: drop the spacing
        exact = rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG
        rendered = rendered[:at] if exact else rendered[:at].rstrip()
    return rendered


# --------------------------------------------------------------------- loading helpers
def _hub_offline() -> bool:
    """huggingface_hub's offline switch (HF_HUB_OFFLINE): its constant once the hub library is
    loaded (where the hub code reads it), else the variable as it parses it. Not imported for
    this: loading a bundled vocabulary or a local folder never needs huggingface_hub."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        return bool(constants.HF_HUB_OFFLINE)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _local_chat_templates(directory: Path) -> dict[str, str]:
    """chat_template.jinja as "default" and additional_chat_templates/NAME.jinja as NAME."""
    templates: dict[str, str] = {}
    default = directory / CHAT_TEMPLATE_FILE
    if default.is_file():
        templates["default"] = default.read_text(encoding="utf-8")
    named = directory / CHAT_TEMPLATE_DIR
    if named.is_dir():
        for path in sorted(named.glob("*.jinja")):
            templates[path.stem] = path.read_text(encoding="utf-8")
    return templates


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


def _is_empty(value: Any) -> bool:
    """An empty list, or a list of empty lists (transformers gives these an int64 dtype)."""
    return isinstance(value, (list, tuple)) and all(_is_empty(v) for v in value)


def _to_python(value: Any) -> Any:
    """Tensors/arrays (and lists of them) -> nested Python lists, as transformers' to_py_obj."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return value.tolist()
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (int, str)):
        return [_to_python(v) for v in value]
    return value


def _clean_up_tokenization(text: str) -> str:
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                          (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
