"""How many threads training computes on, and the BLAS held to one thread inside them.

The policy: during training the BLAS (NumPy's OpenBLAS) runs single-threaded, limited with
threadpoolctl, and nnctl cuts its large products into blocks that depend on the product's
shape alone (nnctl/blas.py) and runs them on up to N threads of its own
(nnctl/parallel.py). Two reasons:

- Reproducible: every block is one single-threaded GEMM over the whole inner dimension,
  whichever thread runs it, so the weights are bit for bit the same with 1, 2 or N
  threads. OpenBLAS's own threads split some products differently from its single thread
  (a 64 x 784 by 784 x 128 product differs in the last bits between 1 and 2 threads).
- No collapse on a busy machine: OpenBLAS's workers spin waiting for each other, and when
  one is descheduled the product waits a time slice; on this project's 2-core machine
  with other processes running, an epoch took 15-30 times longer with its two threads
  than with one. nnctl's helpers sleep when idle, the caller never waits for a helper
  that has not started, and a kind of product runs on the caller alone while that has
  been measured faster (docs/performance.md has the figures).

N is, in order: `--threads` or the config's `training.threads`, else the environment
variable NNCTL_THREADS, else auto (the CPUs this process may run on, at most MAX_AUTO);
never more than a cap set with `limit` (for processes that run several trainings at once).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Iterator, TypeVar, Union

from nnctl import parallel
from nnctl.errors import UsageError

ENV = "NNCTL_THREADS"
AUTO = "auto"
MAX_AUTO = 8  # the most blocks a product is cut into (blas.BLOCKS_MAX)
MAX_THREADS = 256

Threads = Union[int, str, None]  # a count, "auto", or None: not set here
F = TypeVar("F", bound=Callable)

_cap: int | None = None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parse(value: object, where: str) -> int | str:
    """A thread count or 'auto' from a config value, an option or the environment."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS:
        return value
    raise UsageError(f"{where}: expected a number of threads from 1 to {MAX_THREADS} or "
                     f"'auto', got {value!r}")


def resolve(requested: Threads = None) -> int:
    """The number of threads to train with: `requested` (an option or the config), else
    NNCTL_THREADS, else auto; at most the cap `limit` set."""
    if requested is None:
        env = os.environ.get(ENV, "").strip()
        requested = parse(env, ENV) if env else AUTO
    else:
        requested = parse(requested, "threads")
    count = min(available_cpus(), MAX_AUTO) if requested == AUTO else int(requested)
    return min(count, _cap) if _cap is not None else count


def source(requested: Threads = None) -> str:
    """Where the thread count comes from, for the model summary."""
    if requested is not None:
        return "auto" if parse(requested, "threads") == AUTO else "set"
    if os.environ.get(ENV, "").strip():
        return ENV
    return "auto"


def describe(requested: Threads = None) -> str:
    """'threads 2 (auto)': what training will use, and why, in a few words."""
    count = resolve(requested)
    why = source(requested)
    if _cap is not None and count == _cap:
        why += f", capped at {_cap}"
    return f"threads {count} ({why})"


@contextlib.contextmanager
def using(count: int) -> Iterator[int]:
    """Within the block, the BLAS runs on one thread and nnctl's products on `count`;
    both are put back as they were afterwards."""
    from threadpoolctl import threadpool_limits

    before = parallel.workers()
    parallel.set_workers(count)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield count
    finally:
        parallel.set_workers(before)


def limit(count: int) -> None:
    """From now on this process computes on at most `count` threads: training in it, and
    the BLAS for anything else. For worker processes that each run a training (J workers
    on a machine of C cores: count = max(1, C // J))."""
    from threadpoolctl import threadpool_limits

    global _cap
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a thread limit is a whole number of 1 or more, got {count!r}")
    _cap = count
    threadpool_limits(limits=_cap, user_api="blas")
    if parallel.workers() > _cap:
        parallel.set_workers(_cap)


def applied(function: F) -> F:
    """Run `function` under the policy, with the threads its `threads` keyword asks for
    (None or absent: NNCTL_THREADS, else auto)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        with using(resolve(kwargs.get("threads"))):
            return function(*args, **kwargs)

    return run  # type: ignore[return-value]
