"""Run `biogpt serve`: load each -m model once, give every causal LM its Engine, build the app
(app.create_app) and run it under uvicorn until SIGTERM or SIGINT.

Order of a start: the binding rule is checked and the port bound first (a refused host or a
port in use costs no model load), models load next, and the socket listens only once every
model is ready: until then a client is refused a connection rather than left waiting.

A stop: the first SIGTERM or SIGINT marks the server draining (/health answers 503), closes the
listening socket, lets every request in flight finish (bounded by the request timeout) and
drains the engines; `serve` then returns normally, so the command exits 0. A second signal ends
the requests still running (finish_reason as the app reports an abort) and exits with the
signal's usual status (130, 143); a third stops without waiting for their answers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._common import UserError

if TYPE_CHECKING:
    from .models import ServedModel

logger = logging.getLogger(__name__)

API_KEY_ENV = "BIOGPT_API_KEY"
# after a drain's request timeout, the connections still open are closed: a stream whose client
# stopped reading must not hold the process forever
DRAIN_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class ModelSpec:
    """One -m: the name requests use, and where the weights are (a folder, hub id or fairseq folder)."""

    name: str
    path: str


def parse_model_specs(specs: Sequence[str], *, served_model_name: str | None = None) -> list[ModelSpec]:
    """`-m NAME=PATH` or `-m PATH`, in order (the first is the default model). A plain path is
    named by --served-model-name (the first plain path only) or else by its folder's name (a hub
    id by itself, as vLLM names it)."""
    if not specs:
        raise UserError("give a model to serve: -m PATH or -m NAME=PATH")
    parsed: list[ModelSpec] = []
    named_by_flag = False
    for spec in specs:
        name, sep, path = spec.partition("=")
        # a path may hold "=" itself: only a NAME without a path separator names the model
        if sep and name and "/" not in name and os.sep not in name:
            if not path:
                raise UserError(f"-m {spec}: no path after {name}=")
            parsed.append(ModelSpec(name, path))
            continue
        path = spec
        if served_model_name is not None and not named_by_flag:
            parsed.append(ModelSpec(served_model_name, path))
            named_by_flag = True
        else:
            parsed.append(ModelSpec(default_name(path), path))
    if served_model_name is not None and not named_by_flag:
        raise UserError("--served-model-name names a model given as -m PATH; every -m here is NAME=PATH already")
    seen: set[str] = set()
    for spec in parsed:
        if spec.name in seen:
            raise UserError(f"two models are served as {spec.name!r}: name them with -m NAME=PATH")
        seen.add(spec.name)
    return parsed


def default_name(path: str) -> str:
    """A folder's name (`runs/ner/model-best` → model-best); a hub id (`owner/name`, no such
    local folder) as given, as vLLM names it."""
    local = Path(path).expanduser()
    if not local.exists() and path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return path
    return local.resolve().name or path


# ------------------------------------------------------------------ binding
def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) reaches this machine only. A name counts when every
    address it resolves to is a loopback address; one that does not resolve does not count."""
    host = host.strip().strip("[]")
    if not host:
        return False  # uvicorn and asyncio read an empty host as every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_binding(host: str, *, api_key: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to serve other machines without a key (issue 28, security): anyone who reaches
    the port could otherwise run the models."""
    if api_key or allow_unauthenticated or is_loopback(host):
        return
    raise UserError(
        f"--host {host} is reachable from other machines and no API key is set: pass --api-key KEY "
        f"(or set {API_KEY_ENV}), or --allow-unauthenticated to serve anyone who can connect"
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), not listening yet (uvicorn listens once the models are
    loaded). OSError with one line for an address in use or a host that is not ours."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # a restarted server may bind while the previous one's connections sit in TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


# ------------------------------------------------------------------ models
def load_served_model(spec: ModelSpec, *, device: str, dtype: str, quantize: str | None, max_num_seqs: int,
                      max_queue: int, cuda_graph: bool | None, max_num_batched_tokens: int | None = None) -> ServedModel:
    """One model, its kind read from its config (a tagger or classifier head serves /v1/tag or
    /v1/classify; anything else loads as a causal LM, with its Engine, not started yet)."""
    from .._taskrun import model_card
    from .models import ServedModel

    architectures, recipe = model_card(spec.path)
    task = str(recipe["task"]) if recipe.get("task") else None
    heads = {"BioGptForTokenClassification": "token-classification", "BioGptForSequenceClassification": "sequence-classification"}
    kind = next((heads[a] for a in architectures if a in heads), "causal-lm")
    started = time.perf_counter()
    if kind != "causal-lm":
        import biogpt.model as bm

        from ..heads import load_head

        if quantize not in (None, "none"):
            logger.warning("%s: --quantize applies to causal LMs; this %s model loads unquantized", spec.name, kind)
        cls = bm.BioGptForTokenClassification if kind == "token-classification" else bm.BioGptForSequenceClassification
        model, tokenizer = load_head(cls, spec.path, device=device, dtype=dtype)
        model.eval()
        engine = None
    else:
        from .._common import load_causal_lm
        from .engine import Engine

        model, tokenizer = load_causal_lm(spec.path, device=device, dtype=dtype, quantize=quantize)
        model.eval()
        engine = Engine(model, max_rows=max_num_seqs, max_queue=max_queue, eos_token_id=model.config.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, cuda_graph=cuda_graph, max_prefill_tokens=max_num_batched_tokens)
    logger.info("%s: loaded %s as a %s model in %.1f s", spec.name, spec.path, kind, time.perf_counter() - started)
    return ServedModel(name=spec.name, model=model, tokenizer=tokenizer, engine=engine, kind=kind, task=task, created=int(time.time()))


# ------------------------------------------------------------------ uvicorn
def _uvicorn_server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server with this module's stop rule (see the module docstring)."""

        def __init__(self, config: Any, *, on_ready: Callable[[], None], on_drain: Callable[[], None],
                     on_abort: Callable[[], None]) -> None:
            super().__init__(config)
            self._on_ready, self._on_drain, self._on_abort = on_ready, on_drain, on_abort
            self.forced_by: int | None = None  # the signal that cut the drain short

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                self._on_ready()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Not uvicorn's handlers: after a graceful stop they raise the signal again, and
            # biogpt.main's handler would turn a drained SIGTERM into exit status 143.
            previous: dict[int, Any] = {}
            try:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    previous[signum] = signal.signal(signum, self._stop)
            except ValueError:  # not the main thread (uvicorn run by a program of its own): its handling stays
                pass
            try:
                yield
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

        def _stop(self, signum: int, frame: object) -> None:
            if not self.should_exit:
                logger.warning("draining: no new connections; finishing the requests in flight (a second signal stops at once)")
                self._on_drain()
                self.should_exit = True
            elif self.forced_by is None:
                # The engines end every request now (finish_reason "abort"), so each handler still
                # answers and uvicorn's wait for the connections ends at once. Cancelling the
                # handlers instead (force_exit) would log a traceback per request.
                logger.warning("stopping now: the requests still running end unfinished")
                self.forced_by = signum
                self._on_abort()
            else:  # a third: not even the answers are waited for
                self.force_exit = True

    return Server


