"""Running a causal LM on a task: the official input layout, generation, scoring of candidates.

Input at inference (docs/TASK_FORMATS.md): `</s>` + BPE(Moses(source)) + the learned prompt tokens
when the model has them; a source longer than the recipe's max_source_positions is cut with its
last kept token replaced by `...`. The prompt recipe (task, setting, prompt tokens) is read from
the model's config (`biogpt_task`, written when we save a fine-tuned model) or, for official
fairseq checkpoints, from the tokenizer's `learned1...learnedN` symbols — never guessed twice.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from biogpt.model.fast.network import lm_logits, network_for

from .base import Task

logger = logging.getLogger(__name__)

LEARNED = re.compile(r"^learned(\d+)$")
RECIPE_KEY = "biogpt_task"


@dataclass
class PromptRecipe:
    """How a model expects its task input; saved with fine-tuned models under `biogpt_task`."""

    task: str | None = None
    setting: str | None = None
    prompt_tokens: list[str] = field(default_factory=list)
    max_source_positions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


def read_recipe(model: Any, tokenizer: Any, task: Task) -> PromptRecipe:
    stored = (getattr(model.config, "extra", {}) or {}).get(RECIPE_KEY) or {}
    recipe = PromptRecipe(
        task=stored.get("task"),
        setting=stored.get("setting"),
        prompt_tokens=list(stored.get("prompt_tokens") or []),
        max_source_positions=stored.get("max_source_positions"),
    )
    if recipe.task is not None and recipe.task != task.name:
        logger.warning("%s was fine-tuned for %s, not %s", getattr(model, "name_or_path", "the model"), recipe.task, task.name)
    if not stored:
        learned = sorted(
            (int(m.group(1)), t) for t in tokenizer.added_tokens_encoder if (m := LEARNED.match(t))
        )
        recipe.prompt_tokens = [t for _, t in learned]
    if recipe.max_source_positions is None and task.recipe is not None:
        recipe.max_source_positions = task.recipe.max_source_positions
    return recipe


def save_recipe(model: Any, recipe: PromptRecipe) -> None:
    model.config.extra[RECIPE_KEY] = recipe.to_dict()


@dataclass
class SourceCuts:
    """Sources cut to fit, counted so that a run over many documents warns once with the count
    (`report`) instead of once per document."""

    count: int = 0
    longest: int = 0  # the longest source cut, in tokens
    cap: int = 0  # what it was cut to

    def add(self, length: int, cap: int) -> None:
        self.count += 1
        if length > self.longest:
            self.longest, self.cap = length, cap

    def report(self, what: str) -> None:
        if self.count:
            logger.warning(
                "%d %s cut to fit the model (longest: %d tokens cut to %d; last kept token replaced by '...')",
                self.count, what, self.longest, self.cap,
            )


def source_cap(recipe: PromptRecipe, *, limit: int | None = None) -> int | None:
    """The most source tokens `encode_source` keeps: the recipe's max_source_positions, and
    within `limit` positions room for `</s>` and the prompt tokens too (None: no cap). Long-document
    planning (biogpt_cli.longdocs) sizes its units by it, so a unit that fits is never cut."""
    cap = recipe.max_source_positions
    if limit is not None:
        room = limit - 1 - len(recipe.prompt_tokens)
        cap = room if cap is None else min(cap, room)
    return cap


def encode_source(
    tokenizer: Any, source: str, recipe: PromptRecipe, *, limit: int | None = None, cuts: SourceCuts | None = None
) -> list[int]:
    """`</s>` + source tokens (cut with `...` when too long) + prompt tokens. A cut is warned
    about here, or counted in `cuts` for the caller's one summary line."""
    ids = list(tokenizer(source, add_special_tokens=False)["input_ids"])
    prompt = [tokenizer.convert_tokens_to_ids(t) for t in recipe.prompt_tokens]
    cap = source_cap(recipe, limit=limit)
    if cap is not None and len(ids) > cap:
        if cuts is not None:
            cuts.add(len(ids), cap)
        else:
            logger.warning("source of %d tokens cut to %d (last kept token replaced by '...')", len(ids), cap)
        ids = ids[:cap]
        ids[-1] = tokenizer.convert_tokens_to_ids("...</w>")
    return [tokenizer.eos_token_id, *ids, *prompt]


