"""Fault injection shared by the tests: a full disk in-process, and what must not be left after it."""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past `nbytes` in any file fail with EFBIG ("File too large"), as a full disk makes
    them fail with ENOSPC: RLIMIT_FSIZE for this process, SIGXFSZ ignored so that the write
    returns the error instead of killing the process. Both restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def temporaries(folder: Path) -> list[str]:
    """Names under `folder` that an atomic writer uses while it works (`.NAME.xxxx.tmp`) or older
    versions used (`.tmp-*`, `*.merging`): none may be left after a failure."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".merging")) or p.name.startswith(".tmp-")
    )


def run_with_file_size_limit(args: list[str], nbytes: int, **kwargs) -> subprocess.CompletedProcess[str]:
    """The command line (`tests.helpers.command`) in a subprocess whose files cannot grow past
    `nbytes`: what a user on a full disk sees, stderr included."""
    from tests.helpers import ENV, command

    def limit() -> None:  # in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run(command(*args), capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limit, **kwargs)
