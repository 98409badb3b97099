"""generate() with transformers 5's defaults and options, against transformers' BioGptForCausalLM
on the same tiny random weights: the same tokens, and the same scores within 1e-4.

Shaped like transformers' tests/generation/test_utils.py: each option is run through both
generate()s with the same arguments, and the outputs (sequences, per-step scores and logits,
beam scores and indices) are compared field by field, with their lengths and shapes."""

from __future__ import annotations

import pytest
import torch

from biogpt.model.generation import GenerationConfig

from tests.helpers import diverse_lm, eos_heavy_lm, make_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TOL = dict(atol=1e-4, rtol=1e-4)


def reference(model, path):
    model.save_pretrained(path)
    return transformers.BioGptForCausalLM.from_pretrained(str(path)).eval()


@pytest.fixture(scope="module")
def diverse(tmp_path_factory):
    ours = diverse_lm()
    return ours, reference(ours, tmp_path_factory.mktemp("diverse"))


@pytest.fixture(scope="module")
def eos_heavy(tmp_path_factory):
    ours = eos_heavy_lm()
    return ours, reference(ours, tmp_path_factory.mktemp("eos-heavy"))


def assert_same_steps(got, want, name):
    """A tuple of per-step (rows, vocab) tensors, equal in length and within TOL (-inf where they are)."""
    got, want = getattr(got, name), getattr(want, name)
    assert got is not None and want is not None, name
    assert len(got) == len(want), (name, len(got), len(want))
    for step, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, (name, step)
        torch.testing.assert_close(a, b, **TOL, msg=f"{name}[{step}]")


# ------------------------------------------------------------------ default lengths
@pytest.mark.parametrize("P", [5, 20, 26])
def test_no_length_given_is_20_new_tokens(diverse, P):
    """transformers 5: 20 new tokens (a prompt of 20 or more tokens still gets them)."""
    ours, ref = diverse
    ids, _ = make_batch(1000, B=2, P=P, padded=False)
    got, want = ours.generate(ids), ref.generate(ids)
    assert got.shape == want.shape == (2, P + 20)
    assert torch.equal(got, want)


def test_default_length_is_capped_at_the_models_positions(diverse):
    ours, ref = diverse
    P = ours.config.max_position_embeddings - 5
    ids, _ = make_batch(1000, B=1, P=P, padded=False)
    got, want = ours.generate(ids), ref.generate(ids)
    assert got.shape == want.shape and P < got.shape[1] <= P + 5
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="max_length"):  # a prompt that fills every position
        ours.generate(torch.cat([ids, ids[:, :5]], 1))


def test_the_models_generation_config_sets_the_length(tmp_path):
    ours = diverse_lm(seed=1)
    ref = reference(ours, tmp_path)
    ours.generation_config = GenerationConfig(max_length=14, num_beams=3, eos_token_id=2, pad_token_id=1)
    ref.generation_config.max_length = 14
    ref.generation_config.num_beams = 3
    ids, _ = make_batch(1000, B=2, P=6, padded=False)
    got, want = ours.generate(ids), ref.generate(ids)
    assert got.shape[1] <= 14 and torch.equal(got, want)
    assert not torch.equal(got, ours.generate(ids, num_beams=1))  # the model's num_beams was used
    # keywords, then the caller's generation_config, win over the model's
    assert torch.equal(ours.generate(ids, num_beams=1), ref.generate(ids, num_beams=1))
    theirs = transformers.GenerationConfig(num_beams=2)
    assert torch.equal(ours.generate(ids, generation_config=theirs), ref.generate(ids, generation_config=theirs))
    # the caller's max_new_tokens wins over the model's max_length, as in transformers
    assert torch.equal(ours.generate(ids, max_new_tokens=11), ref.generate(ids, max_new_tokens=11))
    assert ours.generate(ids, max_new_tokens=11).shape[1] == 17


def test_an_explicit_max_length_not_beyond_the_prompt_is_refused(diverse):
    ours, _ = diverse
    ids, _ = make_batch(1000, B=1, P=8, padded=False)
    with pytest.raises(ValueError, match="max_length"):
        ours.generate(ids, max_length=8)
    assert torch.equal(ours.generate(ids, max_new_tokens=0), ids)  # nothing asked for: the prompt


