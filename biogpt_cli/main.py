"""The `biogpt` entry point: builds the Typer app from the command modules and turns library
errors into one line on stderr with a non-zero exit code (never a traceback)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

try:  # recent typer vendors click as typer._click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException

from . import __version__
from . import _common
from ._common import DocumentError, UserError, error_line, setup_logging
from .commands import register_all

app = typer.Typer(
    name="biogpt",
    help="Biomedical text mining with BioGPT.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"biogpt-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging on stderr (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr (no progress bars)."),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    _common.DEBUG = debug
    _common.QUIET = quiet
    setup_logging(verbose, quiet)


register_all(app)


def main(argv: list[str] | None = None) -> int:
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
        print("biogpt: interrupted", file=sys.stderr)
        return 130
    except (UserError, DocumentError, BioGptError) as exc:
        _traceback_if_debug()
        print(error_line(exc), file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:  # `biogpt ... | head`: the reader left; not an error
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0
    except OSError as exc:
        _traceback_if_debug()
        print(error_line(f"{exc.filename or ''}: {exc.strerror or exc}"), file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only with --debug
        _traceback_if_debug()
        print(error_line(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"), file=sys.stderr)
        return 1


def exit_code(exc: BaseException) -> int:
    """The exit status of an error: the CLI's own carry theirs (UserError 2, DocumentError 1);
    the library's are mapped here, as the library knows nothing of exit codes."""
    from biogpt.model.errors import InvalidOptionError, PathError
    from biogpt.training.errors import TrainingError, TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):
        return 130  # stopped by a signal (a checkpoint was written), as a shell reports SIGINT
    if isinstance(exc, (InvalidOptionError, TrainingError, PathError)):
        return 2  # an option out of range or unusable training input: a usage error, like a bad flag
    return getattr(exc, "exit_code", 1)


def _traceback_if_debug() -> None:
    if _common.DEBUG:
        import traceback

        traceback.print_exc()
