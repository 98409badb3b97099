"""The `biogpt` entry point: builds the Typer app from the command modules and turns library
errors into one line on stderr with a non-zero exit code (never a traceback)."""

from __future__ import annotations

import signal
import sys
from typing import Optional

import typer

try:  # recent typer vendors click as typer._click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException

from . import __version__
from . import _common, _options
from ._common import DocumentError, UserError, error_line, setup_logging
from .commands import register_all

app = typer.Typer(
    name="biogpt",  # its help is _root's docstring
    cls=_options.RootGroup,  # `COMMAND --help` without pydantic (see RootGroup)
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # click's plain help, spaCy's style: typer's rich panels import rich's markdown parser and
    # lay out every option in boxes, 0.1-0.2 s of each `--help` (README, "Start-up time")
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"biogpt-cli {__version__}")
        raise typer.Exit()


@app.callback(epilog="Global options go before the command: biogpt -q eval ..., biogpt -vv train ...")
def _root(
    # a counted flag takes no value (`-vv`, not `-v 2`): no metavar, no default shown
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, metavar="", show_default=False,
                                help="More logging on stderr; repeat for more: -v info, -vv debug (no value: -vv, not -v 2)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr: no progress bars, tables or warnings."),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Biomedical text mining with BioGPT.

    Inputs are positional (FILE... or - for stdin, gzip and folders read alike); each short flag
    means one thing in every command. `biogpt COMMAND --help` for a command's options and an example.

    \b
    Example: biogpt generate --prompt "COVID-19 is"
    """
    _common.DEBUG = debug
    _common.QUIET = quiet
    setup_logging(verbose, quiet)


register_all(app)


class Signalled(BaseException):
    """SIGINT or SIGTERM, raised in the main thread so that every `finally` runs: temporary
    files are removed and a journal is left consistent. Not KeyboardInterrupt: Typer turns that
    into a silent exit status before this module could say what to do next."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    raise Signalled(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the return value is the exit status (see README, "Exit codes")."""
    _common.RESUME_HINT = False
    previous = _install_handlers()
    try:
        return _run(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_handlers() -> dict[int, object]:
    previous: dict[int, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread (an embedding program): its own handling stays
        pass
    return previous


def _run(argv: list[str] | None) -> int:
    from biogpt.model.errors import BioGptError

    try:
        result = app(args=argv, prog_name="biogpt", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted("interrupted", 130)
    except Signalled as exc:
        return _interrupted("terminated" if exc.signum == signal.SIGTERM else "interrupted", 128 + exc.signum)
    except (UserError, DocumentError, BioGptError) as exc:
        _traceback_if_debug()
        if _is_training_interrupted(exc):
            _common.RESUME_HINT = True
            return _interrupted(f"interrupted ({exc})", exit_code(exc))
        print(error_line(exc), file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:  # `biogpt ... | head`: the reader left; not an error
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0
    except OSError as exc:
        _traceback_if_debug()
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]
        print(error_line(f"{exc.filename}: {reason}" if exc.filename else reason), file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with --debug
        _traceback_if_debug()
        print(error_line(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"), file=sys.stderr)
        return 1


def _is_training_interrupted(exc: BaseException) -> bool:
    from biogpt.training.errors import TrainingInterrupted

    return isinstance(exc, TrainingInterrupted)


def _interrupted(what: str, status: int) -> int:
    """One line after a signal; where the run's journal or checkpoint is safe, how to go on."""
    hint = "; rerun with --resume to continue" if _common.RESUME_HINT else ""
    try:
        print(f"biogpt: {what}{hint}", file=sys.stderr)
    except (OSError, ValueError):  # stderr gone too
        pass
    return status


def exit_code(exc: BaseException) -> int:
    """The exit status of an error: the CLI's own carry theirs (UserError 2, DocumentError 1);
    the library's are mapped here, as the library knows nothing of exit codes."""
    from biogpt.model.errors import InvalidOptionError, PathError
    from biogpt.training.errors import TrainingError, TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):
        # stopped by a signal after a checkpoint was written: the status a shell reports for it
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    if isinstance(exc, (InvalidOptionError, TrainingError, PathError)):
        return 2  # an option out of range or unusable training input: a usage error, like a bad flag
    return getattr(exc, "exit_code", 1)


def _traceback_if_debug() -> None:
    if _common.DEBUG:
        import traceback

        traceback.print_exc()