# ------------------------------------------------------------------ min lengths
@pytest.mark.parametrize(
    "options",
    [
        dict(min_length=14),
        dict(min_new_tokens=9),
        dict(min_length=30, min_new_tokens=4),  # min_new_tokens wins, as in transformers
        dict(num_beams=3, min_length=13),
        dict(num_beams=2, min_new_tokens=5, num_return_sequences=2),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_min_length_options_match_transformers(eos_heavy, options):
    ours, ref = eos_heavy
    ids, mask = make_batch(60, B=4, P=8, padded=True)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=16, **options)
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=16, **options)
    assert torch.equal(got, want)
    min_new = options["min_new_tokens"] if "min_new_tokens" in options else options["min_length"] - 8
    assert (got[:, 8 : 8 + min_new] != 2).all()  # no EOS before the minimum


# ------------------------------------------------------------------ the caller's processors and criteria
def ban_below(n):
    def apply(ids, scores):
        return scores.masked_fill(torch.arange(scores.shape[-1]) < n, float("-inf"))

    return apply


@pytest.mark.parametrize(
    "options",
    [dict(), dict(num_beams=3), dict(do_sample=True, top_k=12, temperature=0.7, num_return_sequences=2)],
    ids=["greedy", "beams", "sample"],
)
def test_logits_processors_run_after_ours_and_before_the_warpers(diverse, options):
    ours, ref = diverse
    ids, mask = make_batch(1000, B=3, P=6, padded=True)
    procs = [ban_below(500), transformers.RepetitionPenaltyLogitsProcessor(1.4)]
    torch.manual_seed(7)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=10, no_repeat_ngram_size=2, logits_processor=procs, **options)
    torch.manual_seed(7)
    want = ref.generate(
        ids, attention_mask=mask, max_new_tokens=10, no_repeat_ngram_size=2,
        logits_processor=transformers.LogitsProcessorList(procs), **options,
    )  # fmt: skip
    assert torch.equal(got, want)
    assert (got[:, 6:][got[:, 6:] != 1] >= 500).all()


@pytest.mark.parametrize("options", [dict(), dict(num_beams=3, num_return_sequences=2)], ids=["greedy", "beams"])
def test_stopping_criteria_per_row_and_whole_batch(diverse, options):
    ours, ref = diverse
    ids, mask = make_batch(1000, B=4, P=8, padded=True)  # (row 3: 2 tokens after 6 of padding)

    def row_hits_multiple_of_5(ids, scores):  # a bool per row: rows stop at different steps
        return ids[:, -1] % 5 == 0

    def length_reached(ids, scores):  # one bool for the batch
        return ids.shape[1] >= 8 + 9

    for criteria in ([row_hits_multiple_of_5], [length_reached], [row_hits_multiple_of_5, length_reached]):
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=20, stopping_criteria=criteria, **options)
        want = ref.generate(
            ids, attention_mask=mask, max_new_tokens=20,
            stopping_criteria=transformers.StoppingCriteriaList(criteria), **options,
        )  # fmt: skip
        assert got.shape == want.shape and torch.equal(got, want), criteria
        if length_reached in criteria:
            assert got.shape[1] <= 17


def test_stopping_criteria_see_the_scores_kept_so_far(diverse):
    ours, _ = diverse
    ids, _ = make_batch(1000, B=2, P=5, padded=False)
    seen = []

    def record(ids, scores):
        seen.append(None if scores is None else len(scores))
        return False

    ours.generate(ids, max_new_tokens=4, stopping_criteria=[record])
    ours.generate(ids, max_new_tokens=4, stopping_criteria=[record], return_dict_in_generate=True, output_scores=True)
    assert seen == [None] * 4 + [1, 2, 3, 4]


# ------------------------------------------------------------------ inputs_embeds
@pytest.mark.parametrize(
    "options", [dict(), dict(num_beams=3), dict(min_length=3, num_beams=2)], ids=["greedy", "beams", "min-length"]
)
@pytest.mark.parametrize("padded", [False, True])
def test_inputs_embeds_return_only_the_new_tokens(diverse, options, padded):
    ours, ref = diverse
    ids, mask = make_batch(1000, B=3, P=7, padded=padded)
    with torch.no_grad():
        embeds = ours.get_input_embeddings()(ids)
    got = ours.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=9, **options)
    want = ref.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=9, **options)
    assert got.shape == want.shape and got.shape[1] <= 9
    assert torch.equal(got, want)
    # the same continuation as from the ids themselves
    from_ids = ours.generate(ids, attention_mask=mask, max_new_tokens=9, **options)
    if "min_length" not in options:  # min_length counts the prompt only when the ids are given
        assert torch.equal(from_ids[:, 7:], got)


