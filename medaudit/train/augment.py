"""Seeded batch augmentation on normalised tensors (training only).

Levels (every transform drawn independently per image from the augmenter's own
``torch.Generator``, so runs and resumes are reproducible and the global RNG is untouched):

* ``none``   identity.
* ``basic``  horizontal flip (p = 0.5) and rotation, uniform in +-10 degrees.
* ``strong`` horizontal flip (p = 0.5); rotation +-15 degrees, scale 0.9-1.1 and translation
  +-8 % of the side (one affine warp, bilinear, zero = black padding); brightness
  +-0.1 and contrast x0.8-1.2 (in [0, 1] pixel units, applied to all channels alike, so
  grayscale stays grayscale).

Geometry works directly on the normalised tensor; the padding value is the normalised
black ``-mean/std``. Colour jitter is exact in normalised space:
brightness ``x + b`` becomes ``x_n + b / std`` and contrast about the image mean is linear,
followed by clamping to the normalised image of [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medaudit.errors import MedauditError
from medaudit.train.config import AUGMENT_LEVELS

_PARAMS = {
    "basic": {"rot": 10.0, "scale": 0.0, "shift": 0.0, "bright": 0.0, "contrast": 0.0},
    "strong": {"rot": 15.0, "scale": 0.1, "shift": 0.08, "bright": 0.1, "contrast": 0.2},
}


class Augmenter:
    """Apply an augmentation level to batches (B, C, H, W) of normalised images.

    Parameters
    ----------
    level : {"none", "basic", "strong"}
    mean, std : sequence of float, length C
        The normalisation the batches carry (to pad with black and clamp correctly).
    seed : int
        Seeds the private generator; its state is saved with :meth:`state` for resume.
    """

    def __init__(self, level: str, mean: Sequence[float], std: Sequence[float], seed: int = 0):
        if level not in AUGMENT_LEVELS:
            raise MedauditError(f"augment must be one of {', '.join(AUGMENT_LEVELS)} (got '{level}')", param="augment")
        self.level = level
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        self.gen = torch.Generator().manual_seed(int(seed))

    def state(self) -> torch.Tensor:
        """The private generator's state (saved in ``NAME.last.pt`` for an exact resume)."""
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Continue from a state returned by :meth:`state`."""
        self.gen.set_state(state)

    def _u(self, n: int, half_width: float) -> torch.Tensor:
        """n draws uniform in [-half_width, half_width] (always drawn, so the stream is level-stable)."""
        return (torch.rand(n, generator=self.gen) * 2 - 1) * half_width

    def __call__(self, x: torch.Tensor, *, of: int | None = None, start: int = 0) -> torch.Tensor:
        """Augment ``x`` (B, C, H, W); with ``of``, ``x`` is rows ``start:start+B`` of a batch of ``of`` images.

        The draws are made for the whole batch of ``of`` and this slice is applied, so ranks that
        each hold a chunk of a global batch augment it exactly as one process would.
        """
        if self.level == "none":
            return x
        p = _PARAMS[self.level]
        b = x.shape[0]
        n = b if of is None else of
        rows = slice(start, start + b)
        # All randomness is drawn on the CPU generator, then moved: same numbers on any device.
        flip = (torch.rand(n, generator=self.gen) < 0.5)[rows]
        angle = self._u(n, math.radians(p["rot"]))[rows]
        scale = 1.0 + self._u(n, p["scale"])[rows]
        shift = self._u(2 * n, 2 * p["shift"]).view(n, 2)[rows]  # affine_grid coordinates span 2 units
        bright = self._u(n, p["bright"])[rows]
        contrast = 1.0 + self._u(n, p["contrast"])[rows]
        dev, dt = x.device, x.dtype
        mean, std = self.mean.to(dev, dt), self.std.to(dev, dt)
        lo, hi = (0 - mean) / std, (1 - mean) / std

        # One affine warp: flip (x -> -x), rotation, scale, translation. theta maps output -> input.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        sx = torch.where(flip, -1.0, 1.0)
        theta = torch.stack(
            [torch.stack([cos * sx, -sin, shift[:, 0]], 1), torch.stack([sin * sx, cos, shift[:, 1]], 1)], 1
        ).to(dev, dt)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Pad with normalised black: warp (x - lo) with zero padding, then add lo back.
        out = F.grid_sample(x - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + lo
        if p["bright"] or p["contrast"]:
            c = contrast.to(dev, dt).view(b, 1, 1, 1)
            m = out.mean(dim=(2, 3), keepdim=True)  # per channel: exact pixel-space contrast
            out = (out - m) * c + m + bright.to(dev, dt).view(b, 1, 1, 1) / std
            out = torch.maximum(torch.minimum(out, hi), lo)
        return out
