"""Choosing the torch device: one rule for predict, train, bench and cam."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medaudit.errors import MedauditError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device that is not available is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MedauditError(f"--device '{name}' is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedauditError("--device cuda: no CUDA GPU is available here; use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MedauditError("--device mps: MPS is not available here; use --device auto or cpu")
    return dev
