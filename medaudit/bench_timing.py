"""Timing and memory primitives for :mod:`medaudit.bench`.

Kept free of model logic so each piece can be tested on its own: a timer per device
kind (``time.perf_counter`` on CPU, CUDA events between synchronisations on GPU), the
interleaved schedule in rotating order (A B, B A, ...), robust summaries of timing samples and the peak
memory probe.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medaudit import __version__

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class CpuTimer:
    """Wall-clock timer for synchronous (CPU) work, in milliseconds."""

    kind = "perf_counter"

    def time_ms(self, fn: Callable[[], object]) -> float:
        """Run ``fn`` once and return its wall time in ms."""
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    def synchronize(self) -> None:
        """Nothing is asynchronous on the CPU."""


class CudaTimer:
    """CUDA-event timer: the device is synchronised before and after every run.

    Without the synchronisations a CUDA forward returns as soon as its kernels are
    queued, and host timers measure launch overhead instead of compute.
    """

    kind = "cuda_events"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def time_ms(self, fn: Callable[[], object]) -> float:
        """Run ``fn`` once between two recorded CUDA events; return the elapsed ms."""
        self.synchronize()  # no earlier work may leak into this measurement
        # Events on the timed device's current stream (not the default device's: cuda:1).
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
        self.synchronize()
        return float(start.elapsed_time(end))


def make_timer(device: torch.device) -> CpuTimer | CudaTimer:
    """The right timer for ``device`` (CUDA events for ``cuda``, wall clock otherwise)."""
    if device.type == "cuda":
        return CudaTimer(device)
    if device.type == "mps":
        # MPS is asynchronous too; synchronise around a wall-clock measurement.
        return _MpsTimer()
    return CpuTimer()


class _MpsTimer(CpuTimer):
    kind = "perf_counter+mps_synchronize"

    def synchronize(self) -> None:
        torch.mps.synchronize()

    def time_ms(self, fn: Callable[[], object]) -> float:
        self.synchronize()
        start = time.perf_counter()
        fn()
        self.synchronize()
        return (time.perf_counter() - start) * 1e3


def run_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    timer: CpuTimer | CudaTimer,
    on_run: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Warm up, then time every callable ``repeats`` times, interleaved: A B, B A, A B, ...

    Interleaving means slow drift of the machine (thermal throttling, other processes,
    frequency scaling) lands on all models alike instead of on whichever ran last.

    Parameters
    ----------
    fns : mapping of str to callable
        One zero-argument callable per model (a forward pass on a fixed input).
    repeats : int
        Timed runs per callable (>= 1).
    warmup : int
        Untimed runs per callable before timing (>= 0): lazy initialisation, allocator
        growth, cuDNN/oneDNN algorithm selection and caches happen here.
    timer : CpuTimer or CudaTimer
    on_run : callable, optional
        Called after every run (warm-up or timed), e.g. to advance a progress bar.

    Returns
    -------
    dict of str to list of float
        Per callable, the ``repeats`` timings in ms, in run order; index ``i`` of every
        list comes from the same round, so ratios can be taken pairwise.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            if on_run is not None:
                on_run()
    timer.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeats):
        # The order rotates every round (A B C, B C A, C A B, ...): no model always runs
        # first (right after the previous round's last model warmed the caches for it).
        k = r % len(order)
        for name in order[k:] + order[:k]:
            times[name].append(timer.time_ms(fns[name]))
            if on_run is not None:
                on_run()
    return times


def summarize_ms(samples: list[float] | np.ndarray) -> dict:
    """Robust summary of timing samples (ms).

    Returns
    -------
    dict
        ``median``, ``p95``, ``min``, ``max``, ``mean``, ``q25``, ``q75``, ``iqr``
        (= q75 - q25) in ms and ``n``. Percentiles use linear interpolation
        (``numpy.percentile`` default). The median and IQR are reported rather than
        mean and std because timing noise is one-sided (interruptions only add time).
    """
    a = np.asarray(samples, dtype=float)
    if a.size == 0:
        raise ValueError("no timing samples")
    q25, med, q75, p95 = np.percentile(a, [25, 50, 75, 95])
    return {
        "median": float(med), "p95": float(p95), "min": float(a.min()), "max": float(a.max()),
        "mean": float(a.mean()), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25),
        "n": int(a.size),
    }


def paired_ratio(a_ms: list[float], b_ms: list[float]) -> dict:
    """Ratio of times a / b from interleaved rounds: median and IQR of per-round ratios.

    Pairing round ``i`` of A with round ``i`` of B cancels drift shared by both, so the
    spread of the per-round ratios is the honest uncertainty of "A is r times B".

    Returns
    -------
    dict
        ``median``, ``q25``, ``q75`` of ``a_ms[i] / b_ms[i]`` and ``n``.
    """
    a = np.asarray(a_ms, dtype=float)
    b = np.asarray(b_ms, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_ratio needs two equally long, non-empty sample lists")
    r = a / b
    q25, med, q75 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(r.size)}


# -- peak memory --------------------------------------------------------------


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``echo 5 > /proc/self/clear_refs``)."""
    try:
        _PROC_CLEAR_REFS.write_text("5")
        return True
    except OSError:  # not Linux, or a sandbox forbids it: fall back to ru_maxrss
        return False


