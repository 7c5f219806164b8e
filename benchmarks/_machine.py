"""Machine facts printed by every benchmark: CPU, cores, torch threads, versions, load."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info() -> dict:
    """CPU model, cores, torch version/threads and load average (what the figures mean)."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": affinity,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "python": platform.python_version(),
        "loadavg": tuple(round(x, 2) for x in os.getloadavg()), "nice": os.nice(0),
    }  # fmt: skip


def print_machine(info: dict) -> None:
    print(f"machine: {info['cpu']}, {info['cpu_count']} cores ({info['usable_cores']} usable), "
          f"python {info['python']}, torch {info['torch']}, {info['threads']} intra-op threads "
          f"({info['interop_threads']} inter-op), nice {info['nice']}")
    print(f"load average (1/5/15 min): {info['loadavg']}")
