"""Resumable and sharded output for the batch commands (`--resume`, `--shard i/N`, torchrun).

Why a byte-offset journal instead of parsing the output: every batch command writes its
records in input order, so "already done" is always a prefix of the (shard's) input. While a
run with `-o OUTPUT` works, three files stand beside OUTPUT (README, "Files beside an output"):

* `OUTPUT.partial` — the output so far. It becomes OUTPUT (one rename, after an fsync) only
  when the last item is written: a file under the final name is always complete.
* `OUTPUT.biogpt-run.json` — the run's fingerprint (command, options, input sizes and a hash of
  their first MiB, output format, shard) and whether the run completed. A `--resume` whose
  fingerprint differs is refused, naming what differs.
* `OUTPUT.biogpt-run.idx` — one line `GLOBAL_INPUT_INDEX<TAB>END_BYTE_OFFSET` appended (and
  flushed) after each input item is finished: its output was written and flushed, or it failed
  under --keep-going (no output, same offset). An item's output is buffered and written with a
  single write, then the journal line follows.

On `--resume` the last complete journal line says which input items are done and where the
good output ends: OUTPUT.partial is truncated there (which repairs a half-written last line or
block in any format, and drops a record whose journal line was never written: it is redone),
and the command skips those items and appends. A run killed at any moment therefore ends, once
resumed, with every input item exactly once, in input order. After a complete run the two
`.biogpt-run.*` files are removed, unless `--keep-journal` or the output is a shard part (which
`biogpt merge` reads). `-` and non-regular outputs (`/dev/stdout`, a FIFO) are written as they
come, with no journal: they cannot be resumed.

Sharding: item k (global input index, after --limit) belongs to shard k % N. Shard i writes
`OUTPUT.part-i-of-N` with its own sidecar and journal; the journal's global indices are what
`merge_parts` uses to interleave the parts back into input order. Under torchrun (RANK /
WORLD_SIZE in the environment) every rank writes its part, waits at a gloo barrier, and rank 0
merges the parts into OUTPUT and removes them; with `--shard i/N` the user runs
`biogpt merge` by hand (parts are kept).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from biogpt.model.errors import PathError
from biogpt.model.files import atomic_file, is_regular_target, output_failure

from ._common import FailureLog, UserError, check_output_path, open_output

logger = logging.getLogger("biogpt")
T = TypeVar("T")

SIDECAR = ".biogpt-run.json"
JOURNAL = ".biogpt-run.idx"
PARTIAL = ".partial"
# Options that do not change what is written: they may differ between a run and its resume.
# --keep-going may be added on resume: a run stopped at a bad document goes on past it
IGNORED_OPTIONS = {"output", "force", "resume", "shard", "errors", "stream", "keep_going", "keep_journal"}
HASH_BYTES = 1 << 20


# ============================================================================ shards
@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    torchrun: bool = False
    local_rank: int = 0

    def part_path(self, output: Path) -> Path:
        return part_path(output, self.index, self.count)


def part_path(output: Path, index: int, count: int) -> Path:
    return output.with_name(f"{output.name}.part-{index}-of-{count}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text}: expected i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 <= i < N")
    return i, n


def shard_of(shard: str | None, environ: dict[str, str] | None = None) -> Shard | None:
    """The shard this process runs: `--shard i/N`, or torchrun's RANK/WORLD_SIZE, or None."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if shard is not None:
        if world > 1:
            raise UserError("--shard is for runs by hand; under torchrun the ranks are the shards")
        i, n = parse_shard(shard)
        return Shard(i, n) if n > 1 else None
    if world > 1:
        return Shard(int(env.get("RANK", "0")), world, True, int(env.get("LOCAL_RANK", env.get("RANK", "0"))))
    return None


