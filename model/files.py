"""Files in and out: the one way every command and library call reads and writes them.

Reading. `open_input(path)` is the one opener: `-` is stdin, a gzip stream is recognised by its
first two bytes (not by its name, so `x.jsonl.gz`, `x.gz` and a gzip file without a suffix all
work), a binary file is refused before anything is parsed, and every problem names the path.
`text_lines(path)` yields a text file's lines with UTF-8 checked line by line, so a bad byte is
reported as `file:line`; `read_text(path)` is the same for a whole file.

Writing. `atomic_file(path)` and `atomic_directory(path)` write under a temporary name in the
destination's own folder (so the final rename never crosses a file system), fsync, then rename:
a reader, a resumed run or a crash sees the old file or the complete new one, never a cut one.
A failure (full disk, file size limit, Ctrl-C) removes the temporary name and raises
`OutputError` naming the final path. Every file gets the mode an ordinary `open()` would give it
(0666 less the umask), whatever the library that wrote it (safetensors writes 0600).
`-` and non-regular files (`/dev/stdout`, a FIFO) are written directly: they cannot be renamed
onto, and a reader of a pipe expects the stream as it comes.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import InputDataError, OutputError, PathError

GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 8192
# errors that say the storage (not the program) failed: reported as "PATH: reason"
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM})


# ============================================================================ reading
class Input:
    """One opened input: `stream` (binary, decompressed), `name` for messages, `head` (its
    first bytes, for format detection) and whether it was gzip."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path == "-":
            self.name = "stdin"
            raw: IO[bytes] = sys.stdin.buffer
        else:
            p = Path(path)
            if not p.exists():
                raise PathError(f"{path}: no such file")
            if p.is_dir():
                raise PathError(f"{path}: is a directory, expected a file")
            self.name = str(path)
            try:
                raw = p.open("rb")
            except OSError as exc:
                raise InputDataError(f"{path}: cannot open ({reason(exc)})") from None
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
        self._raw = buffered
        try:
            self.gzipped = buffered.peek(2)[:2] == GZIP_MAGIC
            self.stream: io.BufferedReader = (
                io.BufferedReader(gzip.GzipFile(fileobj=buffered)) if self.gzipped else buffered  # type: ignore[arg-type]
            )
            self.head = self.stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        except (OSError, EOFError, zlib.error) as exc:
            self.close()
            raise InputDataError(f"{self.name}: cannot read ({_read_reason(exc)})") from None
        if b"\x00" in self.head and not self.head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self.close()
            raise InputDataError(f"{self.name}: looks like a binary file (NUL bytes), expected text")

    def raw_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes with the line end) streaming; a UTF-8 BOM on line 1 is dropped."""
        try:
            for number, raw in enumerate(self.stream, 1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                yield number, raw
        except (OSError, EOFError, zlib.error) as exc:
            raise InputDataError(f"{self.name}: cannot read ({_read_reason(exc)})") from None

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text without its line end); bytes that are not UTF-8 raise
        InputDataError naming `file:line` and the column."""
        for number, raw in self.raw_lines():
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise InputDataError(not_utf8_message(f"{self.name}:{number}", exc)) from None

    def close(self) -> None:
        if self.path != "-":
            for stream in (getattr(self, "stream", None), self._raw):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> "Input":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_input(path: str | os.PathLike[str]) -> Input:
    """The one opener of input files (see the module docstring); use it as a context manager."""
    return Input(path)


def not_utf8_message(where: str, exc: UnicodeDecodeError) -> str:
    return f"{where}: bytes that are not UTF-8 (at column {exc.start + 1}); re-encode the file as UTF-8"


def text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a text file (gzip or not; `-` for stdin)."""
    with open_input(path) as source:
        yield from source.lines()


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole text file (gzip or not), lines joined by "\\n", UTF-8 checked with `file:line`."""
    return "".join(line + "\n" for _, line in text_lines(path))


