"""Options shared by several commands, each declared once (flag, default, help), so every
command spells and documents them the same way.

Single options (`FORCE`, `DEVICE`, ...) are Typer defaults a command lists in its signature.
Blocks of options that travel together are `FlagBlock`s: `RUN_FLAGS` (--keep-going, --errors,
--device, --dtype, --resume, --shard of the batch commands), `TRAIN_FLAGS` (the
hyper-parameters of every `biogpt train` command) and `GENERATIVE_FLAGS` (the task-data and
dev-scoring options of `train re`, `train qa` and `train classify --generative`). A command
takes a block as one parameter (`flags`, or the block's own name) and receives the values
packed in one object (`RunFlags`, `TrainFlags`, `GenerativeFlags`); its --help lists them where
that parameter stands. `RootGroup` is the `biogpt` group itself (fast --help).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

# Conventions every command keeps (README, "Options"; tests/cli/test_conventions.py): inputs
# are positional (FILE... or -); a short flag means one thing everywhere (-m model, -o output,
# -f format, -b batch size, -t task; -v and -q are biogpt's own, before the command); every
# option has help text, and shows its default or says in its help what leaving it out means.
INPUTS = typer.Argument(None, show_default=False, help="Files or folders of documents, plain or gzip; - for stdin (default: stdin when piped).")
OUTPUT = typer.Option(None, "--output", "-o", help="Write to FILE (default: stdout).")
FORCE = typer.Option(False, "--force", help="Overwrite an existing --output file.")
INPUT_FORMAT = typer.Option("auto", "--input-format", help="auto (from each file's name and first bytes), lines, paragraphs, jsonl, pubtator, bioc-json, bioc-xml, pubmed-xml or jats (PMC .nxml, .tar.gz bundles).")
INCLUDE = typer.Option(None, "--include", help="JATS: also read tables, references and/or formulas, comma-separated (default: none of them).")
SECTIONS = typer.Option(None, "--sections", help="JATS: keep only these section types, comma-separated: introduction, methods, results, discussion, conclusion, other (default: all; title and abstract always stay).")
KEEP_GOING_HELP = "Skip failing documents instead of stopping; count them."
KEEP_GOING = typer.Option(False, "--keep-going", help=KEEP_GOING_HELP)
TEXT_KEY = typer.Option("text", "--text-key", help="JSONL: the field holding the text (if absent: title + abstract).")
ID_KEY = typer.Option(None, "--id-key", help="JSONL: the field holding the id (default: id, else pmid, else FILE:LINE).")
LIMIT = typer.Option(None, "--limit", min=1, help="Only the first N documents (default: all).")
BATCH_SIZE = typer.Option(8, "--batch-size", "-b", min=1, help="Model inputs run together: documents or their passages, of many documents (greedy decoding: rows refilled as each ends).")
MAX_TOKENS = typer.Option(None, "--max-tokens", min=1, help="Token budget of one batch or refill, in padded input tokens (default: no budget, -b decides).")
NUM_BEAMS = typer.Option(None, "--num-beams", min=1, help="Beam width (default: the task's, 1 as in the official scripts).")
MAX_NEW_TOKENS = typer.Option(None, "--max-new-tokens", min=1, help="Generation budget per document (default: the task's).")
LONG_DOCUMENTS = typer.Option(
    "auto", "--long-documents",
    help="How a document longer than the model's positions is read: truncate (one input, cut with '...' by the official "
         "recipe), passages (title + abstract as one input, then each passage; a passage too long split at sentences with "
         "a small overlap), windows (overlapping token windows over the whole text), or auto: truncate when the document "
         "is title/abstract or plain text and fits, passages otherwise.")
MIN_SUPPORT = typer.Option(1, "--min-support", min=1, help="Keep a relation only when at least N units (passages, pieces or windows) of its document found it.")
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

    `help`: this command's own help text for some flags (every flag has help text either way);
    `after`: the command's own options to list in among the block's (name → the block flag it
    follows)."""

    def __init__(self, flags: tuple[Flag, ...], pack: Callable[..., Any], *, param: str = "flags") -> None:
        self.flags = flags
        self.pack = pack
        self.param = param  # the command's parameter the block stands for (one name per block, so blocks stack)
        self.names = frozenset(flag.name for flag in flags)

    def __call__(self, *, help: dict[str, str] | None = None, after: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
        help, after = help or {}, after or {}

        def parameter(flag: Flag) -> inspect.Parameter:
            text = help.get(flag.name, flag.help)
            option = typer.Option(flag.default, *flag.decls, help=text, **flag.bounds)
            return inspect.Parameter(flag.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=flag.annotation)

        def decorate(fn: Callable) -> Callable:
            hints = typing.get_type_hints(fn)
            own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values()]
            moved = {p.name: p for p in own if p.name in after}
            params: list[inspect.Parameter] = []
            for p in own:
                if p.name == self.param:
                    for flag in self.flags:
                        params.append(parameter(flag))
                        params += [moved[name] for name, anchor in after.items() if anchor == flag.name]
                elif p.name not in moved:
                    params.append(p)

            @functools.wraps(fn)
            def command(**kwargs: Any) -> Any:
                return fn(**{self.param: self.pack(**{name: kwargs.pop(name) for name in self.names})}, **kwargs)

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
    Flag("keep_going", bool, ("--keep-going",), KEEP_GOING_HELP, default=False),
    Flag("errors", Optional[Path], ("--errors",), "With --keep-going: write every failure here as JSONL (default: the first few and a count, on stderr)."),
    Flag("device", str, ("--device",), DEVICE_HELP, default="auto"),
    Flag("dtype", str, ("--dtype",), DTYPE_HELP, default="auto"),
    Flag("resume", bool, ("--resume",), "Continue an interrupted run with -o FILE (same input and options).", default=False),
    Flag("shard", Optional[str], ("--shard",), "i/N: process only input items k with k % N == i, into FILE.part-i-of-N, then `biogpt merge` (default: all items)."),
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


