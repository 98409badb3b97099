"""Resolve a model name to local files: a directory, or a Hugging Face hub id via its cache.

huggingface_hub is imported only when a hub id must be resolved, so the core runs (on local
directories) where it is not installed. HF_HUB_OFFLINE and an already-filled cache are honoured
by huggingface_hub itself.

Failing fast: with no network, huggingface_hub (and `datasets` above it) retry for half a
minute, printing every retry twice (their own handler and the root logger's). One request
without retries (`hub_unreachable`) says at once whether the hub answers; `offline_hub` then
lets a cached copy be used without asking again, and `hub_logging` sends those libraries'
records through the application's logging only (one line each, silenced by its level). Each is
set for the duration of our call and restored after: nothing process-wide for a library user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelNotFoundError, ModelPathError

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")  # owner/name: a bare word is a missing local folder
_UNREACHABLE: list[str] = []  # why the hub could not be reached, once found in this process
PROBE_TIMEOUT = 5.0  # seconds for the one request that asks whether the hub answers


def cache_root() -> Path:
    """biogpt-cli's own cache ($BIOGPT_CACHE, else ~/.cache/biogpt-cli): the compiled CPU
    kernels, the GPU kernels' tuned launch configurations. Model files stay in the hub's cache."""
    return Path(os.environ.get("BIOGPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "biogpt-cli"))


def is_hub_id(name: str) -> bool:
    """A string that can only mean a hub repository (not an existing local path)."""
    return not Path(name).exists() and bool(_REPO_ID.match(name)) and "\\" not in name


def resolve_file(
    name_or_path: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    required: bool = True,
    subfolder: str = "",
    token: str | bool | None = None,
    force_download: bool = False,
) -> Path | None:
    """Path of `filename` inside a local directory or a hub repository.

    Returns None when the file does not exist there and `required` is false, so callers can
    probe alternatives (model.safetensors, then an index, then pytorch_model.bin).
    subfolder: transformers' option, a folder inside the directory or repository ("" = its root).
    token, force_download: huggingface_hub's (a private or gated repository's access token, or
    True for the saved login; fetch again even when cached); a local directory ignores them.
    A missing folder or hub id raises ModelPathError / ModelNotFoundError, both OSErrors as in
    transformers.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        candidate = path / subfolder / filename
        if candidate.is_file():
            return candidate
        if required:
            raise ModelPathError(f"{candidate}: file not found in model directory {path / subfolder}")
        return None
    if path.exists():
        raise ModelPathError(f"{name_or_path}: is a file, expected a model folder or hub id")
    if not is_hub_id(str(name_or_path)):
        raise ModelPathError(f"{name_or_path}: no such directory, and not a Hugging Face hub id (owner/name)")
    in_repo = f"{subfolder.strip('/')}/{filename}" if subfolder.strip("/") else filename
    try:
        import huggingface_hub
        from huggingface_hub import constants as hf_constants
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - huggingface_hub is a runtime dependency
        raise ModelNotFoundError(
            f"{name_or_path}: loading from the hub needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    if not local_files_only and not hf_constants.HF_HUB_OFFLINE:
        cached = None if force_download else huggingface_hub.try_to_load_from_cache(str(name_or_path), in_repo, cache_dir=cache_dir, revision=revision)
        if cached is None and hub_unreachable(str(name_or_path), in_repo, revision=revision, token=token):
            if not required:
                return None
            raise ModelNotFoundError(
                f"{name_or_path}: {in_repo} is not in the Hugging Face cache and the hub cannot be reached "
                f"({_UNREACHABLE[0]}); download it once on a connected machine, or pass a local model directory"
            )
    try:
        with hub_logging():
            local = huggingface_hub.hf_hub_download(
                repo_id=str(name_or_path),
                filename=filename,
                subfolder=subfolder.strip("/") or None,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                force_download=force_download,
            )
    except hf_errors.LocalEntryNotFoundError:
        # Offline (HF_HUB_OFFLINE=1, local_files_only, or no network) and not cached. When
        # probing for optional files, "not cached" is indistinguishable from "absent".
        if not required:
            return None
        raise ModelNotFoundError(
            f"{name_or_path}: {in_repo} is not in the Hugging Face cache and the hub cannot be "
            "reached (offline or HF_HUB_OFFLINE=1); download it once on a connected machine, or "
            "pass a local model directory"
        ) from None
    except hf_errors.EntryNotFoundError:
        if required:
            raise ModelNotFoundError(
                f"{name_or_path}: the hub repository has no file {in_repo}"
            ) from None
        return None
    except hf_errors.RevisionNotFoundError:
        raise ModelNotFoundError(f"{name_or_path}: revision {revision!r} not found on the hub") from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"{name_or_path}: no such model on the Hugging Face hub (or it is private)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{name_or_path}: could not fetch {in_repo}: {exc}") from None
    return Path(local)


