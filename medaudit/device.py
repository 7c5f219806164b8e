"""Choosing the torch device: one rule for predict, train, bench and cam."""

from __future__ import annotations

import torch

from medaudit.errors import MedauditError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """The device named ``name``; ``auto`` picks cuda > mps > cpu.

    Parameters
    ----------
    name : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns
    -------
    torch.device

    Raises
    ------
    MedauditError
        (``param="device"``) when ``name`` is not a device, or names one that is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MedauditError(f"device '{name}' is not a device name (use auto, cpu, cuda, cuda:N or mps)", param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedauditError(f"device '{name}': no CUDA GPU is available here; use auto or cpu", param="device")
    if dev.type == "mps" and not _mps_available():
        raise MedauditError(f"device '{name}': MPS is not available here; use auto or cpu", param="device")
    return dev