def _default(name: str, *, scratch: bool = True) -> str:
    """`default: X` of a training option, read from the defaults `resolve_options` starts from
    (Typer shows none: the flags default to None, "not given", so --config can set them)."""
    from biogpt.training.options import DEFAULTS, FROM_SCRATCH_DEFAULTS

    text = f"default: {_shown(DEFAULTS[name])}"
    if scratch and name in FROM_SCRATCH_DEFAULTS:
        text += f"; with --from-scratch {_shown(FROM_SCRATCH_DEFAULTS[name])}"
    return text


def _shown(value: Any) -> str:
    return "off" if value is False else "on" if value is True else f"{value:g}" if isinstance(value, float) else str(value)


def _scratch_defaults() -> str:
    from biogpt.training.options import FROM_SCRATCH_DEFAULTS

    return " ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in FROM_SCRATCH_DEFAULTS.items())


TRAIN_FLAGS = FlagBlock((
    Flag("model_name", Optional[str], ("--model", "-m"), f"Pretrained model to fine-tune: hub id or directory ({_default('model')})."),
    Flag("from_scratch", Optional[str], ("--from-scratch",), f"Train a new model instead: a preset (tiny, small, biogpt) or a config.json; its defaults are then {_scratch_defaults()}."),
    Flag("epochs", Optional[int], ("--epochs",), f"Passes over the training data ({_default('epochs')}).", bounds={"min": 1}),
    Flag("max_steps", Optional[int], ("--max-steps",), "Stop after N optimizer steps (default: none, --epochs decides).", bounds={"min": 1}),
    Flag("lr", Optional[float], ("--lr",), f"Peak learning rate ({_default('lr')})."),
    Flag("batch_size", Optional[int], ("--batch-size", "-b"), f"Examples per batch ({_default('batch_size')}).", bounds={"min": 1}),
    Flag("grad_accum", Optional[int], ("--grad-accum",), f"Batches per optimizer step ({_default('grad_accum')}).", bounds={"min": 1}),
    Flag("max_samples", Optional[int], ("--max-samples",), "Train on the first N examples only (default: all).", bounds={"min": 1}),
    Flag("seed", Optional[int], ("--seed",), "Random seed of initialisation (new heads included), data order and dropout: on a CPU "
         f"the same seed gives bit-identical weights; on a GPU only with --deterministic ({_default('seed')})."),
    Flag("deterministic", Optional[bool], ("--deterministic/--no-deterministic",),
         f"Deterministic GPU kernels (torch.use_deterministic_algorithms): slower, bit-identical reruns ({_default('deterministic')})."),
    Flag("dropout", Optional[float], ("--dropout",), "Dropout probability (default: the model's own).", bounds={"min": 0.0, "max": 1.0}),
    Flag("eval_steps", Optional[int], ("--eval-steps",), "Also score --dev every N steps (default: at each epoch's end only).", bounds={"min": 1}),
    Flag("save_steps", Optional[int], ("--save-steps",), "Also write a checkpoint every N steps (default: at each epoch's end only).", bounds={"min": 1}),
    Flag("save_total_limit", Optional[int], ("--save-total-limit",), "Keep the N newest checkpoints (default: 2, or --average-last's K).", bounds={"min": 1}),
    Flag("patience", Optional[int], ("--patience",), "Stop after N evaluations without a better dev score (default: never early).", bounds={"min": 1}),
    Flag("scheduler", Optional[str], ("--scheduler",), f"linear, cosine, inverse_sqrt or constant ({_default('scheduler')})."),
    Flag("warmup_steps", Optional[int], ("--warmup-steps",), f"Steps of linear learning-rate warm-up ({_default('warmup_steps')}).", bounds={"min": 0}),
    Flag("bf16", Optional[bool], ("--bf16/--no-bf16",), f"Compute in bfloat16 autocast ({_default('bf16')})."),
    Flag("gradient_checkpointing", Optional[bool], ("--gradient-checkpointing/--no-gradient-checkpointing",),
         f"Recompute activations in backward to save memory ({_default('gradient_checkpointing')})."),
    Flag("cuda_graph", Optional[bool], ("--cuda-graph/--no-cuda-graph",), CUDA_GRAPH_HELP),
    Flag("resume", bool, ("--resume",), "Continue from the latest checkpoint in OUTDIR/checkpoints.", default=False),
    Flag("resume_from", Optional[Path], ("--resume-from",), "Continue from this checkpoint directory (default: a new run, or --resume's latest)."),
    Flag("config_file", Optional[Path], ("--config",),
         "JSON or YAML of these options (dashes or underscores); it overrides the defaults shown, flags override it."),
    Flag("device", Optional[str], ("--device",), f"{DEVICE_HELP[:-1]} ({_default('device')})."),
), TrainFlags)


