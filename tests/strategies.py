"""Hypothesis strategies shared by the Moses and tokenizer-speed tests: strings dense in the Moses
rules' edges (short chunks, quotes, dots, commas, dashes, prefixes, control characters)."""

from __future__ import annotations

from hypothesis import strategies as st

# Pieces chosen to sit on every rule's edge; drawn as whole pieces and as single characters.
PIECES = [
    "Mr.", "e.g.", "i.e.", "No.", "no.", "Fig.", "fig.", "vs.", "Dr.", "St.", "Art.", "pp.", "U.S.",
    "et al.", "3.5", "1,000", "5,300", "0.05", "A.", "a.", "x.", "..", "...", "....", ".'", "'.",
    "DOTMULTI", "DOTDOTMULTI", "MULTI", "DOT", "'s", "'S", "n't", "N'T", "'ll", "'re", "'ve", "'d",
    "''", "``", "`", '"', "@-@", "-", "--", "—", "–", "&", "&amp;", "<", ">", "|", "[", "]", "(", ")",
    "{", "}", "/", "\\", ":", ";", "!", "?", "%", "$", "#", "@", "+", "=", "*", "^", "~", "±", "µ",
    "α", "β", "Δ", "ñ", "é", "Ω", "²", "½", "٣", "é", "ǅ", "ß", "İ", "ﬁ", "K", "€", "©", "°",
    "·", "…", "‘", "’", "“", "”", "«", "»", "¿", "¡", "\u00a0", "\u2009", "\u3000", "\t", "\n", "\r",
    "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\x00", "\x01", "\x08", "\x0e", "\x1b", "\x7f", " ", "  ",
    "H2", "IL-6", "COVID-19", "p<0.05", "n=12", "(n=3)", "[1]", "5'", "'5", "a'b", "1's", "O'Neil",
    "rock'n'roll", "cannot", "http://x.org/a_b", "x@y.com", "#tag", "THISISPROTECTED000",
]
CHARS = st.sampled_from(sorted({c for p in PIECES for c in p} | set("aAzZ09,.'-")))
WORD = st.text(alphabet=st.sampled_from("abcXYZ019"), min_size=1, max_size=4)
TEXT = st.lists(
    st.one_of(st.sampled_from(PIECES), CHARS, WORD, st.sampled_from([" ", " ", "  ", "\n"])),
    max_size=40,
).map("".join)
