"""Process tuning applied once at start-up by every rsatalker entry point.

The CLI (:func:`rsatalker_core.cli.main`), every ROS node's ``main()``, the composed
bringup and the benchmarks call :func:`tune_process` before any heavy work. It sets:

* **glibc allocator** (``mallopt``): ``M_MMAP_MAX = 0`` and a large ``M_TRIM_THRESHOLD``,
  the same as the environment variables ``MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=...``. The CPU rasterizer and the motion model allocate large
  temporaries (tens of MB) every frame; glibc would serve each with a fresh ``mmap`` and
  return it on free, so every frame page-faults its temporaries in again (measured on a
  2-core machine: 180k vs 25k minor faults per rendered frame, 4x slower rendering).
  Freed memory is kept in the heap for reuse instead. On a non-glibc C library this is a
  no-op (logged at debug level).
* **torch intra-op threads**: ``runtime.torch_threads`` (0 = auto: one thread on machines
  with 2 or fewer usable cores, where intra-op threads compete with the process's other
  threads and with other processes and stall 4-30x; torch's own default otherwise, or
  whatever ``OMP_NUM_THREADS`` asks for when it is set).
* **Python's thread switch interval** (``sys.setswitchinterval``): the CPU rasterizer and
  the motion model issue many small torch calls; with Python's default 5 ms a thread that
  waits for the GIL (the motion node beside the render node in the composed bringup) loses
  up to 5 ms at each, and falls behind real time.

Example:
    >>> from rsatalker_core.runtime import tune_process
    >>> applied = tune_process()          # defaults: auto threads, allocator, 0.5 ms
    >>> applied.torch_threads >= 1
    True
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from dataclasses import dataclass
from typing import Optional

from rsatalker_core.config import RuntimeConfig
from rsatalker_core.errors import ConfigError

log = logging.getLogger(__name__)

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Largest value ``mallopt`` takes (a C ``int``): keep up to 2 GiB of freed heap top.
TRIM_THRESHOLD_BYTES = 2**31 - 1
#: Machines with at most this many usable cores get one torch thread in auto mode.
SMALL_MACHINE_CORES = 2


@dataclass(frozen=True)
class AppliedRuntime:
    """What :func:`tune_process` did.

    Attributes:
        torch_threads: torch's intra-op thread count afterwards.
        allocator_tuned: ``mallopt`` succeeded for both settings (False on non-glibc or
            when disabled).
        switch_interval: ``sys.getswitchinterval()`` afterwards, seconds.
        cores: usable cores of the process (CPU affinity).
    """

    torch_threads: int
    allocator_tuned: bool
    switch_interval: float
    cores: int


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_torch_threads(cores: Optional[int] = None) -> int:
    """Thread count for ``torch_threads = 0``: 1 on small machines, else 0 (keep torch's).

    Args:
        cores: usable cores; default :func:`usable_cores`.

    Returns:
        1 when ``cores <= 2`` and ``OMP_NUM_THREADS`` is unset; 0 (= leave torch's default,
        which honours ``OMP_NUM_THREADS``) otherwise.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return 0
    cores = usable_cores() if cores is None else cores
    return 1 if cores <= SMALL_MACHINE_CORES else 0


def tune_allocator() -> bool:
    """Apply ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``.

    Returns:
        True when both calls succeeded; False (debug log) on a C library without glibc's
        ``mallopt`` (musl, macOS, Windows).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("allocator tuning skipped: not glibc (%s %s)", platform.system(), platform.libc_ver())
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        log.debug("allocator tuning skipped: no mallopt (%s)", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not ok:
        log.debug("allocator tuning: mallopt refused a setting")
    return ok


def tune_process(cfg: Optional[RuntimeConfig] = None) -> AppliedRuntime:
    """Apply ``cfg`` (default :class:`~rsatalker_core.config.RuntimeConfig`) to this process; safe to call again.

    Call it at start-up, before models are built: torch's thread count is best set before
    the first parallel operation.

    Raises:
        ConfigError: ``torch_threads < 0`` or ``gil_switch_interval < 0``.
    """
    cfg = cfg or RuntimeConfig()
    if cfg.torch_threads < 0:
        raise ConfigError(f"runtime.torch_threads must be >= 0 (0 = auto), got {cfg.torch_threads}")
    if cfg.gil_switch_interval < 0:
        raise ConfigError(f"runtime.gil_switch_interval must be >= 0 s, got {cfg.gil_switch_interval}")
    cores = usable_cores()
    allocator = tune_allocator() if cfg.tune_allocator else False
    if cfg.gil_switch_interval > 0:
        sys.setswitchinterval(cfg.gil_switch_interval)
    import torch

    threads = cfg.torch_threads or auto_torch_threads(cores)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    applied = AppliedRuntime(
        torch_threads=torch.get_num_threads(),
        allocator_tuned=allocator,
        switch_interval=sys.getswitchinterval(),
        cores=cores,
    )
    log.debug("process tuning: %s", applied)
    return applied
