"""One recorded preprocessing recipe per checkpoint, used by every command that feeds a model.

Evaluating with other preprocessing than training silently changes every number, so the
recipe (size, resize policy, interpolation, channels, mean/std) is stored in the checkpoint
and nothing downstream guesses it. The recipe's choices live, torch-free, in
:mod:`medaudit.models.recipe_options` (the CLI builds its options from them).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medaudit.errors import MedauditError
from medaudit.models.recipe_options import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, RESIZE_POLICIES


@dataclass(frozen=True)
class Recipe:
    """How images become model input.

    Parameters
    ----------
    img_size : int
        Square side in pixels of the model input.
    in_chans : int
        1 (grayscale) or 3 (RGB; grayscale images are repeated over channels).
    mean, std : tuple of float
        Per-channel normalisation applied to [0, 1] pixel values (length ``in_chans``).
    resize : {"stretch", "pad", "crop"}
        ``stretch`` = ``Resize((s, s))``; ``pad`` = keep aspect, letterbox with zeros;
        ``crop`` = resize the short side to ``s`` and centre-crop.
    interpolation : {"bilinear", "bicubic", "nearest"}
    """

    img_size: int = 224
    in_chans: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "stretch"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.in_chans not in (1, 3):
            raise MedauditError(f"in_chans must be 1 or 3 (got {self.in_chans})", param="in_chans")
        if len(self.mean) == 3 and self.in_chans == 1:
            # One grey channel: use the channel average of an RGB normalisation.
            object.__setattr__(self, "mean", (float(np.mean(self.mean)),))
            object.__setattr__(self, "std", (float(np.mean(self.std)),))
        if len(self.mean) == 1 and self.in_chans == 3:
            object.__setattr__(self, "mean", self.mean * 3)
            object.__setattr__(self, "std", self.std * 3)
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise MedauditError(f"mean and std need {self.in_chans} values, one per input channel "
                                f"(got {len(self.mean)} and {len(self.std)})", param="mean")
        if any(s <= 0 for s in self.std):
            raise MedauditError(f"std values must be positive (got {', '.join(map(str, self.std))})", param="std")
        if self.resize not in RESIZE_POLICIES:
            raise MedauditError(f"resize '{self.resize}' is not one of {', '.join(RESIZE_POLICIES)}",
                                param="resize")
        if self.interpolation not in INTERPOLATIONS:
            raise MedauditError(f"interpolation '{self.interpolation}' is not one of {', '.join(INTERPOLATIONS)}",
                                param="interpolation")
        if not 2 <= self.img_size <= 4096:
            raise MedauditError(f"img_size must be between 2 and 4096 px (got {self.img_size})", param="img_size")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{k: d[k] for k in ("img_size", "in_chans", "mean", "std", "resize", "interpolation") if k in d})

    # -- single PIL image (image folders) ----------------------------------------
    def transform_pil(self, img: Image.Image) -> torch.Tensor:
        """PIL image of any mode → normalised float tensor (C, H, W)."""
        arr = pil_to_uint8(img, self.in_chans)
        return self.batch_from_array(arr[None])[0]

    # -- uint8 arrays (npz sources, batches) --------------------------------------
    def batch_from_array(self, arr: np.ndarray) -> torch.Tensor:
        """uint8 array (B, H, W) or (B, H, W, C) → normalised float tensor (B, C, s, s)."""

        if arr.dtype != np.uint8:
            raise MedauditError(f"expected uint8 images, got {arr.dtype}")
        x = torch.from_numpy(np.array(arr, copy=True))  # a batch copy: sources may be read-only
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        c = x.shape[1]
        if c == 4:  # RGBA: drop alpha (callers should have composited already)
            x, c = x[:, :3], 3
        if c == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and self.in_chans == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = self._resize(x)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.img_size
        h, w = x.shape[-2:]
        if (h, w) == (s, s):
            return x
        mode = self.interpolation
        kw = {"mode": mode} if mode == "nearest" else {"mode": mode, "align_corners": False, "antialias": True}
        if self.resize == "stretch":
            out = F.interpolate(x, size=(s, s), **kw)
        elif self.resize == "crop":
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            y = F.interpolate(x, size=(nh, nw), **kw)
            top, left = (nh - s) // 2, (nw - s) // 2
            out = y[..., top : top + s, left : left + s]
        else:  # pad
            scale = s / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            y = F.interpolate(x, size=(nh, nw), **kw)
            out = x.new_zeros(x.shape[0], x.shape[1], s, s)
            top, left = (s - nh) // 2, (s - nw) // 2
            out[..., top : top + nh, left : left + nw] = y
        return out.clamp_(0.0, 1.0) if mode == "bicubic" else out

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        """Normalised tensor (C, H, W) → uint8 array (H, W, 3) for display."""

        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        img = (x.detach().cpu().float() * std + mean).clamp(0, 1)
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def pil_to_uint8(img: Image.Image, in_chans: int) -> np.ndarray:
    """Any PIL mode → uint8 (H, W) for 1 channel or (H, W, 3) for 3 channels."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        a = a.round().astype(np.uint8)
        return a if in_chans == 1 else np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    img = img.convert("L" if in_chans == 1 else "RGB")
    return np.asarray(img, dtype=np.uint8)


def split_tensor_dataset(split, recipe: Recipe):
    """A torch Dataset over a data split yielding ``(x, y, index)`` with the recipe applied."""

    class _SplitDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(split)

        def __getitem__(self, i: int):
            if split.array is not None:
                x = recipe.batch_from_array(split.array[i : i + 1])[0]
            else:
                x = recipe.transform_pil(split.load_image(i))
            return x, torch.as_tensor(split.labels[i]), i

    return _SplitDataset()


def iter_batches(split, recipe: Recipe, batch_size: int, *, indices=None, num_workers: int | None = None):
    """Yield ``(x, y, idx)`` batches in order.

    In-memory (npz) splits are converted a whole batch at a time from the uint8 array
    (no per-sample Python work, no float copy of the dataset); image folders stream
    from disk through a DataLoader with worker processes.
    """

    idx_all = np.arange(len(split)) if indices is None else np.asarray(indices)
    if split.array is not None:
        for start in range(0, len(idx_all), batch_size):
            idx = idx_all[start : start + batch_size]
            x = recipe.batch_from_array(split.array[idx])
            yield x, torch.as_tensor(split.labels[idx]), torch.as_tensor(idx)
        return
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if len(idx_all) > 256 else 0
    ds = torch.utils.data.Subset(split_tensor_dataset(split, recipe), idx_all.tolist())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    yield from loader
