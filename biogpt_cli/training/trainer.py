"""One training loop for every model of ours (token/sequence classification, causal LM).

Why one loop: checkpointing, exact resume, schedules, early stopping and signal handling are
subtle; writing them once means every `biogpt train ...` task gets the same guarantees.

Exact resume: the data order of epoch `e` is a permutation drawn from a generator seeded with
`seed + e`, so a checkpoint only needs (epoch, batch index) plus the RNG states (python, torch,
CUDA) to continue with bit-identical losses. Checkpoints are written only at optimizer-step
boundaries. Everything is stored as tensors or plain containers and read back with
`torch.load(..., weights_only=True)`: nothing is ever unpickled.

Every folder the trainer writes (checkpoints/step-N, model-best, model-last) is assembled under a
temporary name and appears only with all its files (`biogpt.model.checkpoint.model_directory`):
a full disk or a kill never leaves a checkpoint that --resume would take for a complete one
(what a SIGKILL leaves under a temporary name is swept when the folder is next written).

Library code: errors are `TrainingError`s (biogpt.training.errors) and what the run shows goes
through a `display` (the CLI passes its progress bar and evaluation table; none by default, and
the dev metrics are logged).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from biogpt.model.errors import InvalidOptionError
from biogpt.model.files import output_failure, write_text_atomic

from ..progress import NoProgress
from .errors import TrainingError, TrainingInterrupted
from .seeding import seed_everything, use_deterministic_algorithms

logger = logging.getLogger(__name__)

SCHEDULERS = ("linear", "cosine", "inverse_sqrt", "constant")
STATE_FILE = "trainer_state.pt"


@dataclass
class TrainingArgs:
    """The resolved hyper-parameters; saved as training_config.json next to every model."""

    output_dir: str
    epochs: int = 3
    max_steps: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    scheduler: str = "linear"
    warmup_steps: int = 0
    bf16: bool = False
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    patience: int | None = None
    seed: int = 42
    #: deterministic kernels (torch.use_deterministic_algorithms): bit-identical reruns on a GPU too
    deterministic: bool = False
    logging_steps: int = 1
    metric: str = "loss"
    greater_is_better: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    #: also write a checkpoint at the end of every epoch (checkpoint averaging, the official recipe)
    save_epochs: bool = False
    #: on a CUDA device, replay each batch shape's captured step (model/training.py) when possible
    cuda_graph: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise InvalidOptionError(f"--scheduler {self.scheduler}: expected {', '.join(SCHEDULERS)}")
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidOptionError("--max-steps must be at least 1")


def lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate after `step` optimizer steps: linear warmup, then
    linear/cosine decay to 0 at `total`, inverse square root, or constant."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    if kind == "inverse_sqrt":
        return math.sqrt(max(warmup, 1)) / math.sqrt(max(step, 1))
    progress_ = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return max(0.0, 1.0 - progress_)
    return 0.5 * (1.0 + math.cos(math.pi * progress_))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _WholeWrites:
    """A file for torch.save that writes every byte it is given or raises. torch's zip writer
    takes a short write (a file size limit reached) for a corrupt stream and says "unexpected
    pos"; this keeps the OSError (errno EFBIG, ENOSPC) so it is reported as what it is."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            while len(view):
                written = self.raw.write(view)
                if not written:
                    raise OSError(28, os.strerror(28))  # no progress: no space
                view = view[written:]
        except OSError as exc:
            self.error = exc
            raise
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def save_state(state: dict[str, Any], path: Path) -> None:
    """torch.save of a training state, its write failures raised as OSErrors (see _WholeWrites)."""
    with open(path, "wb", buffering=0) as raw:
        sink = _WholeWrites(raw)
        try:
            torch.save(state, sink)  # type: ignore[arg-type]
        except (RuntimeError, OSError):
            if sink.error is not None:
                raise sink.error from None
            raise