def _malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc), so pages a run re-touches show as growth."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        pass


def _ru_maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def peak_memory_growth(fn: Callable[[], object], device: torch.device) -> dict:
    """Peak memory added by one call of ``fn`` above what was in use just before it.

    This is activations plus workspace: weights and the input already live in memory
    and are not counted (see ``weights_bytes`` in the efficiency dict for those).

    - CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before, after
      ``reset_peak_memory_stats`` (kind ``cuda_max_allocated_delta``). Exact for the
      caching allocator's tensors; excludes cuDNN/cuBLAS workspaces outside it.
    - CPU on Linux: VmHWM after the call minus VmRSS before it, with the high-water mark
      reset first through ``/proc/self/clear_refs`` (kind ``cpu_rss_hwm_delta``). Freed
      heap pages are returned with glibc ``malloc_trim(0)`` before, so re-used pages
      count too. Caveats: process-wide (other threads count too); resolution is a 4 KiB
      page and the libc heap (a few MB of small allocations re-touched are included);
      memory an allocator keeps mapped without trimming (jemalloc, mimalloc) is not
      seen, so it can under-estimate; resetting VmHWM also lowers the ``ru_maxrss`` the
      process reports afterwards.
    - Elsewhere: growth of ``ru_maxrss`` (kind ``cpu_ru_maxrss_delta``), a lower bound
      that only moves past the process's earlier peak; reported as null when it did
      not move.

    Returns
    -------
    dict
        ``bytes`` (int or None), ``kind`` (str or None), ``reason`` (str or None).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"bytes": int(peak - before), "kind": "cuda_max_allocated_delta", "reason": None}
    if device.type != "cpu":
        return {"bytes": None, "kind": None, "reason": f"no peak-memory probe for device type '{device.type}'"}
    _malloc_trim()
    if _PROC_STATUS.is_file() and _reset_rss_peak():
        before = _status_bytes("VmRSS")
        fn()
        peak = _status_bytes("VmHWM")
        return {"bytes": max(peak - before, 0), "kind": "cpu_rss_hwm_delta", "reason": None}
    before = _ru_maxrss_bytes()
    fn()
    grown = _ru_maxrss_bytes() - before
    if grown <= 0:
        return {"bytes": None, "kind": "cpu_ru_maxrss_delta",
                "reason": "peak RSS cannot be reset here and the run stayed below the process's earlier peak"}
    return {"bytes": int(grown), "kind": "cpu_ru_maxrss_delta", "reason": None}


# -- run setup ------------------------------------------------------------------


@contextmanager
def num_threads(threads: int | None):
    """``torch.set_num_threads(threads)`` inside the block (None: unchanged), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:  # not Linux: use what platform knows
            pass
        return platform.processor() or platform.machine()
    return device.type


def environment(device: torch.device, *, amp: str | None, timer_kind: str, repeats: int, warmup: int,
                batch_sizes: Sequence[int]) -> dict:
    """What the figures were measured on and how (JSON-serialisable)."""
    env: dict[str, Any] = {
        "device": str(device),
        "device_name": _device_name(device),
        "dtype": "float32" if amp is None else f"autocast_{amp_dtype_name(amp)}",
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "timm": _dist_version("timm"),  # not `import timm`: 2-3 s that a cached report never needs
        "medaudit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine slows every model; record how busy it was.
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "timer": timer_kind,
        "schedule": "interleaved",
        "repeats": int(repeats),
        "warmup": int(warmup),
        "batch_sizes": [int(b) for b in batch_sizes],
        "grad": "inference_mode",
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        env["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return env


def amp_dtype_name(amp: str | None) -> str:
    """Torch dtype name for an ``amp`` option (None -> float32)."""
    return {None: "float32", "fp16": "float16", "bf16": "bfloat16"}[amp]