def test_inputs_embeds_lengths_follow_transformers(diverse):
    ours, ref = diverse
    ids, _ = make_batch(1000, B=2, P=7, padded=False)
    with torch.no_grad():
        embeds = ours.get_input_embeddings()(ids)
    for options in (dict(), dict(max_length=15), dict(max_length=15, min_length=12)):
        got, want = ours.generate(inputs_embeds=embeds, **options), ref.generate(inputs_embeds=embeds, **options)
        assert got.shape == want.shape and torch.equal(got, want), options
    both = ours.generate(ids, inputs_embeds=embeds, max_new_tokens=5)  # the ids start the sequences then
    assert torch.equal(both, ref.generate(ids, inputs_embeds=embeds, max_new_tokens=5))


# ------------------------------------------------------------------ return_dict_in_generate
@pytest.mark.parametrize("options", [dict(), dict(do_sample=True, top_k=30, top_p=0.8, num_return_sequences=2)], ids=["greedy", "sample"])
def test_scores_and_logits_of_greedy_and_sampling(eos_heavy, options):
    ours, ref = eos_heavy
    ids, mask = make_batch(60, B=4, P=8, padded=True)
    kw = dict(attention_mask=mask, max_new_tokens=12, repetition_penalty=1.2, return_dict_in_generate=True, output_scores=True, output_logits=True, **options)
    torch.manual_seed(3)
    got = ours.generate(ids, **kw)
    torch.manual_seed(3)
    want = ref.generate(ids, **kw)
    assert torch.equal(got.sequences, want.sequences)
    new = got.sequences.shape[1] - ids.shape[1]
    assert len(got.scores) == len(got.logits) == new
    assert got.scores[0].shape == (ids.shape[0] * options.get("num_return_sequences", 1), 60)
    assert_same_steps(got, want, "scores")
    assert_same_steps(got, want, "logits")
    assert got.attentions is None and got.hidden_states is None


def test_only_what_is_asked_for_is_kept(diverse):
    ours, ref = diverse
    ids, _ = make_batch(1000, B=2, P=5, padded=False)
    out = ours.generate(ids, max_new_tokens=4, return_dict_in_generate=True)
    want = ref.generate(ids, max_new_tokens=4, return_dict_in_generate=True)
    assert out.scores is None and out.logits is None and want.scores is None and want.logits is None
    assert torch.equal(out.sequences, want.sequences)
    logits_only = ours.generate(ids, max_new_tokens=4, return_dict_in_generate=True, output_logits=True)
    assert logits_only.scores is None and len(logits_only.logits) == 4
    # without return_dict_in_generate the options change nothing: the token ids, as transformers
    assert torch.equal(ours.generate(ids, max_new_tokens=4, output_scores=True), out.sequences)
    # read as transformers' ModelOutput: by key, by position over what is set, as a tuple
    assert out["sequences"] is out.sequences and out[0] is out.sequences
    # what is set, as transformers: the sequences and the cache (every fed position)
    assert list(want.keys()) == ["sequences", "cache"]
    assert "scores" not in out and list(out.keys()) == ["sequences", "cache"]
    assert out.to_tuple() == (out.sequences, out.cache) and out.cache.get_seq_length() == want.cache.get_seq_length()
    with pytest.raises(KeyError):
        out["scores"]


