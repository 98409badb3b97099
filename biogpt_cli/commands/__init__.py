"""One module per command; `register_all` attaches them to the app."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from . import convert, generate, models
    from . import eval as eval_cmd

    generate.register(app)
    eval_cmd.register(app)
    convert.register(app)
    models.register(app)