# ============================================================================ fingerprints
def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def input_fingerprint(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Size and a hash of the first MiB of each input file: cheap, and unlike mtimes it survives
    copying the inputs to another machine."""
    from .io import expand_inputs

    out: list[dict[str, Any]] = []
    for path in expand_inputs(list(paths)):
        if path == "-":
            out.append({"path": "-"})
            continue
        p = Path(path)
        with p.open("rb") as fh:
            head = fh.read(HASH_BYTES)
        out.append({"path": path, "size": p.stat().st_size, "sha256_1mib": hashlib.sha256(head).hexdigest()})
    return out


def current_options() -> dict[str, Any]:
    """The invoked command's parameters (from click), minus those that may change on resume."""
    try:  # recent typer vendors click as typer._click (its own context stack)
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer on top of click
        from click import get_current_context

    ctx = get_current_context(silent=True)
    params = dict(ctx.params) if ctx is not None else {}
    return {k: _jsonable(v) for k, v in sorted(params.items()) if k not in IGNORED_OPTIONS}


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """One phrase naming what differs between two fingerprints, or None."""
    if old.get("command") != new.get("command"):
        return f"command {old.get('command')} vs {new.get('command')}"
    if old.get("format") != new.get("format"):
        return f"--format {old.get('format')} vs {new.get('format')}"
    if old.get("shard") != new.get("shard"):
        return f"shard {old.get('shard')} vs {new.get('shard')}"
    o, n = old.get("options", {}), new.get("options", {})
    for key in sorted(set(o) | set(n)):
        if o.get(key) != n.get(key):
            return f"option {key}: {o.get(key)!r} before, {n.get(key)!r} now"
    if old.get("inputs") != new.get("inputs"):
        oi, ni = old.get("inputs") or [], new.get("inputs") or []
        if [i.get("path") for i in oi] != [i.get("path") for i in ni]:
            return "the input files differ"
        changed = [a["path"] for a, b in zip(oi, ni) if a != b]
        return f"input {', '.join(changed)} changed since the first run"
    return None


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + SIDECAR)


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + JOURNAL)


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + PARTIAL)


def remove_run_record(output: Path) -> None:
    for path in (sidecar_path(output), journal_path(output)):
        path.unlink(missing_ok=True)


def read_sidecar(output: Path) -> dict[str, Any] | None:
    path = sidecar_path(output)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable run record ({exc})") from None


