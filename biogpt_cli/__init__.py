"""biogpt-cli: the command-line toolkit. Each command lives in `biogpt_cli/commands/<name>.py`
as a thin Typer wrapper over plain functions; shared helpers are in `biogpt_cli/_common.py`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("biogpt-cli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
