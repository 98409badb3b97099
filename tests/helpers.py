"""Tiny random models and checkpoint directories in every format the product loads."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import torch

from biogpt.model import BioGptConfig, BioGptForCausalLM

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("BIOGPT_SHARED", ROOT.parent / "shared")) / "data"


VOCAB = ROOT / "model" / "vocab" / "biogpt"


def write_hf_vocab(dict_file: Path, bpecodes: Path, out: Path) -> Path:
    """vocab.json + merges.txt of the hub tokenizer, built by the rule of ../shared/data/README.md
    (independently of the product's own conversion)."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for line in dict_file.read_text(encoding="utf-8").splitlines():
        word = line.rsplit(" ", 1)[0]
        vocab[word[:-2] if word.endswith("@@") else word + "</w>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_bytes(bpecodes.read_bytes())
    return out


def tiny_config(**overrides) -> BioGptConfig:
    base = dict(vocab_size=1000, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BioGptConfig.from_preset("tiny", **{**base, **overrides})


def tiny_lm(seed: int = 0, **overrides) -> BioGptForCausalLM:
    torch.manual_seed(seed)
    model = BioGptForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so parity tests see them
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def diverse_lm(seed: int = 0) -> BioGptForCausalLM:
    """A tiny model whose greedy continuations vary from token to token (a tied tiny model tends
    to repeat one token), so generation tests notice wrong positions or cache entries."""
    return tiny_lm(seed, vocab_size=1000, initializer_range=0.2, tie_word_embeddings=False)


def to_fairseq_state(model: BioGptForCausalLM) -> "OrderedDict[str, torch.Tensor]":
    state = OrderedDict()
    for key, value in model.state_dict().items():
        if key == "output_projection.weight":
            state["decoder.output_projection.weight"] = value.clone()
        else:
            state["decoder." + key.removeprefix("biogpt.")] = value.clone()
    state["decoder.version"] = torch.tensor([3.0])
    return state


def write_fairseq_dir(
    directory: Path,
    model: BioGptForCausalLM,
    *,
    dict_entries: int,
    cfg_style: str = "omegaconf",
    optimizer_state_mb: int = 0,
    checkpoint_name: str = "checkpoint.pt",
) -> Path:
    """A directory as fairseq leaves it: checkpoint.pt (cfg as an omegaconf object or argparse
    args), dict.txt holding the first `dict_entries` words of BioGPT's dictionary, bpecodes."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = (VOCAB / "dict.txt").read_text(encoding="utf-8").splitlines()[:dict_entries]
    (directory / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(VOCAB / "bpecodes", directory / "bpecodes")
    c = model.config
    hp = {
        "_name": "transformer_lm_prompt_biogpt",
        "decoder_layers": c.num_hidden_layers,
        "decoder_attention_heads": c.num_attention_heads,
        "decoder_embed_dim": c.hidden_size,
        "decoder_ffn_embed_dim": c.intermediate_size,
        "decoder_normalize_before": True,
        "activation_fn": c.hidden_act,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "max_target_positions": c.max_position_embeddings,
        "share_decoder_input_output_embed": True,
        "no_scale_embedding": False,
    }
    ckpt: dict = {"model": to_fairseq_state(model), "optimizer_history": [{"criterion_name": "CrossEntropyCriterion"}], "extra_state": {"epoch": 3}}
    if cfg_style == "omegaconf":
        from omegaconf import OmegaConf

        ckpt["cfg"] = OmegaConf.create({"model": hp, "task": {"_name": "language_modeling_prompt"}, "common": {"fp16": True}})
        ckpt["args"] = None
    else:
        ckpt["args"] = argparse.Namespace(**hp, task="language_modeling_prompt")
    if optimizer_state_mb:
        n = optimizer_state_mb * 1024 * 1024 // 4
        ckpt["last_optimizer_state"] = {"state": {0: {"exp_avg": torch.zeros(n), "exp_avg_sq": torch.zeros(n)}}}
    torch.save(ckpt, directory / checkpoint_name)
    return directory


def eos_heavy_lm(seed: int = 0, boost: float = 0.3, vocab_size: int = 60) -> BioGptForCausalLM:
    """A tiny model that ends sequences often (EOS logit raised through the final LayerNorm's
    bias), so finishing logic of every search strategy is exercised."""
    model = tiny_lm(seed, vocab_size=vocab_size)
    with torch.no_grad():
        e = model.biogpt.embed_tokens.weight[2]
        model.biogpt.layer_norm.bias.add_(boost * e / e.norm() ** 2)
    return model


def emulate_cuda_graph_training(monkeypatch) -> list:
    """Run `model.training.TrainStep(graph=True)` on the CPU: streams become no-ops, a "capture"
    runs the work and then restores the weights, gradients, optimizer state and RNG it found (a
    real capture runs nothing), and `replay()` runs it again (the captured bodies set or
    accumulate gradients themselves); `adamw(capturable=True)` gives a tensor learning rate but is not capturable
    (that needs CUDA). So the graph mode's bookkeeping (shapes, warm-up, inputs copied into the
    captured buffers, replays) is exercised exactly; the graphs themselves are tested on a GPU.
    Returns the list of TrainSteps built while the patch is active."""
    import contextlib
    import copy

    import biogpt.model.training as training

    steps: list = []
    capturing: list = []
    real_init, real_capture = training.TrainStep.__init__, training.TrainStep._capture

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        steps.append(self)

    def capture_of(self, *args, **kw):
        capturing.append(self)
        try:
            return real_capture(self, *args, **kw)
        finally:
            capturing.pop()

    class Stream:
        def wait_stream(self, other) -> None:
            pass

    class Graph:
        def __init__(self, fn, out, step) -> None:
            self.fn, self.out, self.step = fn, out, step

        def replay(self) -> None:
            out = self.fn()
            if self.out is not None:
                self.out.copy_(out)

        def pool(self) -> str:
            return "pool"

    def capture(fn, *, pool):
        step = capturing[-1]
        params = list(step.model.parameters())
        saved = [(p.detach().clone(), None if p.grad is None else p.grad.clone()) for p in params]
        optim = copy.deepcopy(step.optimizer.state_dict())
        rng = torch.get_rng_state()
        out = fn()
        out = None if out is None else out.clone()
        with torch.no_grad():
            for p, (value, grad) in zip(params, saved):
                p.copy_(value)
                if grad is None or p.grad is None:
                    p.grad = grad
                else:
                    p.grad.copy_(grad)  # accumulated gradients keep their identity
        step.optimizer.load_state_dict(optim)
        torch.set_rng_state(rng)
        return Graph(fn, out, step), out

    real_adamw = training.adamw

    def adamw(model, **kw):  # capturable AdamW needs CUDA: keep its tensor learning rate only
        opt = real_adamw(model, **{**kw, "capturable": False})
        if kw.get("capturable"):
            for group in opt.param_groups:
                group["lr"] = torch.tensor(group["lr"])
        return opt

    monkeypatch.setattr(training, "adamw", adamw)
    monkeypatch.setattr(training.TrainStep, "__init__", init)
    monkeypatch.setattr(training.TrainStep, "_capture", capture_of)
    monkeypatch.setattr(training, "capture_graph", capture)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    return steps


def emulate_decoder_capture(monkeypatch) -> None:
    """`StaticDecoder._capture` on the CPU: a "capture" runs the body once (as the warm-up runs
    do) and a replay runs it again with the fused step the capture saw (a real graph keeps
    its kernels) and writes the result into the output buffer the capture produced (a real graph
    writes its outputs in place). The fused kernels' tuning (timed with graphs) is skipped."""
    from biogpt.model.generation import StaticDecoder

    class Graph:
        def __init__(self, dec, body) -> None:
            self.dec, self.body, self.fused = dec, body, dec.fused
            before = dec.logits
            body()
            self.out = dec.logits if dec.logits is not before else None  # a step graph's output buffer

        def replay(self) -> None:
            saved, self.dec.fused = self.dec.fused, self.fused
            self.body()
            self.dec.fused = saved
            if self.out is not None:
                self.out.copy_(self.dec.logits)
                self.dec.logits = self.out

    monkeypatch.setattr(StaticDecoder, "_capture", lambda self, body: Graph(self, body) if self.capture else None)
    try:  # launch configurations are timed with real graphs: left to the GPU tests
        from biogpt.model.fast import tuning

        monkeypatch.setattr(tuning, "tune", lambda *args, **kw: 0.0)
    except ImportError:
        pass


def emulate_graph_trainer(monkeypatch) -> list:
    """The trainer's CUDA-graph branch on the CPU: no blocker, graphs emulated as above. Returns
    the TrainSteps built."""
    from biogpt.training import Trainer

    monkeypatch.setattr(Trainer, "_graph_blocker", lambda self: None)
    return emulate_cuda_graph_training(monkeypatch)


def graph_and_eager_steps(*, device: str = "cpu", warmup: int = 1, **options):
    """(model, twin, graph-mode TrainStep on model, eager TrainStep on twin): a tiny LM and its
    copy, for tests that compare the two step by step. `options` go to both steps."""
    import copy

    from biogpt.model.training import TrainStep, adamw

    torch.manual_seed(0)
    model = tiny_lm().to(device).train()
    twin = copy.deepcopy(model)
    graph = TrainStep(model, adamw(model, lr=1e-3, capturable=True), bf16=False, graph=True, warmup=warmup, **options)
    eager = TrainStep(twin, adamw(twin, lr=1e-3), bf16=False, **options)
    return model, twin, graph, eager


# ------------------------------------------------------------------ the installed command
BIN = Path(sys.executable).parent / "biogpt"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def command(*args: str) -> list[str]:
    """The installed `biogpt` script with `args` (`python -m biogpt` where no script is installed)."""
    return [*([str(BIN)] if BIN.exists() else [sys.executable, "-m", "biogpt"]), *args]


def biogpt(*args: str, input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """One offline run of the command line in a subprocess, its output captured as text."""
    return subprocess.run(command(*args), input=input, capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd)


def records(path: Path) -> list[dict]:
    """A JSONL output's records without the fields that legitimately differ between runs."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r.pop("tokens_per_second", None)
        r.pop("provenance", None)
        out.append(r)
    return out


# ------------------------------------------------------------------ generation cases
# Options every search must equal transformers on (tests/model/test_generation.py, test_cuda.py).
CASES = [
    dict(),
    dict(num_beams=1),
    dict(num_beams=4),
    dict(num_beams=5),
    dict(num_beams=5, length_penalty=0.5),
    dict(num_beams=5, length_penalty=2.0),
    dict(num_beams=4, early_stopping=True),
    dict(num_beams=4, early_stopping="never", length_penalty=1.5),
    dict(num_beams=5, num_return_sequences=3),
    dict(num_beams=4, num_return_sequences=4, length_penalty=0.3, early_stopping=True),
    dict(no_repeat_ngram_size=2),
    dict(num_beams=4, no_repeat_ngram_size=3),
    dict(min_new_tokens=8),
    dict(num_beams=4, min_new_tokens=6),
    dict(repetition_penalty=1.3),
    dict(num_beams=3, repetition_penalty=1.2, no_repeat_ngram_size=2),
    dict(bad_words_ids=[[5], [7, 8]]),
]


def make_batch(vocab: int, B: int = 4, P: int = 8, seed: int = 0, padded: bool = True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (B, P), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    if padded:  # left padding of different amounts
        for b in range(B):
            mask[b, : b * 2] = 0
        ids = ids.masked_fill(mask == 0, 1)
    return ids, mask


# ------------------------------------------------------------------ continuous batching
EOS = [78, 654]
LENGTHS = [5, 9, 3, 12, 7, 7, 4, 15, 6, 10, 8]


def prompts_of(vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[2, *torch.randint(4, vocab, (n - 1,), generator=g).tolist()] for n in lengths]


def alone(model, prompt: list[int], max_new: int, **options) -> list[int]:
    """What generate gives one prompt: the new tokens up to and including the first end token."""
    options.setdefault("eos_token_id", EOS)
    out = model.generate(torch.tensor([prompt], device=model.device), max_new_tokens=max_new, cuda_graph=False, **options)
    row = out[0, len(prompt) :].tolist()
    ends = [j for j, t in enumerate(row) if t in options["eos_token_id"]]
    return row[: ends[0] + 1] if ends else row


def finished(completions) -> dict[int, list[int]]:
    out = {}
    for c in completions:
        assert c.index not in out and c.seconds >= 0
        out[c.index] = c.tokens
    return out


# ------------------------------------------------------------------ training
def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded input ids, labels (-100 on padding) and attention mask of token rows."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), 1)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def invoke(app, *args, code: int = 0) -> str:
    """Run a Typer app's command in-process; an unexpected exception propagates (its traceback,
    not a bare exit code), a different exit code fails with the output. Returns stdout."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return result.stdout
