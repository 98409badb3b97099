"""`biogpt serve`: the models behind an OpenAI-compatible HTTP server (biogpt.serve.server).

Server flags take vLLM's names where vLLM has one (--served-model-name, --max-num-seqs,
--api-key); -m, --device, --dtype and --quantize mean what they mean in the batch commands.
Needs the `serve` extra: pip install 'biogpt-cli[serve]'.
"""

from __future__ import annotations

from typing import Optional

import typer

from .. import _common
from .. import _options as opts
from .._common import UserError

HOST = "127.0.0.1"
PORT = 8000
MAX_BODY_BYTES = 4 * 1024 * 1024


def origins(values: list[str] | None) -> tuple[str, ...]:
    """--allowed-origins, repeated or comma-separated (as a proxy's config writes them)."""
    return tuple(o.strip() for value in values or () for o in value.split(",") if o.strip())


def serve(
    model_specs: list[str] = typer.Option(..., "--model", "-m", show_default=False, help="A model to serve: PATH (folder, hub id or fairseq folder) or NAME=PATH; repeat for more models, the first is the default."),
    host: str = typer.Option(HOST, "--host", help="Address to listen on; anything but a loopback address needs --api-key (or --allow-unauthenticated)."),
    port: int = typer.Option(PORT, "--port", min=0, max=65535, help="Port to listen on; 0 takes a free one (the address is shown on stderr)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="The name requests use for the first -m given as a plain PATH (default: its folder's name; a hub id as given)."),
    device: str = opts.DEVICE,
    dtype: str = opts.DTYPE,
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: weight-only int8 linear layers, fast CPU decoding (default: none)."),
    max_num_seqs: int = typer.Option(8, "--max-num-seqs", min=1, help="Requests decoded together per model: the rows of its continuous batch."),
    max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens", min=1, help="Padded prompt tokens of one prefill pass: waiting prompts are prefilled together up to this (default: 512 on a CPU, where a pass is compute-bound and padding costs in full; 4096 on a GPU)."),
    max_queue: int = typer.Option(256, "--max-queue", min=0, help="Requests waiting for a row, per model; one more is answered 429 with Retry-After (0: no waiting)."),
    max_tokens_cap: Optional[int] = typer.Option(None, "--max-tokens-cap", min=1, help="Largest max_tokens a request may ask for; more is a 400 (default: the model's positions)."),
    request_timeout: float = typer.Option(600.0, "--request-timeout", min=0.001, help="Seconds one request may take in all, however many documents or choices it holds: past it the request answers 408 (a stream ends with an error event) and its work not yet run is dropped. Also bounds the drain at a stop."),
    max_body_bytes: int = typer.Option(MAX_BODY_BYTES, "--max-body-bytes", min=1, help="Largest request body in bytes; a larger one is answered 413."),
    allowed_origins: Optional[list[str]] = typer.Option(None, "--allowed-origins", help="Web origins browsers may call from (CORS), repeatable or comma-separated, * for any (default: none, CORS off)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="BIOGPT_API_KEY", help="Require `Authorization: Bearer KEY` on every endpoint but /health (default: $BIOGPT_API_KEY, else no key)."),
    allow_unauthenticated: bool = typer.Option(False, "--allow-unauthenticated", help="Listen on a non-loopback --host without an API key: anyone who can connect may use the models."),
    cuda_graph: Optional[bool] = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="On a GPU, replay captured decode steps (default: on, on a GPU)."),
) -> None:
    """Serve models over HTTP: OpenAI completions and embeddings, task endpoints, metrics.

    Runs until SIGTERM or Ctrl-C, which stop new connections, finish the requests in flight and
    exit 0 (a second signal stops at once).

    \b
    Example: biogpt serve -m microsoft/biogpt --port 8000
    Example: biogpt serve -m base=microsoft/biogpt -m ner=runs/ner/model-best --host 0.0.0.0 --api-key "$KEY"
    """
    # imported here, not at the top: `biogpt --help` loads every command module (README, "Start-up time")
    from ..serve.server import ServeOptions, parse_model_specs
    from ..serve.server import serve as run_server

    if api_key is not None and not api_key.strip():
        # `--api-key "$KEY"` with KEY unset would otherwise serve without authentication, silently
        raise UserError("--api-key is empty: give the key clients must send, or leave the option out")
    models = parse_model_specs(model_specs, served_model_name=served_model_name)
    options = ServeOptions(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, max_queue=max_queue, max_tokens_cap=max_tokens_cap, request_timeout=request_timeout,
        max_body_bytes=max_body_bytes, allowed_origins=origins(allowed_origins), api_key=api_key,
        allow_unauthenticated=allow_unauthenticated, cuda_graph=cuda_graph,
    )

    def ready(url: str, names: list[str]) -> None:
        if not _common.QUIET:
            typer.echo(f"biogpt: serving {', '.join(names)} on {url}/v1 (default model: {names[0]}); "
                       "SIGTERM or Ctrl-C finishes the requests in flight and stops", err=True)

    run_server(models, host=host, port=port, device=device, dtype=dtype, quantize=quantize, options=options, on_ready=ready)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
