"""benchmarks/startup.py: which command lines it times, and how (interleaved with the baseline)."""

from __future__ import annotations

from benchmarks import startup


def test_it_times_every_command_help_and_the_version():
    lines = startup.command_lines()
    assert lines[:2] == [("--help",), ("--version",)]
    for path in (("generate",), ("eval",), ("train",), ("train", "ner"), ("train", "re"), ("train", "qa"), ("data", "ner-from-pubtator"), ("convert",)):
        assert (*path, "--help") in lines


def test_runs_are_interleaved_with_the_baseline_and_the_ratio_is_to_it():
    calls: list[tuple[str, ...]] = []
    clock = {startup.BASELINE: (0.05, 0.04), ("-m", "biogpt", "--help"): (0.2, 0.16), ("-m", "biogpt", "--version"): (0.1, 0.12)}

    def run(argv):
        calls.append(tuple(argv))
        return clock[tuple(argv)]

    times = startup.measure(2, [("--help",), ("--version",)], run=run)
    one_round = [startup.BASELINE, ("-m", "biogpt", "--help"), ("-m", "biogpt", "--version")]
    assert calls == one_round * 3  # a warm-up round, then two measured
    assert times == {startup.BASELINE: [(0.05, 0.04)] * 2, ("--help",): [(0.2, 0.16)] * 2, ("--version",): [(0.1, 0.12)] * 2}
    rows = startup.table(times)
    assert rows[2] == "| `python -c pass` | 0.050 (0.050–0.050) | 1.0× | 0.040 | 1.0× |"
    assert rows[3] == "| `biogpt --help` | 0.200 (0.200–0.200) | 4.0× | 0.160 | 4.0× |"


def test_a_fresh_process_is_timed_with_its_cpu():
    wall, cpu = startup.seconds(("-c", "sum(range(3_000_000))"))
    assert wall > 0 and 0 < cpu <= wall * 2  # at most two cores busy
