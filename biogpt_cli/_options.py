"""Options shared by several commands, each declared once (flag, default, help), so every
command spells and documents them the same way.

Single options (`FORCE`, `DEVICE`, ...) are Typer defaults a command lists in its signature.
Blocks of options that travel together are `FlagBlock`s: `RUN_FLAGS` (--keep-going, --errors,
--device, --dtype, --resume, --shard of the batch commands) and `TRAIN_FLAGS` (the
hyper-parameters of every `biogpt train` command). A command takes a block as one parameter,
`flags`, and receives the values packed in one object (`RunFlags`, `TrainFlags`); its --help
lists them where that parameter stands.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

OUTPUT = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout.")
FORCE = typer.Option(False, "--force", help="Overwrite an existing --output file.")
INPUT_FORMAT = typer.Option("auto", "--input-format", help="auto, lines, paragraphs, jsonl, pubtator, bioc-json, bioc-xml, pubmed-xml.")
BATCH_SIZE = typer.Option(8, "--batch-size", "-b", min=1, help="Documents decoded at once (greedy: rows refilled as each ends).")
MAX_TOKENS = typer.Option(None, "--max-tokens", min=1, help="Token budget of one batch or refill (padded prompt tokens).")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps."
DTYPE_HELP = "auto, float32, bfloat16 or float16."
DEVICE = typer.Option("auto", "--device", help=DEVICE_HELP)
DTYPE = typer.Option("auto", "--dtype", help=DTYPE_HELP)


# ============================================================================ blocks of flags
@dataclass(frozen=True)
class Flag:
    name: str  # the command function's parameter (click's name for it)
    annotation: Any
    decls: tuple[str, ...]
    help: str | None = None
    default: Any = None
    bounds: dict[str, Any] = field(default_factory=dict)  # min / max


class FlagBlock:
    """Flags declared once and spliced into each command that takes them (see the module
    docstring). Calling the block gives the decorator for one command:

    `documented`: the flags that show their help text in this command (others show only their
    name); `help`: this command's own help text for some; `after`: the command's own options to
    list in among the block's (name → the block flag it follows)."""

    def __init__(self, flags: tuple[Flag, ...], pack: Callable[..., Any]) -> None:
        self.flags = flags
        self.pack = pack
        self.names = frozenset(flag.name for flag in flags)

    def __call__(self, *, documented: Collection[str] | None = None, help: dict[str, str] | None = None,
                 after: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
        documented = self.names if documented is None else documented
        help, after = help or {}, after or {}

        def parameter(flag: Flag) -> inspect.Parameter:
            text = help.get(flag.name, flag.help if flag.name in documented else None)
            option = typer.Option(flag.default, *flag.decls, help=text, **flag.bounds)
            return inspect.Parameter(flag.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=flag.annotation)

        def decorate(fn: Callable) -> Callable:
            hints = typing.get_type_hints(fn)
            own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values()]
            moved = {p.name: p for p in own if p.name in after}
            params: list[inspect.Parameter] = []
            for p in own:
                if p.name == "flags":
                    for flag in self.flags:
                        params.append(parameter(flag))
                        params += [moved[name] for name, anchor in after.items() if anchor == flag.name]
                elif p.name not in moved:
                    params.append(p)

            @functools.wraps(fn)
            def command(**kwargs: Any) -> Any:
                return fn(flags=self.pack(**{name: kwargs.pop(name) for name in self.names}), **kwargs)

            # Typer reads the parameters from the signature and their types from the annotations
            command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
            command.__annotations__ = {p.name: p.annotation for p in params}
            return command

        return decorate


# ============================================================================ batch commands
@dataclass(frozen=True)
class RunFlags:
    keep_going: bool
    errors: Path | None
    device: str
    dtype: str
    resume: bool
    shard: str | None
    keep_journal: bool = False


