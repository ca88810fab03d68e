"""A forked process that runs one shard of each training batch, beside the caller's shard.

Two shards in two threads of one interpreter take turns at its lock (the GIL) around every
NumPy call, and a shard of LeNet-5 makes a few hundred small ones: alone, a 32-row pass took
3.4-3.6 ms; beside the other shard in a second thread, 4.9-5.2 ms; beside it in a second
process, 3.5-3.6 ms (docs/convolution.md, "Shards in a worker process"). So where fork is safe for this (Linux), a shard
other than the caller's runs in a worker process forked from the training process, which
then holds the network, its replica and the loss already.

What the two share lives in anonymous shared memory, mapped before the fork:
- the replica's parameter values, a mirror the caller refreshes before every batch;
- the replica's gradients, which the caller sums with its own shard's;
- the shard's inputs and targets, and its output rows.
Small messages go over a socket pair: a pass to start (rows, loss, seed of its dropout
generator, gradient scale), the sums a batch-norm layer yields and is sent back, the loss.

The worker computes exactly what a replica in the caller would, so a batch's result does not
depend on where its shards ran. If the worker fails, dies or stops answering in time, the
caller runs that shard itself from the start, sends it the sums it had sent the worker, and
goes on without a worker (shards.py). A worker that has never answered is given up after
FIRST_ANSWER seconds; once it has, the caller waits for it as it would for a thread.

The child never returns into the caller's code: it serves until its socket closes, then
leaves with os._exit. It ignores Ctrl-C (the caller handles it and closes the socket), and
the kernel kills it if the thread that forked it ends (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import signal
import sys
import warnings
import weakref
from multiprocessing.connection import Connection, Pipe
from typing import TYPE_CHECKING

import numpy as np

from nnctl import parallel

if TYPE_CHECKING:
    from nnctl.losses import Loss
    from nnctl.network import Network

Array = np.ndarray
_PR_SET_PDEATHSIG = 1
FIRST_ANSWER = 60.0  # seconds: a child stuck from its start (a lock held at the fork) is given up
_live: weakref.WeakSet[ShardWorker] = weakref.WeakSet()  # closed in every newer child


def available() -> bool:
    """Whether shards may run in forked processes here: Linux only. (macOS's system
    libraries, Accelerate among them, are not safe to use in a child forked from a process
    that has used them; Windows has no fork.)"""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def shared(shape: tuple[int, ...], dtype) -> Array:
    """A zeroed array in anonymous shared memory: a child forked after this sees the same
    memory, and every write from either side."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    region = mmap.mmap(-1, max(count * dtype.itemsize, 1))  # MAP_SHARED | MAP_ANONYMOUS
    return np.frombuffer(region, dtype, count).reshape(shape)


class WorkerLost(Exception):
    """The worker failed, died or never answered: its shard is run by the caller."""