def dist_info() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint with the highest step under OUTDIR/checkpoints, or None."""
    root = output_dir / "checkpoints"
    found = sorted(
        (p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and p.name[5:].isdigit()),
        key=lambda p: int(p.name[5:]),
    )
    return found[-1] if found else None


class Display(Protocol):
    """How a run is shown: a progress bar over the optimizer steps and each evaluation's
    metrics. The CLI's draws on stderr; `LogDisplay` (the default) only logs the metrics."""

    def progress(self, total: int) -> Any:
        """An object with advance(n=1) and close()."""

    def evaluation(self, step: int, metrics: dict[str, float]) -> None: ...


class LogDisplay:
    def progress(self, total: int) -> Any:
        return NoProgress()

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        logger.info("evaluation at step %d: %s", step, metrics)


class Trainer:
    """Trains `model` on `dataset` (a sequence of examples) batched by `collate`.

    `eval_fn(model) -> dict[str, float]` scores the dev set (the model is in eval mode during
    the call); `args.metric` picks the number that decides model-best and early stopping.
    `on_step(step, loss)` is called after every optimizer step (tests use it). `display` shows
    progress and evaluations (see `Display`); `quiet` shows nothing.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: TrainingArgs,
        dataset: Sequence[Any],
        collate: Callable[[list[Any]], dict[str, torch.Tensor]],
        *,
        eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        tokenizer: Any = None,
        device: torch.device | None = None,
        on_step: Callable[[int, float], None] | None = None,
        quiet: bool = False,
        display: Display | None = None,
    ) -> None:
        if not len(dataset):
            raise TrainingError("no training examples")
        self.model = model
        self.args = args
        self.dataset = dataset
        self.collate = collate
        self.eval_fn = eval_fn
        self.tokenizer = tokenizer
        self.device = device or next(model.parameters()).device
        self.on_step = on_step
        self.quiet = quiet
        self.display = display or LogDisplay()
        self.out = Path(args.output_dir)
        # Under torchrun every rank takes its strided shard of each epoch's order (rank::world):
        # the union of the ranks' micro-batches b is the single-process batch b of size
        # batch_size * world; only rank 0 writes checkpoints, models and logs.
        self.rank, self.world = dist_info()
        self.is_main = self.rank == 0
        self.shard_size = math.ceil(len(dataset) / self.world)
        self.batches_per_epoch = math.ceil(self.shard_size / args.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / args.grad_accum)
        self.total_steps = args.max_steps or args.epochs * self.steps_per_epoch
        from biogpt.model.training import TrainStep, adamw

        model.to(self.device)
        self.graph_blocker = self._graph_blocker()
        if self.graph_blocker and args.cuda_graph and self.device.type == "cuda":
            logger.info("training steps run eagerly, not as CUDA graphs: %s", self.graph_blocker)
        graphed = self.graph_blocker is None
        # fused into one kernel when the model is on a GPU; capturable (a tensor learning rate) for graphs
        self.optimizer = adamw(model, lr=args.lr, weight_decay=args.weight_decay, betas=tuple(args.betas), capturable=graphed)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, kind=args.scheduler, warmup=args.warmup_steps, total=self.total_steps),
        )
        self._float_base_lrs()
        self.fast_step = None
        if graphed:
            self.fast_step = TrainStep(model, self.optimizer, bf16=args.bf16, max_grad_norm=args.max_grad_norm, graph=True, max_graphs=32)
        self.step = 0
        self.epoch = 0
        self.batch_index = 0  # next micro-batch of the current epoch
        self.best: float | None = None
        self.bad_evals = 0
        self.stopped_early = False
        self._signal: int | None = None

    def _graph_blocker(self) -> str | None:
        """Why steps cannot be captured as CUDA graphs here, or None when they can."""
        if not self.args.cuda_graph:
            return "--no-cuda-graph"
        if self.device.type != "cuda":
            return "not on a CUDA device"
        if self.world > 1:
            return "distributed training (a graph cannot hold DDP's gradient all-reduce hooks)"
        if any(getattr(m, "gradient_checkpointing", False) for m in self.model.modules()):
            return "--gradient-checkpointing (its recomputation saves RNG states on the host)"
        if getattr(getattr(self.model, "config", None), "layerdrop", 0.0):
            return "layerdrop (a random host decision per layer)"
        return None

    def _float_base_lrs(self) -> None:
        """The schedule's peak rates as plain floats: with a tensor learning rate (capturable
        AdamW) every scheduler step would otherwise compute on the device and read it back."""
        self.scheduler.base_lrs = [float(lr) for lr in self.scheduler.base_lrs]

    def _micro_batch(self, order: list[int], b: int) -> dict[str, torch.Tensor]:
        """Micro-batch `b` of this epoch's `order`, on the device. For captured steps it is
        right-padded to a multiple of PAD_MULTIPLE tokens: few shapes, so few graphs (the loss
        does not change, see pad_to_length). On a GPU its mask is dropped where it only marks
        right padding: attention then runs the causal flash kernel (see drop_right_padding_mask).
        A CPU has no such kernel to gain, so CPU runs keep the mask and their numerics."""
        from biogpt.model.training import drop_right_padding_mask, pad_to_length, padded_length

        idx = order[b * self.args.batch_size : (b + 1) * self.args.batch_size]
        batch = self.collate([self.dataset[i] for i in idx])
        config = getattr(self.model, "config", None)
        pad = getattr(config, "pad_token_id", None)
        plain = set(batch) <= {"input_ids", "attention_mask", "labels"} and batch["input_ids"].dim() == 2
        if self.fast_step is not None and pad is not None and plain:
            length = batch["input_ids"].shape[1]
            limit = getattr(config, "max_position_embeddings", length)
            batch = pad_to_length(batch, padded_length(length, limit=limit), pad_token_id=pad)
        if (self.fast_step is not None or self.device.type == "cuda") and plain:
            batch = drop_right_padding_mask(batch)
        return {k: v.to(self.device) for k, v in batch.items()}

    # ------------------------------------------------------------------ data order
    def epoch_order(self, epoch: int) -> list[int]:
        """The shuffled order of epoch `epoch`: a function of (seed, epoch) only."""
        g = torch.Generator().manual_seed(self.args.seed + epoch)
        return torch.randperm(len(self.dataset), generator=g).tolist()

    def shard_order(self, epoch: int) -> list[int]:
        """This rank's part of the epoch order (the whole order in a single process). A short
        shard is padded by wrapping around so that every rank runs the same number of steps."""
        order = self.epoch_order(epoch)
        if self.world == 1:
            return order
        shard = order[self.rank :: self.world]
        while len(shard) < self.shard_size:
            shard.append(order[len(shard) % len(order)])
        return shard

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """OUTDIR/checkpoints/step-N: weights (safetensors via save_pretrained), optimizer,
        scheduler, RNG states and data position; written to a temporary folder then renamed."""
        from biogpt.model.checkpoint import model_directory

        root = self.out / "checkpoints"
        final = root / f"step-{self.step}"
        if not self.is_main:
            return final
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "order_seed": self.args.seed + self.epoch,
            "order": torch.tensor(self.epoch_order(self.epoch)),
            "best": self.best,
            "bad_evals": self.bad_evals,
        }
        with model_directory(final) as tmp:
            self._write_model(tmp)
            save_state(state, tmp / STATE_FILE)
        self._prune_checkpoints()
        logger.info("checkpoint %s", final)
        return final

    def _prune_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        root = self.out / "checkpoints"
        steps = sorted((p for p in root.glob("step-*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
        for old in steps[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything `save_checkpoint` wrote (weights_only loading: no pickled code).
        A file that is cut, random or names code to run is a CheckpointError "PATH: corrupt or
        unsafe checkpoint (...)", raised before the model is changed."""
        from biogpt.model.checkpoint import SAFE_WEIGHTS, read_safetensors
        from biogpt.model.safe_pickle import checkpoint_problem, load_state

        path = Path(path)
        if not (path / STATE_FILE).is_file():
            raise TrainingError(f"--resume {path}: not a training checkpoint (no {STATE_FILE})")
        weights_file = path / SAFE_WEIGHTS
        if not weights_file.is_file():
            raise checkpoint_problem(path, f"no {SAFE_WEIGHTS} beside {STATE_FILE}")
        weights = dict(read_safetensors(weights_file))
        state = load_state(path / STATE_FILE)
        keys = ("optimizer", "scheduler", "rng", "step", "epoch", "batch_index", "best", "bad_evals")
        if not isinstance(state, dict) or any(k not in state for k in keys):
            found = ", ".join(list(map(str, state))[:10]) if isinstance(state, dict) else type(state).__name__
            raise checkpoint_problem(path / STATE_FILE, f"not a training state: expected {', '.join(keys)}; found {found or 'nothing'}")
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.endswith("output_projection.weight")]
        if missing or unexpected:
            raise TrainingError(f"--resume {path}: checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        from biogpt.model.training import load_optimizer_state

        try:
            load_optimizer_state(self.optimizer, state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self._float_base_lrs()
            _set_rng_state(state["rng"])
            self.step, self.epoch, self.batch_index = int(state["step"]), int(state["epoch"]), int(state["batch_index"])
            self.best, self.bad_evals = state["best"], int(state["bad_evals"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # a state of another shape
            raise checkpoint_problem(path / STATE_FILE, f"does not fit this run: {type(exc).__name__}: {exc}") from None
        self._truncate_metrics()
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_index)

    def _truncate_metrics(self) -> None:
        """Drop metric lines logged after the checkpoint: the resumed run logs them again."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by the kill that stopped the run: logged again
                continue
            if isinstance(record, dict) and record.get("step", 0) <= self.step:
                keep.append(line)
        # atomically: a failure here must not lose the log of the steps before the checkpoint
        write_text_atomic(path, "".join(line + "\n" for line in keep))

    def _save_model(self, directory: Path) -> None:
        """A model folder (model-best, model-last) that appears with all its files."""
        from biogpt.model.checkpoint import model_directory

        if not self.is_main:
            return
        with model_directory(directory) as tmp:
            self._write_model(tmp)

    def _write_model(self, folder: Path) -> None:
        """The model's files and training_config.json into `folder` (a temporary one)."""
        write = getattr(self.model, "write_pretrained", None)
        if write is not None:
            write(folder, tokenizer=self.tokenizer)
        else:  # a library user's own model class: its save_pretrained into our temporary folder
            self.model.save_pretrained(folder)  # type: ignore[attr-defined]
        config = {**asdict(self.args), "total_steps": self.total_steps, "step": self.step}
        (folder / "training_config.json").write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.jsonl"
        try:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk: named, and no empty log left behind
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
            raise output_failure(path, exc) from exc

    def _show_eval(self, metrics: dict[str, float]) -> None:
        if self.quiet or not self.is_main:
            return
        self.display.evaluation(self.step, metrics)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float] | None:
        if self.eval_fn is None:
            return None
        self.model.eval()
        try:
            with torch.inference_mode():
                metrics = dict(self.eval_fn(self.model))
        finally:
            self.model.train()
        self._log({"step": self.step, "epoch": self.epoch, "eval": metrics})
        self._show_eval(metrics)
        value = metrics.get(self.args.metric)
        if value is None:
            raise TrainingError(f"evaluation gave no {self.args.metric!r} (got {', '.join(metrics)})")
        better = self.best is None or (value > self.best if self.args.greater_is_better else value < self.best)
        if better:
            self.best = float(value)
            self.bad_evals = 0
            self._save_model(self.out / "model-best")
        else:
            self.bad_evals += 1
            if self.args.patience is not None and self.bad_evals >= self.args.patience:
                logger.warning("early stop: %s has not improved for %d evaluations", self.args.metric, self.bad_evals)
                self.stopped_early = True
        return metrics

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum

    def _install_handlers(self) -> dict[int, Any]:
        old: dict[int, Any] = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: no handlers, training still works
            pass
        return old

    # ------------------------------------------------------------------ the loop
    def train(self, resume: Path | None = None) -> dict[str, Any]:
        """Run to max_steps / epochs or early stop; returns a summary. Raises
        TrainingInterrupted (after writing a checkpoint) on SIGTERM/SIGINT."""
        args = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        if args.deterministic:
            use_deterministic_algorithms()
        if resume is not None:
            self.load_checkpoint(resume)
        else:
            # the loop's draws (dropout) follow from the seed alone, however many numbers the
            # model's build took (the job seeded that too, before building: seeding.py)
            seed_everything(args.seed)
            if self.is_main:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
        self.model.to(self.device)
        self.model.train()
        forward: Any = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(self.model, device_ids=ids)
        old_handlers = self._install_handlers()
        bar = NoProgress() if self.quiet or not self.is_main else self.display.progress(self.total_steps)
        bar.advance(self.step)
        try:
            while self.step < self.total_steps and not self.stopped_early:
                order = self.shard_order(self.epoch)
                while self.batch_index < self.batches_per_epoch and self.step < self.total_steps:
                    step_loss, lr = self._update(forward, order)
                    self._after_update(step_loss, lr, bar)
                    if self.stopped_early or self.batch_index == 0:  # early stop, or a new epoch's order
                        break
        finally:
            bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        return self._finish()

    def _update(self, forward: Any, order: Any) -> tuple[float, float]:
        """One optimizer step over the next `grad_accum` micro-batches of the epoch's `order`:
        (their mean loss, the learning rate it ran at)."""
        args = self.args
        first = self.batch_index
        micro = list(range(first, min(first + args.grad_accum, self.batches_per_epoch)))
        losses = []
        lr = float(self.scheduler.get_last_lr()[0])
        fast = self.fast_step  # captured steps (see _graph_blocker), else the eager loop
        for b in micro:
            batch = self._micro_batch(order, b)
            if fast is not None and args.grad_accum == 1:
                losses.append(float(fast(batch)))  # forward, backward, clipping, AdamW
            elif fast is not None:
                losses.append(float(fast.accumulate(batch, scale=1 / len(micro))))
            else:
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=args.bf16):
                    loss = forward(**batch).loss
                (loss.float() / len(micro)).backward()
                losses.append(float(loss.detach()))
        if fast is not None and args.grad_accum > 1:
            fast.update()
        elif fast is None:
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.batch_index = micro[-1] + 1
        return sum(losses) / len(losses), lr

    def _after_update(self, step_loss: float, lr: float, bar: Any) -> None:
        """What follows each update: logging, evaluation, checkpoints, the epoch's end, and a
        pending SIGTERM/SIGINT (a checkpoint, then TrainingInterrupted)."""
        args = self.args
        if self.step % args.logging_steps == 0 or self.step == self.total_steps:
            self._log({"step": self.step, "epoch": self.epoch, "loss": step_loss, "lr": lr})
        bar.advance()
        if self.on_step is not None:
            self.on_step(self.step, step_loss)
        if args.eval_steps and self.step % args.eval_steps == 0:
            self.evaluate()
        if self.batch_index >= self.batches_per_epoch:  # epoch end: next position is epoch+1
            self.epoch += 1
            self.batch_index = 0
            if not (args.eval_steps and self.step % args.eval_steps == 0):
                self.evaluate()
            if args.save_epochs and not (args.save_steps and self.step % args.save_steps == 0):
                self.save_checkpoint()
        if args.save_steps and self.step % args.save_steps == 0:
            self.save_checkpoint()
        if self._signal is not None:
            path = self.save_checkpoint()
            name = signal.Signals(self._signal).name
            raise TrainingInterrupted(f"{name} at step {self.step}: checkpoint saved to {path}", signum=self._signal)

    def _finish(self) -> dict[str, Any]:
        """The last and best models on disk, and the run's summary."""
        self.model.eval()
        self._save_model(self.out / "model-last")
        if self.eval_fn is None or not (self.out / "model-best").is_dir():
            self._save_model(self.out / "model-best")  # no dev set: the last model is the best we know
        summary: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "best": self.best, "stopped_early": self.stopped_early}
        if self.fast_step is not None:
            fast = self.fast_step
            summary["cuda_graph"] = {
                "shapes": fast.shapes, "replayed_batches": fast.replays, "eager_batches": fast.batches - fast.replays,
                "capture_seconds": round(fast.capture_seconds, 3), "capture_failed": fast.capture_failed,
            }
            logger.info("CUDA graphs: %d of %d batches replayed %d captured shapes", fast.replays, fast.batches, fast.shapes)
        self._log({"step": self.step, "summary": summary})
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()  # rank 0's models are on disk when any rank returns
        return summary