def read_json_object(path: str | os.PathLike[str], *, what: str, error: type[Exception]) -> dict[str, Any]:
    """A small JSON file that must hold one object (a model's config.json, generation_config.json).
    Every failure is `error` naming the path and `what` the file is; these files are written by
    programs, so the position of a syntax error is enough (no per-line UTF-8 report)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {reason(exc)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg.removesuffix(' at')} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_reason(exc: BaseException) -> str:
    if isinstance(exc, (EOFError, zlib.error)) or isinstance(exc, gzip.BadGzipFile):
        return f"broken gzip stream: {exc}" if str(exc) else "gzip stream cut short"
    return reason(exc)  # type: ignore[arg-type]


# ============================================================================ writing
def reason(exc: OSError) -> str:
    """An OSError's reason in lower-case words, without the path (the caller names that)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def output_failure(path: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """The OutputError for a failed write of `path`: "PATH: no space left on device"."""
    if isinstance(exc, OSError):
        return OutputError(f"{path}: {reason(exc)}")
    return OutputError(f"{path}: {exc}")


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0666 less the process umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask can only be read by setting it)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_regular_target(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is written through a temporary name: not `-`, not a device or FIFO."""
    if str(path) == "-":
        return False
    p = Path(path)
    return not p.exists() or p.is_file() or p.is_dir()


def check_writable_path(path: str | os.PathLike[str]) -> None:
    """A new file may be created at `path`: its folder exists and it is not a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise PathError(f"{p}: is a directory; give a file name for the output")
    if not p.parent.is_dir():
        raise PathError(f"{p.parent}: no such directory for the output file {p.name}")


class _Guarded:
    """A file object whose write failures (full disk...) are OutputErrors naming the final path."""

    def __init__(self, handle: IO[Any], path: Path) -> None:
        self._handle = handle
        self._path = path

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            raise output_failure(self._path, exc) from exc

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as exc:
            raise output_failure(self._path, exc) from exc

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._handle.fileno()

    @property
    def name(self) -> str:
        return str(self._path)


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[Any]:
    """A file object that appears as `path` only when the `with` block completes (see the module
    docstring). `-` is stdout. Existence (--force) is the caller's check, made before any work."""
    if str(path) == "-":
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    target = Path(path)
    if not is_regular_target(target):  # /dev/stdout, a FIFO: written as it comes
        try:
            handle = target.open("wb" if binary else "w", **({} if binary else {"encoding": "utf-8"}))
        except OSError as exc:
            raise output_failure(target, exc) from exc
        with handle:
            yield _Guarded(handle, target)
            _Guarded(handle, target).flush()
        return
    check_writable_path(target)
    _sweep_stale(target)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".tmp")
    except OSError as exc:
        raise output_failure(target, exc) from exc
    tmp = Path(tmp_name)
    handle: IO[Any] | None = None
    try:
        os.fchmod(fd, file_mode())
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        yield _Guarded(handle, target)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        _close_quietly(handle, fd)
        tmp.unlink(missing_ok=True)
        if is_storage_error(exc):
            raise output_failure(target, exc) from exc
        raise


def _close_quietly(handle: IO[Any] | None, fd: int) -> None:
    """Close after a failure: a buffered handle's close retries the failed write; ignore it."""
    try:
        if handle is not None:
            handle.close()
        else:
            os.close(fd)
    except OSError:
        pass


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder to fill; when the `with` block completes its files are fsynced and
    it becomes `path`. A new `path` therefore appears only with all its files. Into an existing
    folder each file is moved with its own atomic rename (other files there are kept: a model
    saved into a folder that holds a user's notes must not delete them). A failure removes the
    temporary folder; a storage failure is an OutputError naming `path`."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise PathError(f"{target}: exists and is not a directory")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(target)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(target), suffix=".tmp"))
    except OSError as exc:
        raise output_failure(target, exc) from exc
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        _seal(tmp)
        if not target.exists():
            os.rename(tmp, target)
        else:
            for item in sorted(tmp.rglob("*"), key=lambda p: len(p.parts)):
                dest = target / item.relative_to(tmp)
                if item.is_dir():
                    dest.mkdir(exist_ok=True)
                else:
                    os.replace(item, dest)
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_storage_error(exc):
            raise output_failure(target, exc) from exc
        if isinstance(exc, OutputError) and str(tmp) in str(exc):  # name the file the user will look for
            raise OutputError(str(exc).replace(str(tmp), str(target))) from exc
        raise


def _temp_prefix(target: Path) -> str:
    """`.NAME.PID.`: hidden, next to the target, and saying which process owns it."""
    return f".{target.name}.{os.getpid()}."


def _sweep_stale(target: Path) -> None:
    """Remove what a killed writer of `target` left (SIGKILL runs no cleanup): temporaries
    whose owning process is gone. A live process's temporary is never touched."""
    prefix = f".{target.name}."
    try:
        siblings = [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for path in siblings:
        pid = path.name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _seal(folder: Path) -> None:
    """Ordinary modes and data on disk for every file of a folder about to be renamed."""
    mode, dmode = file_mode(), dir_mode()
    for item in folder.rglob("*"):
        if item.is_dir():
            os.chmod(item, dmode)
            continue
        os.chmod(item, mode)
        with item.open("rb") as handle:
            os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the folder's entry). Not every file system allows it: best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
