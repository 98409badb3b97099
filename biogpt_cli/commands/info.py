"""`biogpt info`: what this machine offers (devices, dtypes) and which versions run, for bug
reports and for choosing --device / --dtype. Only reads: nothing is downloaded or loaded."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

import typer


def _version(dist: str) -> str | None:
    """The installed version without importing the package (transformers is not a dependency)."""
    from importlib import metadata  # here: its import costs every `biogpt --help` ~35 ms

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def hf_cache_dir() -> str:
    """Where Hugging Face hub downloads go, by the hub's documented environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.environ["HUGGINGFACE_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def collect() -> dict[str, Any]:
    import torch

    from .. import __version__
    from .._common import resolve_device

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    devices = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                            "capability": f"{props.major}.{props.minor}"})
    return {
        "biogpt-cli": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "default_device": str(resolve_device("auto")),
        "cuda": {"available": cuda, "version": torch.version.cuda, "devices": devices,
                 "bf16": bool(cuda and torch.cuda.is_bf16_supported())},
        "mps": {"available": mps},
        "cpu_threads": torch.get_num_threads(),
        "hf_cache": hf_cache_dir(),
        "hf_offline": os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"),
    }


def info(as_json: bool = typer.Option(False, "--json", help="Print as one JSON object.")) -> None:
    """Show devices, dtype support, versions and the Hugging Face cache location.

    Example: biogpt info --json
    """
    data = collect()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    cuda = data["cuda"]
    lines = [
        f"biogpt-cli    {data['biogpt-cli']}",
        f"python        {data['python']} ({data['platform']})",
        f"torch         {data['torch']}",
        f"transformers  {data['transformers'] or 'not installed (not needed)'}",
        f"device        {data['default_device']} (what --device auto picks)",
        f"cuda          {'yes, CUDA ' + str(cuda['version']) if cuda['available'] else 'no'}",
    ]
    for d in cuda["devices"]:
        lines.append(f"  cuda:{d['index']}      {d['name']}, {d['memory_gib']} GiB, compute {d['capability']}")
    lines += [
        "bfloat16      " + ("yes: --dtype auto uses bfloat16 on the GPU" if cuda["bf16"] else
                            "no: --dtype auto uses float16 on the GPU" if cuda["available"] else
                            "no GPU: --dtype auto uses float32 on CPU"),
        f"mps           {'yes' if data['mps']['available'] else 'no'}",
        f"cpu threads   {data['cpu_threads']}",
        f"hf cache      {data['hf_cache']}{' (offline)' if data['hf_offline'] else ''}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
