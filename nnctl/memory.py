"""How much memory training a config needs, and how much this process may still take.

A config the validator accepts can still be too large for the machine (784-65536-10 keeps
4096 x 65536 matrices for evaluation). Training is refused before any download or work when
the estimate exceeds what is available, with both figures, instead of dying in a MemoryError
minutes later. The estimate counts what nnctl allocates: parameters, their gradients and
optimizer slots, the z, a and delta matrices of a training batch and of an evaluation chunk,
and the images; Python and NumPy themselves are measured in the process's current size.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from nnctl.errors import NnctlError

TRAIN_IMAGES, TEST_IMAGES = 60000, 10000
EVAL_CHUNK = 4096  # rows per evaluation forward pass (trainer.evaluate)


class OutOfMemory(NnctlError):
    """The run would need more memory than the machine or its limits leave."""


@dataclass(frozen=True)
class Estimate:
    parameters: int
    workspaces: int
    data: int

    @property
    def total(self) -> int:
        return self.parameters + self.workspaces + self.data


def training_estimate(config) -> Estimate:
    """Bytes the run allocates, by kind."""
    t = config.training
    itemsize = 8 if t.dtype == "float64" else 4
    sizes = config.sizes
    count = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    o = t.optimizer
    slots = 2 if o.name == "adam" else (1 if o.momentum else 0)
    keeps_best = t.early_stopping.active or t.save_best
    copies = 2 + slots + (2 if keeps_best else 0)  # values, gradients, slots, best, last
    widths = sum(sizes[1:])
    rows = 2 * t.batch_size + EVAL_CHUNK + TEST_IMAGES % EVAL_CHUNK  # batches and chunks
    pixels = sizes[0]
    workspaces = 3 * widths * rows * itemsize + 2 * t.batch_size * pixels * itemsize
    _, held = config.data.sizes(TRAIN_IMAGES)
    scaled = (TEST_IMAGES + held) * pixels * itemsize
    data = (TRAIN_IMAGES + TEST_IMAGES) * pixels + scaled  # uint8 files, scaled splits
    return Estimate(count * itemsize * copies, workspaces, data)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def _address_space_available() -> int | None:
    """What RLIMIT_AS (ulimit -v) leaves beyond the process's current size."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return soft - int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return soft


def available_bytes() -> int | None:
    """The least of free memory, the cgroup's limit and the address-space limit (None when
    none can be read)."""
    figures = [f for f in (_meminfo_available(), _cgroup_available(),
                           _address_space_available()) if f is not None]
    return max(0, min(figures)) if figures else None


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(config, available: int | None = None) -> Estimate:
    """The estimate, or OutOfMemory when it exceeds what is available."""
    estimate = training_estimate(config)
    available = available_bytes() if available is None else available
    if os.environ.get("NNCTL_SKIP_MEMORY_CHECK") or available is None:
        return estimate
    if estimate.total > available:
        smaller = ", a smaller batch or float32" if config.training.dtype == "float64" else \
            " or a smaller batch"
        raise OutOfMemory(
            f"training {'-'.join(map(str, config.sizes))} needs about {gib(estimate.total)} "
            f"(parameters and optimizer {gib(estimate.parameters)}, batch and evaluation "
            f"matrices {gib(estimate.workspaces)}, images {gib(estimate.data)}), more than the "
            f"{gib(available)} available; use fewer units{smaller} (or set "
            "NNCTL_SKIP_MEMORY_CHECK=1 to try anyway)")
    return estimate