class ShardWorker:
    """A child process running `replica`'s passes on shards of up to `rows` rows of
    inputs like `x` and targets like `y`."""

    def __init__(self, network: Network, rows: int, x: Array, y: Array):
        replica = network.replica(lead=False)
        self.sources = [p.value for p in network.params]
        for p in replica.params:  # values mirrored, gradients shared, all before the fork
            p.value = shared(p.value.shape, p.value.dtype)
            p.grad = shared(p.grad.shape, p.grad.dtype)
        self.replica, self.rows = replica, rows
        self.x = shared((rows,) + x.shape[1:], x.dtype)
        self.y = shared((rows,) + y.shape[1:], y.dtype)
        self.output = shared((rows, network.sizes[-1]), network.dtype)
        self.conn, child = Pipe(duplex=True)
        caller = os.getpid()
        self.pid = _fork()
        if self.pid == 0:
            self.conn.close()
            _serve_and_exit(caller, child, replica, self.x, self.y, self.output)
        child.close()
        self._rows, self._answered = 0, False
        _live.add(self)
        self._finalizer = weakref.finalize(self, _stop, self.conn, self.pid)

    def fits(self, x: Array, y: Array) -> bool:
        """Whether a shard of these inputs and targets fits the shared buffers."""
        return (len(x) <= self.rows and x.shape[1:] == self.x.shape[1:] and x.dtype == self.x.dtype
                and y.shape[1:] == self.y.shape[1:] and y.dtype == self.y.dtype)

    def start(self, x: Array, y: Array, loss: Loss, want_loss: bool, seed: int | None,
              grad_scale: float) -> None:
        """Hand the worker a shard: the current parameters, its rows, and what to do."""
        for mirror, source in zip(self.replica.params, self.sources):
            np.copyto(mirror.value, source)
        rows = self._rows = len(x)
        self.x[:rows], self.y[:rows] = x, y
        self._send(("pass", rows, loss, want_loss, seed, grad_scale))

    def send(self, sums: tuple) -> None:
        """The batch's sums, for the step the worker's pass is waiting at."""
        self._send(("sums", sums))

    def receive(self) -> tuple[bool, object]:
        """(False, the sums the pass yields) or (True, (loss, output rows)) when it ends."""
        try:
            if not self._answered and not self.conn.poll(FIRST_ANSWER):
                raise WorkerLost(f"the shard worker did not answer in {FIRST_ANSWER} s")
            kind, value = self.conn.recv()
            self._answered = True
        except (EOFError, OSError) as error:
            raise WorkerLost(f"the shard worker stopped ({error or 'connection closed'})")
        if kind == "sums":
            return False, value
        if kind == "done":
            return True, (value, self.output[:self._rows])
        raise WorkerLost(f"the shard worker failed: {value}")

    def _send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except OSError as error:
            raise WorkerLost(f"the shard worker stopped ({error})")

    @property
    def grads(self) -> list[Array]:
        return [p.grad for p in self.replica.params]

    def stop(self) -> None:
        """End the child now (it may be in the middle of a pass)."""
        self._finalizer()


def _fork() -> int:
    # Python 3.12+ warns of fork in a process with threads (nnctl's helpers, a progress
    # display): a lock one of them held at the fork stays held in the child. The child
    # takes none of theirs: it runs NumPy on its own arrays and reads its socket.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return os.fork()


def _stop(conn: Connection, pid: int) -> None:
    conn.close()
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _serve_and_exit(caller: int, conn: Connection, replica: Network, x: Array, y: Array,
                    output: Array) -> None:
    """The child: run passes as the caller asks, until its socket closes; never return."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != caller:  # the caller ended before prctl took effect
            os._exit(0)
        for worker in list(_live):  # other workers are the caller's to end, and each
            worker._finalizer.detach()  # must see the caller close its socket
            worker.conn.close()
        # Temporaries go by reference counts; a collection would only walk (and so copy)
        # the caller's pages, and could run the caller's finalizers.
        gc.disable()
        parallel.forget_helpers()
        _serve(conn, replica, x, y, output)
    except BaseException:  # noqa: BLE001 - the child must not unwind into the caller's code
        code = 1
    finally:
        os._exit(code)


def _serve(conn: Connection, replica: Network, x: Array, y: Array, output: Array) -> None:
    steps, rows = None, 0
    while True:
        try:
            kind, *message = conn.recv()
        except EOFError:
            return
        try:
            if kind == "pass":
                rows, loss, want_loss, seed, scale = message
                generator = None if seed is None else np.random.default_rng(seed)
                steps = replica.backprop_steps(x[:rows], y[:rows], loss, want_loss, generator,
                                               scale, factored=False)
                reply = ("sums", steps.send(None))
            else:
                reply = ("sums", steps.send(message[0]))
        except StopIteration as finished:
            value, out = finished.value
            output[:rows] = out
            reply = ("done", value)
        except Exception as error:  # noqa: BLE001 - reported; the caller reruns the shard
            reply = ("failed", f"{type(error).__name__}: {error}")
        conn.send(reply)
