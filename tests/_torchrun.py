"""Launching ``python -m torch.distributed.run`` from tests (gloo on the CPU, 127.0.0.1, one thread per rank)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], *, nproc: int = 2, script: Path | None = None, env: dict | None = None,
           timeout: float = 120, wait: bool = True):
    """``torchrun --nproc-per-node NPROC -m medaudit ARGV`` (or ``SCRIPT ARGV``).

    Returns (returncode, stdout, stderr), or the running ``Popen`` when ``wait`` is False.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(free_port())]
    cmd += [str(script)] if script is not None else ["-m", "medaudit"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true", "PYTHONPATH": str(ROOT), **(env or {})}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        full_env.pop(k, None)
    proc = subprocess.Popen(cmd + list(argv), cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
