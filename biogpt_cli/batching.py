"""Throughput helpers shared by the batch commands: length-sorted batches (less padding, so
less wasted compute) or windows for continuous batching, with results restored to input order;
token-budget batches; --limit."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Prepared:
    """An input item (a Record, or a task Example) with its model input's token ids."""

    item: Any
    input_ids: list[int]


def plan_batches(
    lengths: list[int], *, batch_size: int, max_tokens: int | None
) -> list[list[int]]:
    """Indices into `lengths`, sorted by length, cut into batches of at most `batch_size` items
    and (when given) at most `max_tokens` padded tokens (longest × count)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        new_longest = max(longest, n)
        too_many = len(current) >= batch_size
        too_big = max_tokens is not None and current and new_longest * (len(current) + 1) > max_tokens
        if current and (too_many or too_big):
            batches.append(current)
            current, new_longest = [], n
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


class Ordered(Generic[R]):
    """Releases (index, value) pairs strictly in index order as soon as they are contiguous."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, R]] = []
        self._next = 0
        self._tie = itertools.count()

    def add(self, index: int, value: R) -> Iterator[R]:
        heapq.heappush(self._heap, (index, next(self._tie), value))
        while self._heap and self._heap[0][0] == self._next:
            _, _, v = heapq.heappop(self._heap)
            self._next += 1
            yield v


def run_in_batches(
    items: Iterable[T],
    process: Callable[[list[T]], list[R]],
    *,
    length: Callable[[T], int],
    passthrough: Callable[[T], R | None],
    batch_size: int,
    max_tokens: int | None = None,
    window: int | None = None,
) -> Iterator[R]:
    """Process `items` in length-sorted batches and yield the results in input order.

    `passthrough(item)` returns a ready result for items that need no processing (bad records),
    else None. Sorting happens within a window of upcoming items, so output keeps streaming.
    """
    window = window or window_size(batch_size)

    def process_window(chunk: list[T]) -> Iterator[tuple[int, R]]:
        lengths = [length(item) for item in chunk]
        for batch in plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens):
            yield from zip(batch, process([chunk[i] for i in batch]))

    yield from run_windows(items, process_window, passthrough=passthrough, window=window)


def window_size(batch_size: int) -> int:
    """How many upcoming items are sorted (or fed to continuous batching) at a time: enough to
    group similar lengths, few enough that the first results stream out soon."""
    return max(batch_size * 32, 256)


def run_windows(
    items: Iterable[T],
    process: Callable[[list[T]], Iterable[tuple[int, R]]],
    *,
    passthrough: Callable[[T], R | None],
    window: int,
) -> Iterator[R]:
    """Process `items` a window at a time and yield the results in input order, each as soon as
    the ones before it are out. `process(window)` returns (position in the window, result) in
    any order (continuous batching finishes short outputs first); `passthrough` as in
    `run_in_batches`."""
    ordered: Ordered[R] = Ordered()
    buffer: list[tuple[int, T]] = []

    def flush() -> Iterator[R]:
        for position, result in process([item for _, item in buffer]):
            yield from ordered.add(buffer[position][0], result)
        buffer.clear()

    for index, item in enumerate(items):
        ready = passthrough(item)
        if ready is not None:
            yield from ordered.add(index, ready)
            continue
        buffer.append((index, item))
        if len(buffer) >= window:
            yield from flush()
    if buffer:
        yield from flush()


def limited(items: Iterable[T], limit: int | None) -> Iterator[T]:
    return iter(items) if not limit else itertools.islice(items, limit)
