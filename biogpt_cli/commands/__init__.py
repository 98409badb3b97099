"""One module per command; `register_all` attaches them to the app."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from . import average, classify, convert, data, embed, extract_relations, generate, info, merge, models, qa, serve, tag, train
    from . import eval as eval_cmd

    generate.register(app)
    eval_cmd.register(app)
    extract_relations.register(app)
    qa.register(app)
    classify.register(app)
    tag.register(app)
    embed.register(app)
    train.register(app)
    data.register(app)
    merge.register(app)
    average.register(app)
    convert.register(app)
    info.register(app)
    models.register(app)
    serve.register(app)
