"""One run of a batch command (generate, extract-relations, qa, tag, classify): the skeleton they
share, so that each command supplies only what differs — how to prepare a document, how to run
a batch, how to render a result as output records.

    job = BatchJob.start("tag", flags, inputs=inputs, output=output, ...)   # checks, --resume
    items = job.select(read_inputs(job.inputs, ...), limit)                # this shard's, not done
    model = load(device=job.device(), dtype=flags.dtype)
    job.open("jsonl", allowed=("jsonl", "pubtator"))                       # after the model loaded
    job.write_all(run_model(items), render)                                # render(result) -> records

`write_all` counts a BadRecord (from the reader, the preparation, or `render`) as a failed
document (stopping the run without --keep-going), writes each result's records, journals it
for --resume, shows progress, and marks the output complete only after the last result.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from . import _common
from ._common import FailureLog, UserError, inputs_or_stdin, progress
from ._options import RunFlags
from .batching import Prepared, limited, run_in_batches, run_windows, window_size  # Prepared: batching's, here for the commands
from .io import BadRecord, Item, Writer, make_writer
from .runstate import RunState

logger = logging.getLogger("biogpt")


def prepare_all(items: Iterable[Item], encode: Callable[[Any], list[int]]) -> Iterator[Prepared | BadRecord]:
    """Each item encoded once, in order; bad records pass through and an empty document
    becomes one (a model cannot continue or label nothing)."""
    for item in items:
        if isinstance(item, BadRecord):
            yield item
        elif not item.text.strip():
            yield BadRecord(item.location or item.id, "empty document", item.id)
        else:
            yield Prepared(item, encode(item))


def run_prepared(
    prepared: Iterable[Prepared | BadRecord],
    *,
    static: Callable[[list[Prepared]], list[Any]],
    continuous: Callable[[list[Prepared]], Iterable[tuple[int, Any]]] | None,
    batch_size: int,
    max_tokens: int | None,
) -> Iterator[Any]:
    """Each prepared item's result in input order (bad records pass through). With
    `continuous(window)` (position in the window, result) the rows are refilled as each
    finishes, over windows of upcoming items; else `static(batch)` runs length-sorted batches of
    at most `batch_size` items and `max_tokens` padded tokens."""
    passthrough = lambda p: p if isinstance(p, BadRecord) else None  # noqa: E731
    if continuous is not None:
        yield from run_windows(prepared, continuous, passthrough=passthrough, window=window_size(batch_size))
        return
    yield from run_in_batches(prepared, static, length=lambda p: len(p.input_ids), passthrough=passthrough,
                              batch_size=batch_size, max_tokens=max_tokens)


Render = Callable[[Any], "Iterable[dict[str, Any]] | BadRecord"]


class BatchJob:
    """The output, failure log, progress and --resume/--shard state of one batch command run
    (see the module docstring for the order of calls)."""

    def __init__(self, command: str, flags: RunFlags, run: RunState, inputs: list[str] | None, *, force: bool) -> None:
        self.command = command
        self.flags = flags
        self.run = run
        self.inputs = inputs
        self._force = force
        self.sink: TextIO | None = None
        self.writer: Writer | None = None
        self.failures: FailureLog | None = None

    @classmethod
    def start(
        cls, command: str, flags: RunFlags, *, inputs: list[str] | None, output: Path | None, output_format: str,
        force: bool, stdin_hint: str | None = "",
    ) -> "BatchJob":
        """Check the run's flags before any model loads. `inputs` default to stdin (with
        `stdin_hint` naming another way to give input) unless `stdin_hint` is None: the command
        gathers its input itself."""
        if flags.errors is not None and not flags.keep_going:
            raise UserError("--errors needs --keep-going")
        if stdin_hint is not None:
            inputs = inputs_or_stdin(inputs, command=command, alternative=stdin_hint)
        run = RunState.start(command=command, output=output, output_format=output_format, inputs=inputs,
                             resume=flags.resume, shard=flags.shard, force=force, errors=flags.errors,
                             keep_journal=flags.keep_journal)
        return cls(command, flags, run, inputs, force=force)

    def device(self) -> str:
        """--device, or under torchrun this rank's GPU."""
        return self.run.device(self.flags.device)

    def select(self, items: Iterable[Any], limit: int | None = None) -> Iterator[Any]:
        """The first `limit` items' share of this run: this shard's, not done before a resume."""
        return self.run.select(limited(items, limit))

    def open(self, writer_format: str, *, allowed: Iterable[str] | None = None) -> TextIO:
        """The output (stdout, or the journalled file), its writer and the failure log. Call
        it after the model loaded: a run that cannot start leaves no output behind."""
        make_writer(writer_format, sys.stdout, allowed=allowed)  # a bad --format fails before a file is created
        self.sink = self.run.open()
        self.writer = self.run.adopt(make_writer(writer_format, self.sink, allowed=allowed))
        self.failures = self.run.failure_log(keep_going=self.flags.keep_going)
        # an interrupted journalled run can be continued: main's "interrupted" line says so
        _common.RESUME_HINT = self.run.journalled
        return self.sink

    def write_all(self, results: Iterable[Any], render: Render, *, show_progress: bool = True) -> int:
        """Write every result (one per selected item, in input order) as `render` makes its
        records; returns the number of failed documents."""
        assert self.sink is not None and self.writer is not None and self.failures is not None, "open() first"
        bar = progress(description=self.command, quiet=_common.QUIET or not show_progress)
        try:
            for result in self.run.track(results):
                records = result if isinstance(result, BadRecord) else render(result)
                if isinstance(records, BadRecord):
                    self.failures.fail(records.location, records.message, records.id)
                    continue
                for record in records:
                    self.writer.write(record)
                bar.advance()
            self.writer.close()  # a footer (BioC's collection) after the last record
            tail = getattr(self.sink, "flush_tail", None)  # a journalled output: the footer is no item
            if tail is not None:
                tail()
        except BaseException:
            self.run.abandon()
            raise
        finally:
            bar.close()
            if self.sink is not sys.stdout:
                self.sink.close()
        self.run.finish()
        _common.RESUME_HINT = False  # the output is complete: nothing left to resume
        if self.failures.count:
            where = f" (listed in {self.flags.errors})" if self.flags.errors is not None else " (--errors FILE lists them)"
            logger.warning("%d documents skipped%s", self.failures.count, where)
        return self.failures.count
