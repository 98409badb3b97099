"""Start-up time of the command line: `biogpt --help`, `biogpt --version` and every
`biogpt COMMAND --help`, each in a fresh process, against `python -c pass` (the interpreter's own
start) measured in the same run, interleaved (pass, then every command line, repeated).

    python -m benchmarks.startup [--repeats 10] [--markdown FILE]

None of these command lines may import torch (tests/test_package.py checks their imports); the
target is under 0.3 s each on the 2-core development machine. Seconds move with the machine's
load, so read them with the ratio to `python -c pass` of the same run: that ratio is what the
CLI's own imports and help rendering add to a bare interpreter, and with the CPU time of each
process (user + system), which another job on the machine hardly moves. No time is asserted
anywhere.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ("-c", "pass")


def command_lines() -> list[tuple[str, ...]]:
    """`--help`, `--version` and `PATH --help` for every command and group of the app."""
    from typer.main import get_command

    from biogpt.main import app

    def walk(cmd, prefix: tuple[str, ...] = ()):
        for name, sub in getattr(cmd, "commands", {}).items():
            yield prefix + (name,)
            yield from walk(sub, prefix + (name,))

    return [("--help",), ("--version",), *[(*path, "--help") for path in walk(get_command(app))]]


def seconds(argv: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `python ARGV` in a fresh process, output discarded; CPU is the
    child's user + system time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


Times = dict[tuple[str, ...], list[tuple[float, float]]]


def measure(repeats: int, lines: Sequence[tuple[str, ...]], run: Callable[[Sequence[str]], tuple[float, float]] = seconds) -> Times:
    """(wall, CPU) seconds of each command line (`biogpt` arguments) and of the baseline (key
    `BASELINE`), `repeats` rounds, interleaved so that a change in the machine's load touches
    them alike."""
    times: Times = {BASELINE: [], **{line: [] for line in lines}}
    for argv in (BASELINE, *[("-m", "biogpt", *line) for line in lines]):  # warm the file cache
        run(argv)
    for _ in range(repeats):
        times[BASELINE].append(run(BASELINE))
        for line in lines:
            times[line].append(run(("-m", "biogpt", *line)))
    return times


def wall(times: Times, line: tuple[str, ...]) -> list[float]:
    return [w for w, _ in times[line]]


def table(times: Times) -> list[str]:
    def median(line: tuple[str, ...], i: int) -> float:
        return statistics.median(t[i] for t in times[line])

    rows = ["| command line | wall s: median (min–max) | ÷ `python -c pass` | CPU s (user+sys): median | ÷ `python -c pass` |",
            "|---|---|---|---|---|"]
    for line in times:
        name = "`python -c pass`" if line == BASELINE else f"`biogpt {' '.join(line)}`"
        xs = wall(times, line)
        rows.append(f"| {name} | {median(line, 0):.3f} ({min(xs):.3f}–{max(xs):.3f}) | {median(line, 0) / median(BASELINE, 0):.1f}× "
                    f"| {median(line, 1):.3f} | {median(line, 1) / median(BASELINE, 1):.1f}× |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--markdown", type=Path, help="write the table to this file (replacing it)")
    args = parser.parse_args(argv)
    times = measure(args.repeats, command_lines())
    slowest = max((line for line in times if line != BASELINE), key=lambda line: statistics.median(wall(times, line)))
    lines = [
        f"Command: `python -m benchmarks.startup{'' if args.repeats == 10 else f' --repeats {args.repeats}'}`",
        "",
        *table(times),
        "",
        f"- slowest: `biogpt {' '.join(slowest)}`, median {statistics.median(wall(times, slowest)):.3f} s wall (target: under 0.3 s).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