RUN_FLAGS = FlagBlock((
    Flag("keep_going", bool, ("--keep-going",), "Skip failing documents instead of stopping; count them.", default=False),
    Flag("errors", Optional[Path], ("--errors",), "With --keep-going: write failures here as JSONL."),
    Flag("device", str, ("--device",), DEVICE_HELP, default="auto"),
    Flag("dtype", str, ("--dtype",), DTYPE_HELP, default="auto"),
    Flag("resume", bool, ("--resume",), "Continue an interrupted run with -o FILE (same input and options).", default=False),
    Flag("shard", Optional[str], ("--shard",), "i/N: process only input items k with k % N == i, into FILE.part-i-of-N (then `biogpt merge`)."),
    Flag("keep_journal", bool, ("--keep-journal",), "Keep FILE's run journal (FILE.biogpt-run.*) after a complete run; removed by default.", default=False),
), RunFlags)


# ============================================================================ train
CUDA_GRAPH_HELP = (
    "On a GPU, capture each batch shape's training step as a CUDA graph and replay it (lengths padded "
    "to a multiple of 64; not with --gradient-checkpointing or torchrun). Default: on."
)


class TrainFlags(dict):
    """The TRAIN_FLAGS values one `train` command received (None: not given, so --config and
    the defaults decide: biogpt.training.resolve_options)."""

    @property
    def config_file(self) -> Path | None:
        return self["config_file"]

    def given(self, **extra: Any) -> dict[str, Any]:
        """The values as biogpt.training's keyword options, plus the command's own `extra`."""
        given = {k: v for k, v in self.items() if k not in ("model_name", "resume", "resume_from", "config_file")}
        given["model"] = self["model_name"]
        # --resume-from PATH, else --resume (the latest checkpoint), else not given
        resume_from = self["resume_from"]
        given["resume"] = str(resume_from) if resume_from is not None else ("latest" if self["resume"] else None)
        return {**given, **extra}


TRAIN_FLAGS = FlagBlock((
    Flag("model_name", Optional[str], ("--model", "-m"), "Pretrained model to fine-tune (default microsoft/biogpt)."),
    Flag("from_scratch", Optional[str], ("--from-scratch",), "A preset (tiny, small, biogpt) or config.json; defaults then --lr 1e-3 --epochs 20."),
    Flag("epochs", Optional[int], ("--epochs",), bounds={"min": 1}),
    Flag("max_steps", Optional[int], ("--max-steps",), bounds={"min": 1}),
    Flag("lr", Optional[float], ("--lr",)),
    Flag("batch_size", Optional[int], ("--batch-size", "-b"), bounds={"min": 1}),
    Flag("grad_accum", Optional[int], ("--grad-accum",), bounds={"min": 1}),
    Flag("max_samples", Optional[int], ("--max-samples",), bounds={"min": 1}),
    Flag("seed", Optional[int], ("--seed",)),
    Flag("dropout", Optional[float], ("--dropout",), bounds={"min": 0.0, "max": 1.0}),
    Flag("eval_steps", Optional[int], ("--eval-steps",), bounds={"min": 1}),
    Flag("save_steps", Optional[int], ("--save-steps",), bounds={"min": 1}),
    Flag("save_total_limit", Optional[int], ("--save-total-limit",), bounds={"min": 1}),
    Flag("patience", Optional[int], ("--patience",), bounds={"min": 1}),
    Flag("scheduler", Optional[str], ("--scheduler",), "linear, cosine, inverse_sqrt or constant."),
    Flag("warmup_steps", Optional[int], ("--warmup-steps",), bounds={"min": 0}),
    Flag("bf16", Optional[bool], ("--bf16/--no-bf16",)),
    Flag("gradient_checkpointing", Optional[bool], ("--gradient-checkpointing/--no-gradient-checkpointing",),
         "Recompute activations in backward to save memory."),
    Flag("cuda_graph", Optional[bool], ("--cuda-graph/--no-cuda-graph",), CUDA_GRAPH_HELP),
    Flag("resume", bool, ("--resume",), "Continue from the latest checkpoint in OUTDIR/checkpoints.", default=False),
    Flag("resume_from", Optional[Path], ("--resume-from",), "Continue from this checkpoint directory."),
    Flag("config_file", Optional[Path], ("--config",), "JSON or YAML of these options; flags override it."),
    Flag("device", Optional[str], ("--device",)),
), TrainFlags)