def _pad_left(rows: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


@dataclass
class Generated:
    output: str  # decoded text, learned prompt tokens removed
    tokens: list[int]  # generated ids up to and including EOS
    input_ids: list[int]


def generate_outputs(
    model: Any,
    tokenizer: Any,
    inputs: Sequence[Sequence[int]],
    *,
    task: Task,
    decoding: dict[str, Any],
    constrained: bool = False,
) -> list[Generated]:
    """One batch: left-padded generation with the task's defaults (overridden by `decoding`)."""
    ids, mask = _pad_left(inputs, tokenizer.pad_token_id, model.device)
    options = {"num_beams": task.decoding.num_beams, "max_new_tokens": task.decoding.max_new_tokens, **decoding}
    options["max_new_tokens"] = min(options["max_new_tokens"], model.config.max_position_embeddings - ids.shape[1])
    if constrained:
        if task.clause_template is None:
            raise ValueError(f"{task.name} has no clause grammar to constrain")
        from .constraints import CopyConstraint

        # what may be copied: the document's own tokens, not </s>, the prompt or a cut's "..."
        special = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.added_tokens_encoder}
        cut = tokenizer.convert_tokens_to_ids("...</w>")
        sources = []
        for r in inputs:
            body = [t for t in r if t not in special]
            if body and body[-1] == cut:  # a cut source: drop "..." and the word it cut into
                body.pop()
                while body and not tokenizer.convert_ids_to_tokens(body[-1]).endswith("</w>"):
                    body.pop()
            sources.append(body)
        constraint = CopyConstraint(
            tokenizer, task.clause_template, separator=task.clause_separator, sources=sources,
            prompt_length=ids.shape[1], vocab_size=model.config.vocab_size,
        )
        options["prefix_allowed_tokens_fn"] = constraint.prefix_allowed_tokens_fn()
    out = model.generate(ids, attention_mask=mask, **options)
    rows = max(1, out.shape[0] // ids.shape[0])
    learned = _learned_ids(tokenizer)
    results = []
    for i in range(ids.shape[0]):
        row = out[i * rows, ids.shape[1] :].tolist()
        eos = tokenizer.eos_token_id
        tokens = row[: row.index(eos) + 1] if eos in row else [t for t in row if t != tokenizer.pad_token_id]
        results.append(_generated(tokenizer, tokens, inputs[i], learned))
    return results


def _learned_ids(tokenizer: Any) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.added_tokens_encoder if LEARNED.match(t)}


def _generated(tokenizer: Any, tokens: list[int], input_ids: Sequence[int], learned: set[int]) -> Generated:
    text = tokenizer.decode([t for t in tokens if t not in learned], skip_special_tokens=True)
    return Generated(text, tokens, list(input_ids))


def continuous_applies(task: Task, decoding: dict[str, Any], *, constrained: bool) -> bool:
    """Whether `generate_continuously` gives these options' outputs: greedy, unconstrained."""
    return not constrained and decoding.get("num_beams", task.decoding.num_beams) == 1


def generate_continuously(
    model: Any,
    tokenizer: Any,
    inputs: Sequence[Sequence[int]],
    *,
    task: Task,
    decoding: dict[str, Any],
    rows: int,
    max_prefill_tokens: int | None = None,
) -> Iterator[tuple[int, Generated]]:
    """(position in `inputs`, Generated) for every input as it finishes: greedy decoding with
    continuous batching (model/continuous.py: a finished row takes the next input at once),
    the outputs `generate_outputs` gives each input."""
    from biogpt.model.continuous import generate_continuous

    max_new = decoding.get("max_new_tokens", task.decoding.max_new_tokens)
    learned = _learned_ids(tokenizer)
    for done in generate_continuous(
        model,
        inputs,
        rows=rows,
        max_new_tokens=max_new,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_prefill_tokens=max_prefill_tokens,
    ):
        yield done.index, _generated(tokenizer, done.tokens, inputs[done.index], learned)


