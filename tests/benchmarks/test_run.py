"""The GPU suite's memory column: each side's peak without the other side's model.

The accounting runs on allocator readings, so a fake allocator stands in for CUDA's here."""

from __future__ import annotations

import torch

from benchmarks import run


class FakeAllocator:
    """torch.cuda's four readings the suite uses, over explicit allocations."""

    def __init__(self) -> None:
        self.allocated = 0
        self.peak = 0

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int) -> None:
        self.allocated -= n

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: setattr(self, "peak", self.allocated))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: self.peak)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: self.allocated)


GIB = 2**30


def test_each_side_is_charged_its_own_weights_caches_and_work_not_the_other_sides(monkeypatch):
    mem = FakeAllocator()
    mem.install(monkeypatch)
    mem.alloc(5 * GIB)  # another row's models, still loaded: the base
    base = mem.allocated
    mem.alloc(3 * GIB)  # ours' weights
    mem.alloc(1 * GIB)  # ours' static cache (kept between calls)
    mem.alloc(2 * GIB)  # theirs' weights

    def ours() -> str:
        mem.alloc(GIB // 2)  # work buffers freed before it returns
        mem.free(GIB // 2)
        return "ours"

    def theirs() -> str:
        mem.alloc(GIB)  # its dynamic cache, freed at the end of generate
        mem.free(GIB)
        return "theirs"

    (mine, out_ours), (their, out_theirs) = run.side_peaks(ours, theirs, base=base, theirs_held=2 * GIB)
    assert (out_ours, out_theirs) == ("ours", "theirs")
    assert mine == 3 + 1 + 0.5
    assert their == 2 + 1


def test_held_bytes_counts_parameters_gradients_buffers_and_optimizer_state_once():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    model.register_buffer("table", torch.zeros(5))
    model[1].weight = model[0].bias  # a tied parameter: one storage
    params = 4 * 3 + 3 + 3  # weight, bias (tied to the norm's weight), norm's bias
    assert run.held_bytes(model, device_type="cpu") == (params + 5) * 4
    assert run.held_bytes(model) == 0  # nothing on the GPU

    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    with_grads = run.held_bytes(model, device_type="cpu")
    assert with_grads == (2 * params + 5) * 4
    # two moments a parameter, and a step count each
    state = run.held_bytes(opt, device_type="cpu")
    assert state == 2 * params * 4 + sum(s["step"].untyped_storage().nbytes() for s in opt.state.values())



def test_a_tables_command_line_says_which_parts_and_budget_it_ran_with():
    parse = run.build_parser().parse_args
    assert run.command_line(parse(["--suite", "gpu"])) == "python -m benchmarks.run --suite gpu"
    assert run.command_line(parse(["--suite", "gpu", "--only", "b1,large", "--budget", "185"])) == (
        "python -m benchmarks.run --suite gpu --only b1,large --budget 185"
    )
    assert run.command_line(parse(["--repeats", "5", "--quick"])) == "python -m benchmarks.run --suite cpu --repeats 5 --quick"