def write_sidecar(output: Path, data: dict[str, Any]) -> None:
    """Atomically (temp file + rename): a kill never leaves half a fingerprint."""
    with atomic_file(sidecar_path(output)) as handle:
        handle.write(json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_journal(output: Path, *, repair: bool = False) -> list[tuple[int, int]]:
    """(global index, end offset) per finished item; an unterminated last line is ignored (and
    cut off when `repair`)."""
    path = journal_path(output)
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data[: data.rfind(b"\n") + 1]
    entries: list[tuple[int, int]] = []
    for line in good.decode("ascii").splitlines():
        k, end = line.split("\t")
        entries.append((int(k), int(end)))
    if repair and len(good) != len(data):
        with path.open("r+b") as fh:
            fh.truncate(len(good))
    return entries


# ============================================================================ the output sink
class RecordSink:
    """A text stream for a `Writer` whose writes are held until `commit`, then written to the
    output in one write and journalled: the unit of progress is one input item, never a line.
    `name` is the output the user asked for, which a write failure names."""

    def __init__(self, path: Path, journal: Path, *, append: bool, offset: int, name: Path) -> None:
        self.name = name
        self.path = path
        try:
            self._file = path.open("ab" if append else "wb")
            self._journal = journal.open("a" if append else "w", encoding="ascii")
        except OSError as exc:
            raise output_failure(name, exc) from exc
        self._buffer: list[str] = []
        self.offset = offset
        self.closed = False

    def write(self, text: str) -> int:
        self._buffer.append(text)
        return len(text)

    def flush(self) -> None:  # the Writer flushes per line; real flushing happens in commit
        pass

    def isatty(self) -> bool:
        return False

    def commit(self, index: int) -> None:
        try:
            if self._buffer:
                data = "".join(self._buffer).encode("utf-8")
                self._buffer.clear()
                self._file.write(data)
                self._file.flush()
                self.offset += len(data)
            self._journal.write(f"{index}\t{self.offset}\n")
            self._journal.flush()
        except OSError as exc:
            failure = output_failure(self.name, exc)
            raise type(failure)(f"{failure} (what was finished is kept; rerun with --resume to continue)") from exc

    def flush_tail(self) -> None:
        """What a writer wrote after the last item (BioC's footer) goes to the file without a
        journal entry: a resume truncates the output to its last item, whose writer then
        continues the documents and writes the footer again."""
        try:
            if self._buffer:
                self._file.write("".join(self._buffer).encode("utf-8"))
                self._buffer.clear()
                self._file.flush()
        except OSError as exc:
            raise output_failure(self.name, exc) from exc

    def seal(self) -> None:
        """The output's bytes on disk before it is renamed to its final name."""
        try:
            if not self.closed:
                self._file.flush()
            with self.path.open("rb") as handle:  # the data of every descriptor: fsync is per file
                os.fsync(handle.fileno())
        except OSError as exc:
            raise output_failure(self.name, exc) from exc

    def close(self) -> None:
        """Uncommitted output (an item that failed mid-way) is dropped: resume redoes it."""
        if not self.closed:
            self._buffer.clear()
            self.closed = True
            for handle in (self._file, self._journal):
                try:
                    handle.close()
                except OSError:  # a full disk fails the flush again; the journal says what is done
                    pass


class _DirectSink:
    """A non-regular output (`/dev/stdout`, a FIFO): written as it comes, write failures named."""

    def __init__(self, path: Path) -> None:
        self.name = path
        try:
            self._file = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise output_failure(path, exc) from exc

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except OSError as exc:
            raise output_failure(self.name, exc) from exc

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as exc:
            raise output_failure(self.name, exc) from exc

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


# ============================================================================ the run
def _check_errors_path(errors: Path, output: Path | None, shard: Shard | None, *, force: bool, resume: bool) -> None:
    target = part_path(errors, shard.index, shard.count) if shard is not None else errors
    if output is not None and str(output) != "-" and errors.resolve() == output.resolve():
        raise UserError(f"--errors {errors} names the output file too; give the failures their own file")
    if target.is_dir():
        raise PathError(f"{target} (--errors): is a directory; give a file name")
    if is_regular_target(target) and target.exists() and not (force or resume):
        raise UserError(f"{target} (--errors) exists; pass --force to overwrite it")
    if not target.parent.exists():
        raise PathError(f"{target.parent}: no such directory for the --errors file")


def _check_output(target: Path, *, force: bool) -> None:
    """A fresh run's output: a file name in an existing folder, not there yet (or --force), and
    no unfinished run of it that a fresh start would throw away unasked."""
    check_output_path(target, force=force, otherwise=" (or --resume to continue it)")
    partial = partial_path(target)
    if partial.exists() and not force:
        raise UserError(f"{partial}: the output of an unfinished run; pass --resume to continue it or --force to start again")


class RunState:
    """What one batch command run needs for --resume and sharding (see the module docstring).

    Use: `run = RunState.start(...)`; `sink = run.open()` instead of `open_output`;
    `run.adopt(writer)`; `failures = run.failure_log(...)`; feed `run.select(items)` to the
    pipeline; loop over `run.track(results)` (one result per selected item, in order); call
    `run.finish()` after the loop completed. Without -o everything passes through unchanged.
    """

    def __init__(self) -> None:
        self.output: Path | None = None
        self.target: Path | None = None  # the file this process writes (OUTPUT or its part)
        self.direct = False  # a non-regular output: written as it comes, no journal
        self.shard: Shard | None = None
        self.fingerprint: dict[str, Any] = {}
        self.skip_through = -1  # global indices <= this are done
        self.sink: RecordSink | None = None
        self.nothing_to_do = False
        self.merged = False  # a torchrun output merged before: no rank has anything to do
        self.keep_journal = False
        self._pending: deque[int] = deque()
        self._force = False
        self._resume = False
        self._offset = 0
        self._existing_header: str | None = None
        self._errors: Path | None = None  # --errors FILE (this shard's name), written via .partial
        self._errors_sink: Any = None

    @property
    def journalled(self) -> bool:
        """Whether an interrupted run of this output can be continued with --resume."""
        return self.target is not None and not self.nothing_to_do

    # ------------------------------------------------------------------ set-up
    @classmethod
    def start(
        cls, *, command: str, output: Path | None, output_format: str, inputs: Iterable[str] | None,
        resume: bool, shard: str | None, force: bool, errors: Path | None = None, keep_journal: bool = False,
    ) -> "RunState":
        """Every check of the output, --errors, --resume and --shard, before any model loads.
        `errors` (--errors FILE) is checked before the output is created, so that a refused
        errors file leaves nothing behind that the corrected command would trip on."""
        run = cls()
        run.shard = shard_of(shard)
        run.keep_journal = keep_journal
        if errors is not None:
            _check_errors_path(errors, output, run.shard, force=force, resume=resume)
            run._errors = part_path(errors, run.shard.index, run.shard.count) if run.shard else errors
        if output is not None and str(output) != "-" and output.is_dir():
            raise PathError(f"{output}: is a directory; give a file name for the output")
        if output is None or str(output) == "-" or not is_regular_target(output):
            if resume:
                raise UserError("--resume needs -o FILE, a regular file (output to stdout or a device cannot be resumed)")
            if run.shard is not None:
                raise UserError("sharded runs (--shard or torchrun) need -o FILE: each shard writes FILE.part-i-of-N")
            if output is not None and str(output) != "-":
                run.output, run.direct = output, True
            return run
        if resume and force:
            raise UserError("give either --resume or --force, not both")
        run.output, run._force, run._resume = output, force, resume
        run.target = run.shard.part_path(output) if run.shard else output
        run.fingerprint = {
            "version": 1, "command": command, "format": output_format, "options": current_options(),
            "inputs": input_fingerprint(inputs or []),
            "shard": [run.shard.index, run.shard.count] if run.shard else None,
        }
        if run.shard and run.shard.torchrun:
            if resume and output.exists() and not partial_path(run.target).exists() and not run.target.exists():
                logger.info("%s: this sharded run already completed and was merged; nothing to do", output)
                run.nothing_to_do = run.merged = True
                return run
            if not resume and output.exists() and not force:
                raise UserError(f"{output} exists; pass --force to overwrite it")
        if resume:
            run._prepare_resume()
        if not run._resume and not run.nothing_to_do:
            _check_output(run.target, force=force)
        return run

    def _prepare_resume(self) -> None:
        assert self.target is not None
        target, partial = self.target, partial_path(self.target)
        old = read_sidecar(target)
        if not partial.exists():
            if target.exists():
                if old is not None:
                    diff = describe_difference(old, self.fingerprint)
                    if diff is not None:
                        raise UserError(f"--resume refused: {diff} (resume with the first run's input and options, or start again with --force)")
                logger.info("%s is complete (no %s to continue); nothing to do", target, partial.name)
                self.nothing_to_do = True
            else:
                self._resume = False  # nothing was started: a fresh run
            return
        if old is None:
            raise UserError(f"--resume: {partial} has no run record ({sidecar_path(target).name}); "
                            "it was not written by a resumable run")
        diff = describe_difference(old, self.fingerprint)
        if diff is not None:
            raise UserError(f"--resume refused: {diff} (resume with the first run's input and options, or start again with --force)")
        entries = read_journal(target, repair=True)
        end = entries[-1][1] if entries else 0
        size = partial.stat().st_size
        if size < end:
            raise UserError(f"--resume: {partial} is shorter than its run record says; it was changed by hand")
        with partial.open("r+b") as fh:
            fh.truncate(end)
            fh.seek(0)
            first = fh.readline() if end else b""
        if first.endswith(b"\n"):
            self._existing_header = first.decode("utf-8").rstrip("\n")
        self.skip_through = entries[-1][0] if entries else -1
        self._offset = end
        if size > end:
            logger.info("%s: dropped %d bytes of unfinished output", partial, size - end)
        logger.info("resuming %s after %d finished items", target, len(entries))

    def open(self):
        """The stream a command's Writer writes to: stdout, a device, or a journalled RecordSink
        on OUTPUT.partial."""
        if self.direct:
            assert self.output is not None
            return _DirectSink(self.output)
        if self.target is None:
            return open_output(None)
        if self.nothing_to_do:
            return _NullSink()
        if not self._resume:
            partial_path(self.target).unlink(missing_ok=True)
            write_sidecar(self.target, {**self.fingerprint, "complete": False})
        self.sink = RecordSink(partial_path(self.target), journal_path(self.target), append=self._resume,
                               offset=self._offset, name=self.target)
        return self.sink

    def adopt(self, writer: Any) -> Any:
        """A resumed TSV output already has its header: the writer must not repeat it; nor
        must a collection writer (BioC) its header, and it continues the documents."""
        if self._existing_header is not None and hasattr(writer, "columns") and writer.columns is None:
            writer.columns = self._existing_header.split("\t")
        if self._existing_header is not None and hasattr(writer, "continues"):
            writer.continues = True
        return writer

    def failure_log(self, *, keep_going: bool, errors: Path | None = None, force: bool = False) -> FailureLog:
        """The failure log; --errors FILE (this shard's name) is written as FILE.partial, appended
        to on resume, and renamed to FILE by `finish` like the output."""
        path = self._errors
        if path is None or self.nothing_to_do:
            return FailureLog(keep_going=keep_going)
        if not is_regular_target(path):
            self._errors_sink = _DirectSink(path)
        else:
            partial = partial_path(path)
            append = self._resume and partial.exists()
            try:
                self._errors_sink = partial.open("a" if append else "w", encoding="utf-8")
            except OSError as exc:
                raise output_failure(path, exc) from exc
        return FailureLog(keep_going=keep_going, sink=self._errors_sink, name=path)

    def device(self, device: str) -> str:
        """Under torchrun each rank takes its own GPU (cuda:LOCAL_RANK) when devices are automatic."""
        if self.shard is None or not self.shard.torchrun or device not in ("auto", "cuda"):
            return device
        import torch

        if torch.cuda.is_available():
            return f"cuda:{self.shard.local_rank % torch.cuda.device_count()}"
        return device

    # ------------------------------------------------------------------ the loop
    def select(self, items: Iterable[T]) -> Iterator[T]:
        """This shard's items not yet done, remembering each one's global index."""
        if self.nothing_to_do:
            return
        n = self.shard.count if self.shard else 1
        i = self.shard.index if self.shard else 0
        for k, item in enumerate(items):
            if k % n != i or k <= self.skip_through:
                continue
            if self.target is not None:  # only journalled runs pop them (stdout runs would grow it forever)
                self._pending.append(k)
            yield item

    def track(self, results: Iterable[T]) -> Iterator[T]:
        """Yields the results; an item counts as finished (committed) only when the loop body
        asks for the next one, i.e. it completed without an exception."""
        if self.sink is None:
            yield from results
            return
        for result in results:
            index = self._pending.popleft()
            yield result
            self.sink.commit(index)

    def abandon(self) -> None:
        """After a failure: a run that cannot be resumed (no -o FILE) drops its --errors partial."""
        if self._errors_sink is not None:
            self._errors_sink.close()
            self._errors_sink = None
            if self.target is None and self._errors is not None and is_regular_target(self._errors):
                partial_path(self._errors).unlink(missing_ok=True)

    def finish(self) -> None:
        """OUTPUT.partial becomes OUTPUT (and FILE.partial of --errors becomes FILE); the run
        record goes unless kept; under torchrun wait for every rank, then rank 0 merges."""
        self._finish_errors()
        if self.target is None or self.merged:
            return
        if not self.nothing_to_do:
            if self.sink is not None:
                self.sink.seal()
                self.sink.close()
            try:
                os.replace(partial_path(self.target), self.target)
            except OSError as exc:
                raise output_failure(self.target, exc) from exc
            if self.shard is not None or self.keep_journal:
                write_sidecar(self.target, {**self.fingerprint, "complete": True})
            else:
                remove_run_record(self.target)
        if self.shard is None or not self.shard.torchrun:
            return
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            hours = float(os.environ.get("BIOGPT_SHARD_TIMEOUT_HOURS", "72"))
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=hours))
        dist.barrier()
        if self.shard.index == 0:
            assert self.output is not None
            parts = [part_path(self.output, i, self.shard.count) for i in range(self.shard.count)]
            merge_parts(parts, self.output, force=True)
            for p in parts:
                for f in (p, sidecar_path(p), journal_path(p)):
                    f.unlink(missing_ok=True)
        dist.barrier()
        dist.destroy_process_group()

    def _finish_errors(self) -> None:
        sink, self._errors_sink = self._errors_sink, None
        if sink is None:
            return
        assert self._errors is not None
        try:
            sink.flush()
            if isinstance(sink, _DirectSink):
                sink.close()
                return
            os.fsync(sink.fileno())
            sink.close()
            os.replace(partial_path(self._errors), self._errors)
        except OSError as exc:
            raise output_failure(self._errors, exc) from exc