@torch.inference_mode()
def token_logprobs(model: Any, sequences: Sequence[Sequence[int]], pad: int) -> list[list[float]]:
    """log p(token t | tokens < t) for every token after the first, teacher-forced, one batch."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in sequences], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device)
    logits = lm_logits(model, ids, mask).float()
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None]).squeeze(-1)
    return [logp[i, : len(s) - 1].tolist() for i, s in enumerate(sequences)]


@torch.inference_mode()
def candidate_probabilities_batch(
    model: Any, tokenizer: Any, inputs: Sequence[Sequence[int]], candidates: Sequence[str]
) -> list[list[float]]:
    """P(candidate | input) normalised over the candidates, for each input: each full target
    (with its final end-of-sequence) scored teacher-forced, all inputs in one forward pass, a
    row per input.

    A row holds its prompt once, followed by every candidate, each candidate attending to the
    prompt and to itself only (a tree-shaped attention mask; positions continue the prompt in
    each candidate): the prompt is computed once, not once per candidate (a 300-token prompt
    with three 2-token answers is a third of the work of three rows), and the rows stay short
    enough to batch. Each candidate token therefore sees exactly the context it would see
    appended alone to the prompt. The vocabulary projection runs only at the candidates'
    positions (a batch of long prompts would otherwise hold rows x length x vocabulary logits)."""
    targets = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id] for text in candidates]
    answers = sum(len(t) for t in targets)
    width = max(len(s) for s in inputs) + answers
    device = model.device
    # built on the host and moved once: a row's pieces are many small writes
    ids = torch.full((len(inputs), width), tokenizer.pad_token_id, dtype=torch.long)
    positions = torch.full((len(inputs), width), -1, dtype=torch.long)  # padding: -1, as masks.positions_from_mask
    # every query may see itself, so padding rows never softmax over nothing (build_attention_mask)
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(inputs), 1, 1)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    at = []  # per row and candidate: the columns whose hidden states predict its tokens
    for row, source in enumerate(inputs):
        n = len(source)
        ids[row, :n] = torch.tensor(list(source))
        positions[row, :n] = torch.arange(n)
        allowed[row, :n, :n] = causal[:n, :n]
        start = n
        for target in targets:
            end = start + len(target)
            ids[row, start:end] = torch.tensor(target)
            positions[row, start:end] = torch.arange(n, n + len(target))
            allowed[row, start:end, :n] = True
            allowed[row, start:end, start:end] = causal[: len(target), : len(target)]
            at.append([n - 1, *range(start, end - 1)])  # the prompt's last token predicts the first
            start = end
    net = network_for(model)
    hidden = net.run(ids.to(device), positions.to(device), attn_mask=allowed[:, None].to(device), is_causal=False, cache=None)
    longest = max(len(t) for t in targets)
    rows = torch.arange(len(inputs), device=device).repeat_interleave(len(targets))
    columns = torch.tensor([c + [c[-1]] * (longest - len(c)) for c in at], device=device)
    picked = hidden[rows[:, None], columns]  # (inputs x candidates, longest, C)
    logp = F.log_softmax(net.logits(picked).float(), dim=-1)
    wanted = torch.tensor([t + [0] * (longest - len(t)) for _ in inputs for t in targets], device=device)
    valid = torch.tensor([[1.0] * len(t) + [0.0] * (longest - len(t)) for _ in inputs for t in targets], device=device)
    totals = (logp.gather(2, wanted[:, :, None]).squeeze(-1) * valid).sum(1).view(len(inputs), len(targets))
    return torch.softmax(totals, 1).tolist()


def clause_probabilities(model: Any, tokenizer: Any, generated: Generated, separators: Sequence[str] = (";",)) -> list[tuple[str, float]]:
    """(clause text, probability) for each separator-delimited piece of a generated output:
    the product of the model's probabilities of the piece's tokens where they were generated."""
    seq = generated.input_ids + generated.tokens
    if len(generated.tokens) == 0:
        return []
    logp = token_logprobs(model, [seq], tokenizer.pad_token_id)[0][len(generated.input_ids) - 1 :]
    sep_ids = {tokenizer.convert_tokens_to_ids(s + "</w>") for s in separators}
    stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(".</w>")}
    learned = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.added_tokens_encoder if LEARNED.match(t)}
    pieces: list[tuple[str, float]] = []
    current: list[int] = []
    total = 0.0
    for tok, lp in zip(generated.tokens, logp):
        if tok in learned:
            continue
        if tok in sep_ids or tok in stop:
            if current:
                pieces.append((tokenizer.decode(current, skip_special_tokens=True), math.exp(total)))
            current, total = [], 0.0
            continue
        current.append(tok)
        total += lp
    if current:
        pieces.append((tokenizer.decode(current, skip_special_tokens=True), math.exp(total)))
    return pieces


def find_spans(text: str, name: str) -> list[list[int]]:
    """Every occurrence of `name` in `text`, as [start, end] character spans: case-insensitive
    and blind to whitespace, since generated names are Moses-detokenized ("4 mg / kg" names the
    text's "4 mg/kg")."""
    key = "".join(name.split()).lower()
    if not key:
        return []
    positions = [i for i, ch in enumerate(text) if not ch.isspace()]
    squeezed = "".join(text[i] for i in positions).lower()
    spans = []
    start = squeezed.find(key)
    while start != -1:
        spans.append([positions[start], positions[start + len(key) - 1] + 1])
        start = squeezed.find(key, start + 1)
    return spans


def ground(text: str, name: str) -> tuple[str, list[list[int]]]:
    """(surface, spans): where a generated name occurs in the document. Exact (case-insensitive)
    occurrences first; otherwise whitespace-blind ones, reported with the document's own surface
    form, so that text[start:end] always equals the returned surface (case aside)."""
    exact = [[m.start(), m.end()] for m in re.finditer(re.escape(name), text, flags=re.IGNORECASE)] if name else []
    if exact:
        return name, exact
    spans = find_spans(text, name)
    if not spans:
        return name, []
    surface = text[spans[0][0] : spans[0][1]]
    return surface, [s for s in spans if text[s[0] : s[1]].lower() == surface.lower()]
