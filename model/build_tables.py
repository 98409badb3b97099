"""Generate the precomputed word -> BPE table of each bundled vocabulary (model/vocab/*/bpe_words.txt).

    python -m biogpt.model.build_tables           # regenerate the committed files
    python -m biogpt.model.build_tables --check   # exit 1 if a committed file is missing or stale

Why: a fresh process pays BPE's merge loop once per distinct word, and on a few hundred
abstracts that first-time cost is a third of the tokenizer's time. BPE depends on the merges
only, so the result for the vocabulary's whole words (the words PubMed uses most: BioGPT's BPE
was learned there) can be computed once, here, and shipped. The tokenizer uses a table only
when the SHA-256 of its merges equals the one in the table's header (model/vocab_files.py,
`load_bpe_table`); every entry is computed by the tokenizer's own BPE with no table, so it is
exact by construction, and tests recompute the entries to prove it.

File format (UTF-8), one header line then one word per line:
    #bpe-words v1 merges=<count> sha256=<hex of merges_fingerprint>
    word                    the word is a single final piece: bpe(word) == ("word</w>",)
    word<TAB>p1 p2 p3</w>   otherwise: its pieces in vocab.json form, space-separated
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .tokenizer import BioGptTokenizer
from .vocab_files import (
    BPE_TABLE_FILE,
    BUNDLED_VOCABULARIES,
    FAIRSEQ_BPE_FILE,
    FAIRSEQ_DICT_FILE,
    VOCAB_DIR,
    merges_fingerprint,
    read_merges,
)


def table_text(folder: Path) -> str:
    """The table of one fairseq vocabulary folder (dict.txt + bpecodes)."""
    merges = read_merges(folder / FAIRSEQ_BPE_FILE)
    tokenizer = BioGptTokenizer.from_fairseq(folder / FAIRSEQ_DICT_FILE, folder / FAIRSEQ_BPE_FILE)
    tokenizer._bpe_words, tokenizer._bpe_table = frozenset(), {}  # compute every entry afresh
    lines = [f"#bpe-words v1 merges={len(merges)} sha256={merges_fingerprint(merges)}"]
    seen: set[str] = set()
    for token in tokenizer.encoder:
        if not token.endswith("</w>"):
            continue
        word = token[: -len("</w>")]
        # Words with whitespace or controls cannot be Moses tokens, nor lines of this file.
        if not word or word in seen or any(c.isspace() or ord(c) < 0x20 for c in word):
            continue
        seen.add(word)
        pieces = tokenizer.bpe(word)
        lines.append(word if pieces == (token,) else word + "\t" + " ".join(pieces))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the committed tables instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for folder_name, _ in BUNDLED_VOCABULARIES.values():
        folder = VOCAB_DIR / folder_name
        path = folder / BPE_TABLE_FILE
        text = table_text(folder)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {text.count(chr(10)) - 1} words, {len(text.encode()) / 1e6:.2f} MB")
    if stale:
        print("stale or missing (run python -m biogpt.model.build_tables): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