@pytest.mark.parametrize(
    "options",
    [
        dict(num_beams=2),
        dict(num_beams=3, length_penalty=0.6),
        dict(num_beams=4, length_penalty=1.5, num_return_sequences=3),
        dict(num_beams=4, early_stopping=True, num_return_sequences=2),
        dict(num_beams=3, early_stopping="never", length_penalty=2.0),
        dict(num_beams=2, no_repeat_ngram_size=2, min_new_tokens=3),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_beam_search_scores_and_indices(eos_heavy, options):
    ours, ref = eos_heavy
    ids, mask = make_batch(60, B=3, P=6, padded=True)
    kw = dict(attention_mask=mask, max_new_tokens=10, return_dict_in_generate=True, output_scores=True, output_logits=True, **options)
    got, want = ours.generate(ids, **kw), ref.generate(ids, **kw)
    assert type(got).__name__ == type(want).__name__ == "GenerateBeamDecoderOnlyOutput"
    assert torch.equal(got.sequences, want.sequences)
    R = options.get("num_return_sequences", 1)
    assert got.sequences_scores.shape == (3 * R,)
    torch.testing.assert_close(got.sequences_scores, want.sequences_scores, **TOL)
    assert got.beam_indices.dtype == want.beam_indices.dtype
    assert torch.equal(got.beam_indices, want.beam_indices)
    assert got.beam_indices.shape == (3 * R, got.sequences.shape[1] - 6)
    assert got.scores[0].shape == (3 * options["num_beams"], 60)
    assert_same_steps(got, want, "scores")
    assert_same_steps(got, want, "logits")
    # transformers' own check: the scores of the chosen tokens add up to the sequence scores
    transition = ref.compute_transition_scores(got.sequences, got.scores, got.beam_indices, normalize_logits=False)
    lengths = (got.beam_indices >= 0).sum(1)
    penalty = options.get("length_penalty", 1.0)
    torch.testing.assert_close(transition.sum(1) / lengths**penalty, got.sequences_scores, **TOL)


def test_beam_search_without_output_scores_has_indices_but_no_sequence_scores(diverse):
    ours, ref = diverse
    ids, _ = make_batch(1000, B=2, P=5, padded=False)
    got = ours.generate(ids, max_new_tokens=5, num_beams=2, return_dict_in_generate=True)
    want = ref.generate(ids, max_new_tokens=5, num_beams=2, return_dict_in_generate=True)
    assert got.sequences_scores is None and want.sequences_scores is None
    assert torch.equal(got.beam_indices, want.beam_indices) and torch.equal(got.sequences, want.sequences)


@pytest.mark.parametrize("options", [dict(), dict(num_beams=2)], ids=["greedy", "beams"])
def test_kept_steps_are_copies_of_the_static_steps_buffers(diverse, options):
    """static-step (the CUDA-graph step's code, run eagerly on the CPU) writes its logits into one
    buffer each step: what is kept must be a copy, the same as from the eager steps."""
    ours, _ = diverse
    ids, mask = make_batch(1000, B=2, P=6, padded=True)
    kw = dict(attention_mask=mask, max_new_tokens=6, return_dict_in_generate=True, output_scores=True, output_logits=True)
    static = ours.generate(ids, cuda_graph=True, **kw, **options)
    eager = ours.generate(ids, cuda_graph=False, **kw, **options)
    assert torch.equal(static.sequences, eager.sequences)
    assert_same_steps(static, eager, "logits")
    assert_same_steps(static, eager, "scores")
    assert not torch.equal(static.logits[0], static.logits[-1])


# ------------------------------------------------------------------ attentions, hidden states, cache
def attended(x, mask, *, step, prompt):
    """The entries of one step's (B, H, Q, K) attentions or (B, Q, C) hidden states that belong
    to attended tokens: what a padded position holds is not specified (its own query row is
    masked out), and the two models' positions for it differ on purpose."""
    rows = []
    for b in range(x.shape[0]):
        keys = torch.cat([mask[b].bool(), torch.ones(x.shape[-1] - mask.shape[1] if x.dim() == 4 else 0, dtype=torch.bool)])
        queries = mask[b].bool() if step == 0 else torch.ones(1, dtype=torch.bool)
        rows.append(x[b][:, queries][:, :, keys] if x.dim() == 4 else x[b][queries])
    return rows


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "options",
    [
        dict(do_sample=False),
        dict(do_sample=True, top_k=20, num_return_sequences=2),
        dict(num_beams=3),  # per step the running beams', whose histories the search reorders
        dict(num_beams=2, do_sample=True, num_return_sequences=2),
    ],
)
def test_attentions_and_hidden_states_per_step_match_transformers(tmp_path, attention, options):
    ours = diverse_lm()
    ref = reference(ours, tmp_path)
    ours.set_attn_implementation(attention)
    ref.set_attn_implementation(attention)
    ids, mask = make_batch(1000, B=3, P=6)
    kw = dict(max_new_tokens=4, return_dict_in_generate=True, output_attentions=True, output_hidden_states=True, **options)
    torch.manual_seed(0)
    want = ref.generate(ids, attention_mask=mask, **kw)
    torch.manual_seed(0)
    got = ours.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(got.sequences, want.sequences)
    rows = options.get("num_beams", options.get("num_return_sequences", 1))
    mask = mask.repeat_interleave(rows, 0)
    for name in ("attentions", "hidden_states"):
        g, w = getattr(got, name), getattr(want, name)
        assert len(g) == len(w) == 4, name  # one entry per generated token
        for step, (layers_g, layers_w) in enumerate(zip(g, w)):
            # SDPA gives no weights: each step's tuple is empty, as in transformers 5
            assert len(layers_g) == len(layers_w) == (0 if name == "attentions" and attention == "sdpa" else len(layers_w))
            for a, b in zip(layers_g, layers_w):
                assert a.shape == b.shape, (name, step)
                for x, y in zip(attended(a, mask, step=step, prompt=6), attended(b, mask, step=step, prompt=6)):
                    torch.testing.assert_close(x, y, **TOL, msg=f"{name}[{step}]")


def test_attentions_and_hidden_states_only_in_the_dict_output(diverse):
    ours, _ = diverse
    ids, _ = make_batch(1000, B=2, P=5, padded=False)
    plain = ours.generate(ids, max_new_tokens=3, output_attentions=True, output_hidden_states=True)
    assert torch.equal(plain, ours.generate(ids, max_new_tokens=3))
    out = ours.generate(ids, max_new_tokens=3, return_dict_in_generate=True, output_hidden_states=True)
    assert out.attentions is None and len(out.hidden_states) == 3
    assert [h.shape for h in out.hidden_states[0]] == [(2, 5, ours.config.hidden_size)] * (ours.config.num_hidden_layers + 1)
    assert [h.shape for h in out.hidden_states[2]] == [(2, 1, ours.config.hidden_size)] * (ours.config.num_hidden_layers + 1)


@pytest.mark.parametrize("options", [dict(), dict(num_beams=2)])
def test_the_cache_is_returned_as_transformers_returns_it(diverse, options):
    ours, ref = diverse
    ids, mask = make_batch(1000, B=3, P=6)
    kw = dict(max_new_tokens=4, return_dict_in_generate=True, **options)
    got, want = ours.generate(ids, attention_mask=mask, **kw), ref.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(got.sequences, want.sequences)
    # every fed position: all but the last token (greedy), the running beams' (beam search)
    assert got.cache.get_seq_length() == want.cache.get_seq_length()
    keys = mask.repeat_interleave(options.get("num_beams", 1), 0).bool()
    for layer, (k, v) in enumerate(got.cache.to_legacy()):
        for row in range(k.shape[0]):
            real = torch.cat([keys[row], torch.ones(k.shape[2] - keys.shape[1], dtype=torch.bool)])
            torch.testing.assert_close(k[row][:, real], want.cache.layers[layer].keys[row][:, real], **TOL)
            torch.testing.assert_close(v[row][:, real], want.cache.layers[layer].values[row][:, real], **TOL)


def test_generate_returns_ordinary_tensors_that_continue_and_train(tmp_path):
    """transformers' generate runs under no_grad: its results feed a forward with gradients (RL
    fine-tuning scores its own samples) and continue from the returned cache."""
    ours = diverse_lm()
    ids, _ = make_batch(1000, B=2, P=5, padded=False)
    out = ours.generate(ids, max_new_tokens=4, return_dict_in_generate=True)
    assert not out.sequences.is_inference() and not out.cache.kv.is_inference()
    ours.train()
    loss = ours(out.sequences, labels=out.sequences).loss  # raised for inference tensors before
    loss.backward()
    ours.eval()
    with torch.no_grad():
        full = ours(out.sequences).logits[:, -1]
        step = ours(out.sequences[:, -1:], cache=out.cache).logits[:, -1]
    torch.testing.assert_close(step, full, **TOL)
