"""Independent blocks of work run on the calling thread and a few helper threads.

    set_workers(n)          the caller and n - 1 helper threads run blocks from now on
    run(work, count, key)   work(0), ..., work(count - 1), each exactly once; returns when
                            all are done

The work is meant to be a C call that releases the GIL (a single-threaded BLAS product on
a block of rows), or a shard of a batch whose NumPy calls do (nnctl/shards.py). The caller
posts the job, wakes the helpers and takes blocks itself, one after another; a helper that wakes takes the next block not yet taken. Nobody waits for a
helper that has not started: when the machine is busy and a helper is not scheduled in
time, the caller does the blocks itself. An idle helper sleeps on a lock, it never spins,
so it takes no CPU from anyone. Which thread computes a block changes nothing in the
block's result.

What can still go wrong on a busy machine is a helper descheduled in the middle of its
block, which makes the caller wait for it. So calls of one kind (`key`: a product's shape)
are timed, and run on the caller alone while that has lately been faster (_Chooser).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from typing import Callable, Hashable, Iterator

WINDOW = 16  # calls per timed window
GAP_FIRST = 4  # windows in the starting mode (shared) before the first try of the other
GAP_MAX = 64  # most windows in one mode between two tries of the other

_pool: _Helpers | None = None
_pool_lock = threading.Lock()
_adaptive = True
_choosers: dict[tuple[int, Hashable], _Chooser] = {}  # by (helpers, kind of call)
_inside = threading.local()  # .active: this thread is running a block of a shared job


class _Job:
    """One call of run: the blocks not yet taken, and which helpers are still in it."""

    __slots__ = ("work", "count", "taken", "lock", "closed", "busy", "finished", "error")

    def __init__(self, work: Callable[[int], None], count: int):
        self.work, self.count = work, count
        self.taken = itertools.count()  # its next() is atomic under the GIL
        self.lock = threading.Lock()
        self.closed = False  # set by the caller once it has run out of blocks to take
        self.busy = 0  # helpers inside the job
        self.finished = threading.Lock()
        self.finished.acquire()  # released by the last helper to leave a closed job
        self.error: BaseException | None = None

    def take_all(self) -> None:
        _inside.active = True
        try:
            for index in self.taken:
                if index >= self.count:
                    return
                self.work(index)
        finally:
            _inside.active = False

    def help(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.busy += 1
        try:
            self.take_all()
        except BaseException as error:  # handed to the caller, which raises it
            self.error = error
        finally:
            with self.lock:
                self.busy -= 1
                last = self.closed and not self.busy
            if last:
                self.finished.release()

    def close_and_wait(self) -> None:
        with self.lock:
            self.closed = True
            busy = self.busy
        if busy:
            self.finished.acquire()
        if self.error is not None:
            raise self.error


class _Helpers:
    """Daemon threads that sleep until a job is posted, then take blocks of it."""

    def __init__(self, count: int):
        self.count = count
        self.job: _Job | None = None
        self.stopped = False
        self.wake = [threading.Lock() for _ in range(count)]
        for lock in self.wake:
            lock.acquire()
        for index, lock in enumerate(self.wake):
            threading.Thread(target=self._loop, args=(lock,), daemon=True,
                             name=f"nnctl-helper-{index}").start()

    def _loop(self, wake: threading.Lock) -> None:
        while True:
            wake.acquire()
            if self.stopped:
                return
            job = self.job
            if job is not None:
                job.help()

    def _rouse(self, locks: list[threading.Lock]) -> None:
        for lock in locks:
            try:
                lock.release()
            except RuntimeError:  # already released: the helper has not taken the last call
                pass

    def post(self, job: _Job) -> None:
        self.job = job
        self._rouse(self.wake[:job.count - 1])

    def stop(self) -> None:
        self.stopped, self.job = True, None
        self._rouse(self.wake)


class _Chooser:
    """Shared (helpers take blocks) or solo (the caller does them all), whichever has been
    faster lately, for one kind of call.

    Calls are timed in windows of WINDOW; after `gap` windows in the current mode (GAP_FIRST
    at the start), one window runs in the other, and the faster of the two latest windows
    becomes the mode. A try that confirms the mode doubles the gap (up to GAP_MAX windows),
    a switch sets it back to 1. A chooser lives as long as the process, for one thread
    count, so a second training starts from what the first learned. On an idle machine
    shared wins and solo costs one window in GAP_MAX + 1; on a busy one, where a helper
    preempted in the middle of its block makes every shared call wait for it, solo wins,
    and shared is tried now and then, so the helpers come back when the machine quietens.
    The mode changes the time a call takes, never its result."""

    __slots__ = ("shared", "trying", "latest", "calls", "seconds", "gap", "windows", "counts")

    def __init__(self):
        self.shared, self.trying = True, False
        self.counts = [0, 0]  # calls run solo, shared
        self.latest = {True: math.inf, False: math.inf}  # each mode's latest window mean
        self.calls, self.seconds = 0, 0.0
        self.gap, self.windows = GAP_FIRST, 0

    def shared_now(self) -> bool:
        return self.shared != self.trying

    def record(self, seconds: float) -> None:
        self.counts[self.shared_now()] += 1
        self.calls += 1
        self.seconds += seconds
        if self.calls < WINDOW:
            return
        mode = self.shared_now()
        self.latest[mode] = self.seconds / self.calls
        self.calls, self.seconds = 0, 0.0
        if not self.trying:
            self.windows += 1
            self.trying = self.windows >= self.gap
            return
        self.trying, self.windows = False, 0
        if self.latest[mode] < self.latest[self.shared]:
            self.shared, self.gap = mode, 1
        else:
            self.gap = min(2 * self.gap, GAP_MAX)


def set_workers(count: int) -> None:
    """Run blocks on `count` threads in all: the caller and count - 1 helpers."""
    global _pool
    if count < 1:
        raise ValueError(f"need at least one thread, got {count}")
    with _pool_lock:
        if workers() == count:
            return
        if _pool is not None:
            _pool.stop()
        _pool = _Helpers(count - 1) if count > 1 else None


def workers() -> int:
    """How many threads run blocks: the caller and its helpers."""
    pool = _pool
    return 1 + (pool.count if pool is not None else 0)


def set_adaptive(flag: bool) -> None:
    """With False, the helpers take part in every call, however slow that is (for tests
    and measurements of the shared route); True is the default."""
    global _adaptive
    _adaptive = bool(flag)
    _choosers.clear()


def shared_share() -> float | None:
    """The share of timed calls that ran shared at this thread count, or None."""
    mine = [c for (helpers, _), c in _choosers.items() if helpers == workers() - 1]
    total = sum(c.counts[0] + c.counts[1] for c in mine)
    return sum(c.counts[1] for c in mine) / total if total else None


def chooser(key: Hashable) -> _Chooser | None:
    """The timing that decides between shared and solo for calls of kind `key`, for work
    shared by other means than these helpers (nnctl/shardworker.py); None with one thread,
    or with adaptation off (then share every call)."""
    pool = _pool
    if pool is None or not _adaptive:
        return None
    found = _choosers.get((pool.count, key))
    if found is None:
        found = _choosers[pool.count, key] = _Chooser()
    return found


@contextlib.contextmanager
def on_this_thread() -> Iterator[None]:
    """Within the block, run() does every block on the calling thread, as inside a block
    of a shared job: for work that has the other cores busy by other means."""
    before = getattr(_inside, "active", False)
    _inside.active = True
    try:
        yield
    finally:
        _inside.active = before


def forget_helpers() -> None:
    """In a child process just forked: the helper threads were not copied, so run() does
    every block on the calling thread from now on."""
    global _pool
    _pool = None
    _choosers.clear()


def run(work: Callable[[int], None], count: int, key: Hashable = None) -> None:
    """work(0), ..., work(count - 1), each once, on the caller and any free helpers.

    Calls with the same `key` (say, a product's shape) are timed, and run on the caller
    alone while that has lately been faster; without a key, helpers always take part."""
    pool = None if getattr(_inside, "active", False) else _pool  # a block's own run: solo
    chooser = None
    if pool is not None and count > 1 and key is not None and _adaptive:
        chooser = _choosers.get((pool.count, key))
        if chooser is None:
            chooser = _choosers[pool.count, key] = _Chooser()
    shared = pool is not None and count > 1 and (chooser is None or chooser.shared_now())
    started = time.perf_counter()
    if shared:
        job = _Job(work, count)
        pool.post(job)
        try:
            job.take_all()
        finally:
            job.close_and_wait()
    else:
        for index in range(count):
            work(index)
    if chooser is not None:
        chooser.record(time.perf_counter() - started)
