"""Search over the KV cache: greedy and sampling (one loop) and beam search, each step passing
the logits through the logits processors. Semantics are transformers' (same processor order,
same beam bookkeeping), so the same weights give the same tokens.

Speed comes from the structure: the cache and the output buffer are allocated once per call, a
beam-search prompt is prefilled once per input (not once per beam), and the greedy/sampling
loop checks for end-of-sequence on the host only every EOS_CHECK_EVERY steps; hooks
(prefix_allowed_tokens_fn, a streamer) take the path that synchronises each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..fast.network import FastNetwork, network_for
from ..kv_cache import KVCache
from .config import EOS_CHECK_EVERY, GenerationConfig
from .output import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .processors import LogitsProcessor, apply_processors
from .static import static_decoder
from .steps import DecodeState, decode_step, prefill
from .streamer import Streamer

# transformers' StoppingCriteria: (ids (N, L), the scores kept so far or None) -> done, a bool
# or a bool tensor per row; the search ORs them with its own (max length, EOS), as transformers'
# StoppingCriteriaList does.
StoppingCriterion = Callable[[torch.Tensor, Any], "bool | torch.Tensor"]


def stopped(criteria: Sequence[StoppingCriterion], ids: torch.Tensor, scores: Any) -> torch.Tensor:
    """The rows (N,) that any of `criteria` stops."""
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for criterion in criteria:
        done = done | torch.as_tensor(criterion(ids, scores), dtype=torch.bool, device=ids.device)
    return done


def start(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: int,
    total_length: int,
    cfg: GenerationConfig,
    *,
    inputs_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, DecodeState]:
    """Prefill each distinct prompt once, then copy its cache to `rows // batch` rows (beams or
    several samples per prompt). Returns the expanded last logits and the decode state. The
    prompt in the cache is `inputs_embeds` when given (S positions), else `input_ids`."""
    prompt = input_ids if inputs_embeds is None else inputs_embeds
    B, S = prompt.shape[:2]
    device = prompt.device
    expand = rows // B
    padded = attention_mask is not None and not bool(attention_mask.all())
    mask = attention_mask if padded else None
    graph = static_decoder(model, device, rows, total_length, cfg)
    if graph is not None:
        net: FastNetwork = graph.net
        cache = graph.cache_view(rows)
    else:
        net = network_for(model, fuse_qkv=device.type == "cuda")
        cache = KVCache.for_model(model.config, rows, total_length, dtype=model.dtype, device=device)
    if expand == 1:
        captured = graph is not None and graph.capture and mask is None and inputs_embeds is None
        logits = graph.prefill(input_ids) if captured else None
        if logits is None:
            logits = prefill(net, input_ids, mask, cache, inputs_embeds=inputs_embeds)
    else:
        tmp = KVCache.for_model(model.config, B, S, dtype=model.dtype, device=device)
        logits = prefill(net, input_ids, mask, tmp, inputs_embeds=inputs_embeds).repeat_interleave(expand, 0)
        cache.kv[:, :, :, :, :S] = tmp.kv.repeat_interleave(expand, 2)
        cache.length = S
        cache.shared_prefix = S  # every row of an input starts from the same prompt
    if mask is not None:
        key_mask = torch.ones(rows, total_length, dtype=torch.bool, device=device)
        key_mask[:, :S] = mask.bool().repeat_interleave(expand, 0)
        next_position = mask.sum(1).repeat_interleave(expand, 0)
    else:
        key_mask = None
        next_position = torch.full((rows,), S, dtype=torch.long, device=device)
    if graph is not None:
        return logits, graph.start(rows, S, cache, next_position, key_mask)
    return logits, DecodeState(cache, next_position.long(), key_mask, net)


def greedy_or_sample(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    procs: list[LogitsProcessor],
    eos: torch.Tensor,
    pad: int,
    max_new: int,
    streamer: Streamer | None,
    sync_each_step: bool,
    *,
    inputs_embeds: torch.Tensor | None = None,
    criteria: Sequence[StoppingCriterion] = (),
    pad_finished: bool = True,
) -> GenerateDecoderOnlyOutput:
    """`input_ids` (B, P) start the returned sequences (P = 0 when generating from
    `inputs_embeds` alone, as transformers returns only the new tokens then). A row stopped
    by EOS or `criteria` continues with `pad` when `pad_finished` (transformers pads only when
    an EOS criterion is present: without one a stopped row keeps its chosen tokens)."""
    B, P = input_ids.shape
    S = P if inputs_embeds is None else inputs_embeds.shape[1]
    n = cfg.num_return_sequences if cfg.do_sample else 1
    rows = B * n
    keep_scores = cfg.return_dict_in_generate and cfg.output_scores
    keep_logits = cfg.return_dict_in_generate and cfg.output_logits
    kept_scores: list[torch.Tensor] = []
    kept_logits: list[torch.Tensor] = []

    state: DecodeState | None = None

    def result(sequences: torch.Tensor) -> GenerateDecoderOnlyOutput:
        steps = sequences.shape[1] - P  # steps run past the last row's end are not reported
        # transformers returns the cache with the dict output: every fed position (all but the
        # last token), as a copy the caller owns
        cache = state.cache.detached(S + steps - 1) if cfg.return_dict_in_generate and state is not None else None
        return GenerateDecoderOnlyOutput(
            sequences=sequences,
            scores=tuple(kept_scores[:steps]) if keep_scores else None,
            logits=tuple(kept_logits[:steps]) if keep_logits else None,
            cache=cache,
        )

    device = input_ids.device
    out = torch.full((rows, P + max_new), pad, dtype=torch.long, device=device)
    out[:, :P] = input_ids.repeat_interleave(n, 0)
    if max_new == 0:
        return result(out)
    logits, state = start(model, input_ids, attention_mask, rows, S + max_new, cfg, inputs_embeds=inputs_embeds)
    # processors with host-side state (the caller's hooks among them: sync_each_step), and
    # anything kept per step, stay on the per-step path below
    in_graph = (
        state.graph is not None
        and not cfg.do_sample
        and not sync_each_step
        and cfg.repetition_penalty == 1.0
        and not cfg.no_repeat_ngram_size
        and cfg.bad_words_ids is None
        and not criteria
        and not (keep_scores or keep_logits)
        and inputs_embeds is None
        and pad_finished
    )
    if in_graph:
        min_new = (cfg.min_new_tokens or 0) if eos.numel() else 0
        return result(state.graph.greedy(logits, out[:, :P], max_new=max_new, eos=eos, pad=pad, min_new=min_new))
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    last_step = torch.full((rows,), max_new - 1, dtype=torch.long, device=device)
    if streamer is not None:
        streamer.put(out[:, :P].cpu())
    for step in range(max_new):
        cur = P + step
        raw = logits.float()
        scores = apply_processors(procs, out[:, :cur], raw)
        # copies: a captured step's logits buffer is overwritten, and a processor may write in place
        if keep_logits:
            kept_logits.append(raw.clone())
        if keep_scores:
            kept_scores.append(scores.clone())
        if cfg.do_sample:
            tokens = torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)
        else:
            tokens = scores.argmax(-1)
        if pad_finished:
            tokens = torch.where(unfinished, tokens, pad)
        out[:, cur] = tokens
        if streamer is not None:
            streamer.put(tokens.cpu())
        if eos.numel() or criteria:
            done = torch.isin(tokens, eos) if eos.numel() else torch.zeros_like(unfinished)
            if criteria:
                done = done | stopped(criteria, out[:, : cur + 1], tuple(kept_scores) if keep_scores else None)
            just_done = unfinished & done
            last_step = torch.where(just_done, step, last_step)
            unfinished &= ~just_done
        if step == max_new - 1:
            break
        if (sync_each_step or (step + 1) % EOS_CHECK_EVERY == 0) and not bool(unfinished.any()):
            break
        logits = decode_step(tokens, state)
    if streamer is not None:
        streamer.end()
    # transformers stops at the step where the last row finished: trim to that length.
    length = P + int(torch.where(unfinished, max_new - 1, last_step).max()) + 1
    return result(out[:, :length])


def beam_search(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    procs: list[LogitsProcessor],
    eos: torch.Tensor,
    pad: int,
    max_new: int,
    *,
    inputs_embeds: torch.Tensor | None = None,
    criteria: Sequence[StoppingCriterion] = (),
    histories: list[torch.Tensor] | None = None,
) -> GenerateBeamDecoderOnlyOutput:
    """transformers' vectorised beam search: keep 2·K candidates per step (so K can continue even
    when some end), move finished ones into a K-best list scored with the length penalty, stop
    by its early-stopping rule. `input_ids` (B, P) start the sequences (P = 0 with
    `inputs_embeds` alone). `histories`, when given, receives each decode step's running beams
    (B·K, length), for the per-step attentions and hidden states (step_outputs.py)."""
    # One function of ~120 lines on purpose: it mirrors transformers' `_beam_search` step by step
    # (candidates, running beams, finished list, stopping rule), which is how parity is checked.
    B, P = input_ids.shape
    S = P if inputs_embeds is None else inputs_embeds.shape[1]
    K = cfg.num_beams
    R = cfg.num_return_sequences
    W = max(2, 1 + eos.numel()) * K  # candidates kept per step
    max_length = P + max_new
    device = input_ids.device
    lp, early = cfg.length_penalty, cfg.early_stopping
    keep = cfg.return_dict_in_generate
    keep_scores, keep_logits = keep and cfg.output_scores, keep and cfg.output_logits
    kept_scores: list[torch.Tensor] = []
    kept_logits: list[torch.Tensor] = []
    if max_new == 0:
        return GenerateBeamDecoderOnlyOutput(sequences=input_ids.repeat_interleave(R, 0))
    # transformers' fill of unwritten positions (its `pad_token_id or eos_token_id[0]`, -1 without EOS)
    fill = (pad or int(eos[0])) if eos.numel() else -1

    running = torch.full((B, K, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :P] = input_ids[:, None, :]
    running_scores = torch.zeros(B, K, device=device)
    running_scores[:, 1:] = -1e9  # all beams start identical: only the first may expand
    finished = running.clone()
    finished_scores = torch.full((B, K), -1e9, device=device)
    finished_len = torch.zeros(B, K, dtype=torch.long, device=device)
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    may_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    first_k = torch.arange(W, device=device) < K  # (W,)
    batch_offset = torch.arange(B, device=device)[:, None] * K  # (B, 1)
    # beam_indices (only when returned): per beam and new token, the flat row it came from
    running_from = torch.full((B, K, max_new), -1, dtype=torch.int32, device=device) if keep else None
    finished_from = running_from.clone() if running_from is not None else None

    logits, state = start(model, input_ids, attention_mask, B * K, S + max_new, cfg, inputs_embeds=inputs_embeds)
    cur = P
    while True:
        raw = logits.float()
        log_probs = F.log_softmax(raw, dim=-1)
        log_probs = apply_processors(procs, running.view(B * K, -1)[:, :cur], log_probs)
        if keep_logits:
            kept_logits.append(raw.clone())  # copies: a captured step's buffer is overwritten
        if keep_scores:
            kept_scores.append(log_probs.clone())
        V = log_probs.shape[-1]
        flat = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
        if cfg.do_sample:
            cand = torch.multinomial(flat.softmax(-1), num_samples=W)
            cand_scores = flat.gather(1, cand)
            cand_scores, order = cand_scores.sort(-1, descending=True)
            cand = cand.gather(1, order)
        else:
            cand_scores, cand = torch.topk(flat, W)  # (B, W)
        src = cand // V  # beam each candidate extends
        tok = cand % V
        cand_seqs = running.gather(1, src[:, :, None].expand(-1, -1, max_length)).clone()  # (B, W, L)
        cand_seqs[:, :, cur] = tok
        ends = (torch.isin(tok, eos) if eos.numel() else torch.zeros_like(tok, dtype=torch.bool)) | (cur + 1 >= max_length)
        if criteria:
            seen = tuple(kept_scores) if keep_scores else None
            ends = ends | stopped(criteria, cand_seqs.view(B * W, -1)[:, : cur + 1], seen).view(B, W)
        if running_from is not None:
            cand_from = running_from.gather(1, src[:, :, None].expand(-1, -1, max_new)).clone()  # (B, W, max_new)
            cand_from[:, :, cur - P] = (src + batch_offset).int()

        # the K best candidates that did not end keep running
        alive_scores = cand_scores + ends.float() * -1e9
        keep_idx = torch.topk(alive_scores, K).indices  # (B, K)
        running = cand_seqs.gather(1, keep_idx[:, :, None].expand(-1, -1, max_length))
        running_scores = alive_scores.gather(1, keep_idx)
        reorder = (src.gather(1, keep_idx) + batch_offset).flatten()

        # candidates that ended among the top K join the finished list if good enough
        just_ended = ends & first_k[None, :]
        scored = cand_scores / ((cur + 1 - P) ** lp)
        full = is_finished.all(-1, keepdim=True) & (early is True)
        scored = scored + full.float() * -1e9 + (~may_improve).float() * -1e9 + (~just_ended).float() * -1e9
        merged_scores = torch.cat([finished_scores, scored], 1)  # (B, K + W)
        best = torch.topk(merged_scores, K).indices
        finished = torch.cat([finished, cand_seqs], 1).gather(1, best[:, :, None].expand(-1, -1, max_length))
        finished_scores = merged_scores.gather(1, best)
        cand_len = torch.full((B, W), cur + 1 - P, dtype=torch.long, device=device)
        finished_len = torch.cat([finished_len, cand_len], 1).gather(1, best)
        is_finished = torch.cat([is_finished, just_ended], 1).gather(1, best)
        if running_from is not None and finished_from is not None:
            running_from = cand_from.gather(1, keep_idx[:, :, None].expand(-1, -1, max_new))
            finished_from = torch.cat([finished_from, cand_from], 1).gather(1, best[:, :, None].expand(-1, -1, max_new))

        state.reorder(reorder)
        cur += 1

        # can the best running beam still beat the worst finished one?
        horizon = (max_length - P) if (early == "never" and lp > 0.0) else (cur - P)
        best_running = running_scores[:, :1] / (horizon**lp)
        worst_finished = torch.where(is_finished, finished_scores.min(1, keepdim=True)[0], -1.0e9)
        may_improve = may_improve & (best_running > worst_finished).any(-1, keepdim=True)
        # one host synchronisation per step for the three stopping conditions
        improvable, all_finished, all_ended = torch.stack([may_improve.any(), is_finished.all(), ends.all()]).tolist()
        open_beams = not (all_finished and early is True)
        if not (improvable and open_beams and not all_ended):
            break
        if histories is not None:
            histories.append(running.view(B * K, -1)[:, :cur].clone())
        logits = decode_step(running[:, :, cur - 1].flatten(), state)

    out = finished[:, :R].flatten(0, 1)
    generated = int(finished_len[:, :R].max())
    return GenerateBeamDecoderOnlyOutput(
        sequences=out[:, : P + generated],
        sequences_scores=finished_scores[:, :R].flatten() if keep_scores else None,
        scores=tuple(kept_scores) if keep_scores else None,
        logits=tuple(kept_logits) if keep_logits else None,
        beam_indices=finished_from[:, :R].flatten(0, 1)[:, :generated] if finished_from is not None else None,
        # as transformers: the running beams' cache (rows batch × num_beams), every fed position
        cache=state.cache.detached(S + cur - P - 1) if keep else None,
    )