# ============================================================================ the root group
class RootGroup(typer.core.TyperGroup):
    """The `biogpt` group: a TyperGroup whose groups' own flags skip typer's value coercion.

    Typer (0.29, the one installed here) coerces each parameter's value through a pydantic TypeAdapter, built
    on first use even for a flag left out, and pydantic's import alone takes ~0.1 s: a third of
    `biogpt COMMAND --help` (a command's --help returns before its own parameters are coerced,
    but the groups above it, `biogpt` and `biogpt train`, process theirs first). The groups' flags
    (-v, -q, --debug, --version, --help, completion) arrive from click as bool, int or None
    already, so nothing is lost."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _skip_flag_coercion(self, ctx)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # `biogpt -v 2 models`: -v is counted, not given a number; say so instead of "no command '2'"
        if args and args[0].isdigit():
            raise typer.BadParameter(f"-v takes no value: repeat it (-vv) instead of -v {args[0]}", ctx=ctx, param_hint="'-v' / '--verbose'")
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, typer.core.TyperGroup):  # `biogpt train ...`: that group's flags too
            _skip_flag_coercion(command, typer.Context(command, info_name=name, parent=ctx, **command.context_settings))
        return name, command, rest


def _skip_flag_coercion(group: Any, ctx: Any) -> None:
    """Give `group`'s flags (the help option as `ctx` names it) a coercion that returns click's
    value as it is, instead of the pydantic adapter typer would build for them."""
    try:
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:  # a typer without pydantic coercion: nothing to skip
        return
    for param in group.get_params(ctx):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", "absent") is not None:
            continue  # not typer's parameter, or already built
        if (getattr(param, "is_flag", False) and descriptor.annotation is bool) or (getattr(param, "count", False) and descriptor.annotation is int):
            param._runtime_param = PassThroughRuntimeParam(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)


# ============================================================================ train re / qa / classify --generative
class GenerativeFlags(dict):
    """The GENERATIVE_FLAGS values one command received (None: not given)."""

    def given(self) -> dict[str, Any]:
        """As biogpt.training's keyword options: --average-last K also saves a checkpoint per epoch."""
        return {**self, "save_epochs": True if self["average_last"] else None}

    def set_names(self) -> list[str]:
        """The flags given, as typed (for "needs --generative" messages)."""
        return [f"--{name.replace('_', '-')}" for name, value in self.items() if value is not None]


GENERATIVE_FLAGS = FlagBlock((
    Flag("recipe", Optional[str], ("--recipe",), "default (loss on the target, no prompt) or official, docs/TASK_FORMATS.md (default: default)."),
    Flag("data_split", Optional[str], ("--data-split",), "The training split of the task's folder (default: train)."),
    Flag("dev_split", Optional[str], ("--dev-split",), "The dev split of the task's folder (default: valid)."),
    Flag("dev_limit", Optional[int], ("--dev-limit",), "Score only the first N dev examples, 0 no dev (default: all).", bounds={"min": 0}),
    Flag("max_new_tokens", Optional[int], ("--max-new-tokens",), "Generation budget when scoring dev (default: the task's).", bounds={"min": 1}),
    Flag("max_tokens", Optional[int], ("--max-tokens",), "Token budget per batch (default: none, -b decides; official: 1024).", bounds={"min": 1}),
    Flag("average_last", Optional[int], ("--average-last",), "Save a checkpoint per epoch and average the last K into OUTDIR/model-average (default: no average; official: 5).", bounds={"min": 1}),
), GenerativeFlags, param="generative_flags")
