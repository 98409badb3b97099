"""One seeding rule for every training run: what `--seed` (and `--deterministic`) promise.

Why a module of its own: the random draws of a run happen in two places, the model's build (a
new head such as `score`, a model from scratch, the rows of learned prompt tokens) and the
training loop (dropout). Both must follow from the seed, so every `biogpt train` command seeds
here once, before any model is built or loaded, and the `Trainer` seeds again (same function)
when its loop starts, so that the loop's draws do not depend on how many numbers the build took
and a library user's own model gets the same guarantee. The data order has its own generator
(`Trainer.epoch_order`, seeded with `seed + epoch`), untouched by either.

What it guarantees:
- CPU: two runs with the same seed, data, options and thread count give bit-identical weights.
- CUDA: the same only with `deterministic=True` (`--deterministic`), which asks torch for
  deterministic kernels (`torch.use_deterministic_algorithms`, cuBLAS's fixed workspace, cuDNN
  without autotuning); an operation that has no deterministic kernel then raises instead of
  silently differing. Without it, GPU runs agree only within float rounding (atomics in the
  backward of embeddings and attention sum in varying order).
- torchrun: every rank seeds alike, so every rank builds the same new head; DDP averages the
  gradients, so with dropout 0 and fixed-size batches a run equals one process at the same
  global batch within float rounding (not bit for bit: the all-reduce sums in another order).
  The exception is every `k_proj.bias`: its gradient is zero in exact arithmetic (softmax ignores
  a constant added to all of a query's scores), so both runs compute rounding noise for it, and
  Adam divides that noise by its own size: it moves by about ±lr per step in either run, in
  directions set by the order of the sums (tests/cli/test_seed.py, tests/cli/test_ddp.py).
"""

from __future__ import annotations

import os
import random
import sys

import torch

# cuBLAS is deterministic only with a fixed workspace (CUDA >= 10.2); the variable must be set
# before cuBLAS makes its first handle, so it is set here, before the model reaches the GPU
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python's `random`, torch (CPU and every CUDA device) and numpy's global generator
    (only where something already imported numpy: seeding must not import it); with
    `deterministic`, also switch torch to deterministic algorithms (see the module docstring)."""
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)  # numpy's seeds are 32-bit
    if deterministic:
        use_deterministic_algorithms()


def use_deterministic_algorithms() -> None:
    """Deterministic kernels for the rest of the process (there is no scope to leave: a run is
    one process)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # autotuning picks kernels by timing: not repeatable
    torch.backends.cudnn.deterministic = True