class _NullSink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass


# ============================================================================ merging
def merge_parts(parts: list[Path], output: Path | None, *, force: bool = False) -> int:
    """Interleave complete shard parts into input order (by the journals' global indices);
    returns the number of input items. OUTPUT appears only complete (biogpt.model.files.atomic_file)."""
    if not parts:
        raise UserError("merge: no parts given")
    cars = []
    for p in parts:
        car = read_sidecar(p)
        if car is None:
            raise UserError(f"merge: {p} has no run record ({sidecar_path(p).name}); is it a shard part?")
        if not car.get("shard"):
            raise UserError(f"merge: {p} is not a shard part (it was written without --shard)")
        if not car.get("complete"):
            raise UserError(f"merge: {p} is unfinished; finish it with the same command and --resume")
        cars.append(car)
    count = cars[0]["shard"][1]
    indices = sorted(c["shard"][0] for c in cars)
    if indices != list(range(count)) or any(c["shard"][1] != count for c in cars):
        raise UserError(f"merge: need exactly the parts 0..{count - 1} of {count}; got shards "
                        + ", ".join(f"{c['shard'][0]}/{c['shard'][1]}" for c in cars))
    for p, c in zip(parts[1:], cars[1:]):
        diff = describe_difference({**cars[0], "shard": None}, {**c, "shard": None})
        if diff is not None:
            raise UserError(f"merge: {p} comes from a different run than {parts[0]} ({diff})")
    fmt = cars[0].get("format")
    header: bytes | None = None
    streams = []
    for p in parts:
        entries = read_journal(p)
        ranges, start = [], 0
        for k, end in entries:
            ranges.append((k, start, end))
            start = end
        if start and p.stat().st_size < start:
            raise UserError(f"merge: {p} is shorter than its run record says")
        fh = p.open("rb")
        if fmt == "tsv" and start:
            first = fh.readline()
            if header is None:
                header = first
            elif first != header:
                raise UserError(f"merge: {p} has different TSV columns than the other parts")
        streams.append((fh, ranges))
    try:
        if output is not None and str(output) != "-":
            check_output_path(output, force=force)
        with atomic_file(output if output is not None else "-", binary=True) as out:
            total = 0
            if header is not None:
                out.write(header)
            merged = heapq.merge(*[[(k, s, e, n) for k, s, e in r] for n, (_, r) in enumerate(streams)])
            for k, s, e, n in merged:
                total += 1
                fh = streams[n][0]
                if fmt == "tsv" and s == 0 and e > 0:
                    fh.seek(0)
                    s = len(fh.readline())
                if e > s:
                    fh.seek(s)
                    out.write(fh.read(e - s))
        return total
    finally:
        for fh, _ in streams:
            fh.close()