def mark_draining(app: Any) -> None:
    """/health and new requests answer 503 from now on (app.create_app reads the flag); the
    requests in flight go on until the app's lifespan has drained the engines."""
    app.state.draining = True


def abort_engines(served: dict[str, ServedModel]) -> None:
    """End every request now (a second signal). From a thread: shutdown joins the scheduler,
    and a signal handler must not block the event loop that delivers the requests' last events."""
    import threading

    for model in served.values():
        if model.engine is not None:
            threading.Thread(target=model.engine.shutdown, kwargs={"drain": False}, name="biogpt-serve-abort", daemon=True).start()


@dataclass(frozen=True)
class ServeOptions:
    """The server's limits and security settings (the command's flags, see commands/serve.py)."""

    max_num_seqs: int = 8
    max_num_batched_tokens: int | None = None  # None: the engine's default for the device
    max_queue: int = 256
    max_tokens_cap: int | None = None  # None: the largest model's positions
    request_timeout: float = 600.0
    max_body_bytes: int = 4 * 1024 * 1024
    allowed_origins: tuple[str, ...] = ()
    api_key: str | None = None
    allow_unauthenticated: bool = False
    cuda_graph: bool | None = None


def serve(
    models: Sequence[ModelSpec], *, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", dtype: str = "auto",
    quantize: str | None = None, options: ServeOptions = ServeOptions(), on_ready: Callable[[str, list[str]], None] | None = None,
) -> None:
    """Serve `models` (the first is the default) on host:port until a signal; returns after a
    drained stop. `on_ready(url, names)` is called once the socket listens."""
    api_key = options.api_key or None
    check_binding(host, api_key=api_key, allow_unauthenticated=options.allow_unauthenticated)
    if options.max_tokens_cap is not None and options.max_tokens_cap < 1:
        raise UserError(f"--max-tokens-cap {options.max_tokens_cap}: expected at least 1")
    if options.request_timeout <= 0:
        raise UserError(f"--request-timeout {options.request_timeout:g}: expected more than 0 seconds")
    try:  # the extra, checked before any model loads
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise UserError(f"biogpt serve needs the serve extra ({exc.name} is not installed): pip install 'biogpt-cli[serve]'") from None

    sock = bind_socket(host, port)
    served: dict[str, ServedModel] = {}
    try:
        for spec in models:
            served[spec.name] = load_served_model(
                spec, device=device, dtype=dtype, quantize=quantize, max_num_seqs=options.max_num_seqs,
                max_queue=options.max_queue, cuda_graph=options.cuda_graph,
                max_num_batched_tokens=options.max_num_batched_tokens,
            )
            if served[spec.name].engine is not None:
                served[spec.name].engine.start()
        from .app import create_app

        cap = options.max_tokens_cap or max(m.max_positions for m in served.values())
        app = create_app(
            served, default=models[0].name, api_key=api_key, allowed_origins=list(options.allowed_origins),
            max_body_bytes=options.max_body_bytes, max_tokens_cap=cap, request_timeout=options.request_timeout,
        )
        config = uvicorn.Config(
            app, lifespan="on", log_config=None,  # biogpt's logging (stderr, -v for uvicorn's info and access lines)
            ws="none", timeout_graceful_shutdown=options.request_timeout + DRAIN_MARGIN_SECONDS,
        )
        url = url_of(sock)
        server = _uvicorn_server_class()(
            config,
            on_ready=lambda: on_ready(url, list(served)) if on_ready is not None else None,
            on_drain=lambda: mark_draining(app),
            on_abort=lambda: abort_engines(served),
        )
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the app's lifespan fails to start: a bug, one line
            raise RuntimeError(f"the server did not start (uvicorn exit status {exc.code}; the log above says why)") from None
        if server.forced_by is not None:
            # a stop cut short: what that signal means to biogpt.main (130 or 143, one line);
            # raised here, outside uvicorn's event loop, whose handlers have all answered
            signal.raise_signal(server.forced_by)
        logger.info("stopped")
    finally:
        sock.close()
        # the app's lifespan drained the engines after a graceful stop; after a forced stop, or
        # a failure while loading, their scheduler threads must still end
        for model in served.values():
            if model.engine is not None:
                model.engine.shutdown(drain=False, timeout=5.0)