def hub_unreachable(
    repo_id: str, filename: str, *, revision: str | None = None, repo_type: str | None = None, token: str | bool | None = None
) -> bool:
    """Whether a file that is not cached cannot be fetched because the hub cannot be reached
    (the reason is then `unreachable_reason()`). repo_type: None (a model) or "dataset".

    Why ask first: huggingface_hub retries a failed connection with back-off for about half a
    minute before giving up, printing each retry, when a download is the only way to the
    file. One request without retries tells an offline user at once; a hub that answers at
    all (even "no such repository") leaves the download and its error messages as they are.
    Remembered for the process: the next files of the same model are not asked again."""
    if _UNREACHABLE:
        return True
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    try:
        with hub_logging():
            url = huggingface_hub.hf_hub_url(repo_id, filename, revision=revision, repo_type=repo_type)
            # one request (retry_on_errors=False), answered in a few seconds unless the user
            # gave a slow link more time (HF_HUB_ETAG_TIMEOUT, huggingface_hub's own default 10 s)
            huggingface_hub.get_hf_file_metadata(url, token=token, timeout=float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or PROBE_TIMEOUT))
    except (hf_errors.HfHubHTTPError, hf_errors.EntryNotFoundError):
        return False  # it answered
    except Exception as exc:  # noqa: BLE001 - httpx's connection, timeout and TLS errors, OSError
        _UNREACHABLE.append(f"{type(exc).__name__}: {exc}")
        logger.debug("the Hugging Face hub cannot be reached: %s", _UNREACHABLE[0])
        return True
    return False


def unreachable_reason() -> str | None:
    """Why the hub could not be reached, once `hub_unreachable` found it so in this process."""
    return _UNREACHABLE[0] if _UNREACHABLE else None


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """huggingface_hub and datasets in offline mode (the cache only, no request, no retry) for
    the `with` block: for a call made after `hub_unreachable` said the hub does not answer.
    Their module constants are what HF_HUB_OFFLINE=1 sets at import; restored afterwards."""
    from huggingface_hub import constants as hf_constants

    targets = [hf_constants]
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        targets.append(datasets_config)
    saved = [(t, t.HF_HUB_OFFLINE) for t in targets]
    try:
        for t in targets:
            t.HF_HUB_OFFLINE = True
        yield
    finally:
        for t, value in saved:
            t.HF_HUB_OFFLINE = value


_HUB_LOGGERS = ("huggingface_hub", "datasets")


@contextlib.contextmanager
def hub_logging() -> Iterator[None]:
    """huggingface_hub's and datasets' log records through the application's logging only, for
    the `with` block. Both libraries give their root logger its own stderr handler and level at
    import, so each warning printed twice (once more through the root logger) and an
    application's -q could not silence it. Here they have no handler and no level of their own:
    the root logger's level and handlers decide, as for any library. Restored afterwards."""
    saved = []
    for name in _HUB_LOGGERS:
        lib = logging.getLogger(name)
        saved.append((lib, lib.level, list(lib.handlers), lib.propagate))
        lib.handlers = []
        lib.setLevel(logging.NOTSET)
        lib.propagate = True
    try:
        yield
    finally:
        for lib, level, handlers, propagate in saved:
            lib.handlers = handlers
            lib.setLevel(level)
            lib.propagate = propagate
