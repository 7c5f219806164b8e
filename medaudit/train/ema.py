"""Exponential moving average of a model's weights (``medaudit train --ema``).

The same update as timm's ``ModelEmaV3`` (default settings, ``step`` passed): after each
optimizer step ``t`` (1-based), every floating-point entry of the state dict (parameters *and*
buffers such as BatchNorm running means/variances) moves towards the model's,

    ema <- ema + (1 - d_t) * (model - ema)        (``torch.lerp``)

and integer buffers (BatchNorm's ``num_batches_tracked``) are copied. The decay is

    d_1 = 0 (the first update copies the model), then
    d_t = min(decay, 1 - (1 + (t - 1)) ** -power)    with warm-up (power 2/3, timm's default),
    d_t = decay                                        without.

Without warm-up, a short run keeps mostly its first weights: after ``T`` updates the first
step still weighs ``decay ** (T - 1)`` (0.999 ** 79 = 0.92 for 80 steps);
:func:`first_step_weight` gives that number so the loop can warn.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

WARMUP_POWER = 2 / 3  # timm ModelEmaV3 warmup_power default (warmup_gamma 1)


def ema_decay_at(step: int, decay: float, warmup: bool, power: float = WARMUP_POWER) -> float:
    """Decay of the ``step``-th update (1-based), as timm's ``ModelEmaV3.get_decay(step)``.

    Parameters
    ----------
    step : int
        Updates done including this one (>= 1).
    decay : float
        The target decay, in (0, 1).
    warmup : bool
        Ramp the decay up as ``1 - step ** -power`` (capped at ``decay``).
    power : float

    Returns
    -------
    float
        0.0 for the first update (the average starts at the model), else in (0, decay].
    """
    s = max(0, step - 1)
    if s <= 0:
        return 0.0
    if warmup:
        return min(1.0 - (1.0 + s) ** -power, decay)
    return decay


def first_step_weight(n_updates: int, decay: float, warmup: bool, power: float = WARMUP_POWER) -> float:
    """Weight the first update's model still has in the average after ``n_updates`` updates.

    Parameters
    ----------
    n_updates : int
    decay, warmup, power
        As for :func:`ema_decay_at`.

    Returns
    -------
    float
        ``prod_{t=2..n} d_t`` (1.0 for ``n_updates <= 1``).
    """
    if n_updates <= 1:
        return 1.0
    if not warmup:
        return float(decay ** (n_updates - 1))
    s = np.arange(1, n_updates, dtype=np.float64)  # d_t for t = 2..n uses s = t - 1
    return float(np.exp(np.log(np.minimum(1.0 - (1.0 + s) ** -power, decay)).sum()))


class WeightEma:
    """A moving average of ``model``'s state dict, kept in a copy of the model (``module``).

    Parameters
    ----------
    model : nn.Module
        Copied (same device, dtype and memory layout); the copy is in eval mode and has no
        gradients.
    decay : float
        In (0, 1).
    warmup : bool
        timm's decay warm-up (see the module docstring).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup = float(decay), bool(warmup)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update will use."""
        return ema_decay_at(self.updates + 1, self.decay, self.warmup)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model`` (call after each optimizer step)."""
        d = self.current_decay()
        self.updates += 1
        own, other = self.module.state_dict(), model.state_dict()
        for key, ema_v in own.items():
            v = other[key]
            if ema_v.is_floating_point():
                ema_v.lerp_(v.to(dtype=ema_v.dtype), 1.0 - d)
            else:
                ema_v.copy_(v)

    def state_dict(self) -> dict:
        """``{"state_dict": ..., "updates": int}``; :meth:`load_state_dict` restores it bit for bit."""
        return {"state_dict": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (tensors are copied into the module's own)."""
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])

    def record(self) -> dict:
        """What the checkpoint's training block says about the average (JSON-able)."""
        return {"decay": self.decay, "warmup": self.warmup, "warmup_power": WARMUP_POWER if self.warmup else None,
                "updates": self.updates, "buffers": "averaged (integer buffers copied)",
                "first_step_weight": first_step_weight(self.updates, self.decay, self.warmup)}
