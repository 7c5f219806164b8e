"""One recorded preprocessing recipe per checkpoint, used by every command that feeds a model.

Evaluating with other preprocessing than training silently changes every number, so the
recipe (size, resize policy, interpolation, channels, mean/std) is stored in the checkpoint
and nothing downstream guesses it. The recipe's choices live, torch-free, in
:mod:`medaudit.models.recipe_options` (the CLI builds its options from them).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medaudit.data.scan import scan_decoded, scan_workers
from medaudit.errors import MedauditError
from medaudit.models.recipe_options import (
    DEFAULT_RESIZE_BACKEND,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    RESIZE_BACKENDS,
    RESIZE_POLICIES,
)


class RecipeError(MedauditError):
    """A recipe value out of its range: the field, the value and why, so a checkpoint's bad recipe
    can be reported against the file (``checkpoint X: recipe img_size=100000 is out of range ...``)
    rather than against a command-line option (``param`` is the field, for the CLI)."""

    def __init__(self, field: str, value, reason: str, message: str) -> None:
        super().__init__(message, param=field)
        self.field, self.value, self.reason = field, value, reason


def _check(ok: bool, field: str, value, reason: str, message: str) -> None:
    if not ok:
        raise RecipeError(field, value, reason, message)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _floats(values, field: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise RecipeError(field, values, "is not a list of numbers",
                          f"{field} must be a list of numbers (got {values!r})") from None
    _check(all(np.isfinite(out)), field, values, "holds a value that is not finite",
           f"{field} values must be finite (got {', '.join(map(str, out))})")
    return out


_FIELDS = ("img_size", "in_chans", "mean", "std", "resize", "interpolation", "resize_backend", "jpeg_draft")
#: PIL filters for the ``pil`` backend, as torchvision maps its InterpolationMode on PIL images.
_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


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
    resize_backend : {"torch", "pil"}
        ``torch`` (default): antialiased ``F.interpolate`` on the float tensor. ``pil``: PIL's
        ``Image.resize`` on the 8-bit ``L``/``RGB`` image before it becomes a tensor, which is
        what torchvision's ``Resize`` does to PIL images (``crop`` = ``Resize(s)`` +
        ``CenterCrop(s)``), so weights trained in a torchvision notebook see the same input.
        The two differ by up to a few grey levels, enough to flip borderline predictions.
    jpeg_draft : bool
        False (default): every image is decoded in full. True: a JPEG file at least twice
        ``img_size`` on both sides is decoded at a reduced DCT scale (1/2, 1/4, 1/8) that keeps
        both sides ``>= img_size`` (:func:`medaudit.data.images.decode_image` ``draft_min_side``),
        then resized as usual: less decoding, slightly different pixels. Being a recipe field, it
        is part of the predictions' cache key and provenance, so the two decoders' results never mix.
    """

    img_size: int = 224
    in_chans: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "stretch"
    interpolation: str = "bilinear"
    resize_backend: str = DEFAULT_RESIZE_BACKEND
    jpeg_draft: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _floats(self.mean, "mean"))
        object.__setattr__(self, "std", _floats(self.std, "std"))
        _check(_is_int(self.in_chans) and self.in_chans in (1, 3), "in_chans", self.in_chans, "is not 1 or 3",
               f"in_chans must be 1 or 3 (got {self.in_chans})")
        object.__setattr__(self, "in_chans", int(self.in_chans))
        if len(self.mean) == 3 and self.in_chans == 1:
            # One grey channel: use the channel average of an RGB normalisation.
            object.__setattr__(self, "mean", (float(np.mean(self.mean)),))
            object.__setattr__(self, "std", (float(np.mean(self.std)),))
        if len(self.mean) == 1 and self.in_chans == 3:
            object.__setattr__(self, "mean", self.mean * 3)
            object.__setattr__(self, "std", self.std * 3)
        for field in ("mean", "std"):
            n = len(getattr(self, field))
            _check(n == self.in_chans, field, list(getattr(self, field)),
                   f"has {n} values but in_chans={self.in_chans} needs {self.in_chans}",
                   f"mean and std need {self.in_chans} values, one per input channel "
                   f"(got {len(self.mean)} and {len(self.std)})")
        _check(all(s > 0 for s in self.std), "std", list(self.std), "holds a value that is not positive",
               f"std values must be positive (got {', '.join(map(str, self.std))})")
        _check(self.resize in RESIZE_POLICIES, "resize", self.resize, f"is not one of {', '.join(RESIZE_POLICIES)}",
               f"resize '{self.resize}' is not one of {', '.join(RESIZE_POLICIES)}")
        _check(self.interpolation in INTERPOLATIONS, "interpolation", self.interpolation,
               f"is not one of {', '.join(INTERPOLATIONS)}",
               f"interpolation '{self.interpolation}' is not one of {', '.join(INTERPOLATIONS)}")
        _check(self.resize_backend in RESIZE_BACKENDS, "resize_backend", self.resize_backend,
               f"is not one of {', '.join(RESIZE_BACKENDS)}",
               f"resize_backend '{self.resize_backend}' is not one of {', '.join(RESIZE_BACKENDS)}")
        _check(isinstance(self.jpeg_draft, bool), "jpeg_draft", self.jpeg_draft, "is not true or false",
               f"jpeg_draft must be true or false (got {self.jpeg_draft!r})")
        _check(_is_int(self.img_size), "img_size", self.img_size, "is not a whole number of pixels",
               f"img_size must be a whole number of pixels (got {self.img_size!r})")
        _check(2 <= self.img_size <= 4096, "img_size", self.img_size, "is out of range (2 to 4096 px)",
               f"img_size must be between 2 and 4096 px (got {self.img_size})")
        object.__setattr__(self, "img_size", int(self.img_size))

    def to_dict(self) -> dict:
        """The recipe as plain data (stored in checkpoints, predictions headers and cache keys).

        ``resize_backend`` is left out while it is the default, so checkpoints and cache keys
        written before it existed stay what they were.
        """
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.resize_backend == DEFAULT_RESIZE_BACKEND:
            del d["resize_backend"]
        if not self.jpeg_draft:  # likewise: keys of full-decode recipes stay what they were
            del d["jpeg_draft"]
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str | os.PathLike | None = None) -> Recipe:
        """The recipe of :meth:`to_dict`'s dict; unknown keys are ignored.

        Parameters
        ----------
        d : dict
        source : path, optional
            The checkpoint (or sidecar) the dict was read from. A bad value is then reported as the
            file's fault, naming it and the field, with no ``param`` (no option is to blame).
        """
        if not isinstance(d, dict):
            raise MedauditError(f"checkpoint {source}: recipe is not a mapping (got {type(d).__name__})"
                                if source is not None else f"recipe must be a dict (got {type(d).__name__})")
        try:
            return cls(**{k: d[k] for k in _FIELDS if k in d})
        except TypeError as exc:  # e.g. a field of a type no check expects
            if source is None:
                raise
            raise MedauditError(f"checkpoint {source}: recipe is malformed ({exc})") from None
        except RecipeError as exc:
            if source is None:
                raise
            raise MedauditError(
                f"checkpoint {source}: recipe {exc.field}={exc.value!r} {exc.reason}; the file is damaged or was "
                "written by hand, re-create it (medaudit train or medaudit convert)"
            ) from None

    # -- single PIL image (image folders) ----------------------------------------
    def transform_pil(self, img: Image.Image) -> torch.Tensor:
        """PIL image of any mode → normalised float tensor (C, s, s)."""
        if self.resize_backend == "pil":
            arr = np.asarray(self._resize_pil(pil_normalised(img, self.in_chans)), dtype=np.uint8)
            return self._normalise(_to_float(arr[None]))[0]
        arr = pil_to_uint8(img, self.in_chans)
        return self.batch_from_array(arr[None])[0]

    # -- uint8 arrays (npz sources, batches) --------------------------------------
    def batch_from_array(self, arr: np.ndarray) -> torch.Tensor:
        """uint8 array (B, H, W) or (B, H, W, C) → normalised float tensor (B, C, s, s)."""

        if arr.dtype != np.uint8:
            raise MedauditError(f"expected uint8 images, got {arr.dtype}")
        if self.resize_backend == "pil":
            # Each image goes through PIL as an image file would (same conversion, same resize).
            out = [np.asarray(self._resize_pil(_array_image(a, self.in_chans)), dtype=np.uint8) for a in arr]
            return self._normalise(_to_float(np.stack(out)))
        x = _to_float(arr)
        c = x.shape[1]
        if c == 4:  # RGBA: drop alpha (callers should have composited already)
            x, c = x[:, :3], 3
        if c == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and self.in_chans == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return self._normalise(self._resize(x))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / std in float32, the operations (and order) of torchvision's Normalize.
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """The ``torch`` backend: antialiased ``F.interpolate`` on the float batch (B, C, H, W)."""
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

    def _resize_pil(self, img: Image.Image) -> Image.Image:
        """The ``pil`` backend: torchvision's ``Resize`` on a PIL image, i.e. ``Image.resize``."""
        s = self.img_size
        w, h = img.size
        resample = _PIL_FILTERS[self.interpolation]
        if self.resize == "stretch":  # Resize((s, s))
            return img.resize((s, s), resample)
        if self.resize == "crop":  # Resize(s): short side to s, long side truncated; then CenterCrop(s)
            long = int(s * max(w, h) / min(w, h))
            nw, nh = (s, long) if w <= h else (long, s)
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), resample)
            top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
            return img.crop((left, top, left + s, top + s))
        # pad: the torch backend's letterbox geometry, resized by PIL
        scale = s / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = Image.new(img.mode, (s, s), 0)
        canvas.paste(img.resize((nw, nh), resample), ((s - nw) // 2, (s - nh) // 2))
        return canvas

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        """Normalised tensor (C, H, W) → uint8 array (H, W, 3) for display."""

        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        img = (x.detach().cpu().float() * std + mean).clamp(0, 1)
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def pil_normalised(img: Image.Image, in_chans: int) -> Image.Image:
    """Any PIL mode → mode ``"L"`` (1 channel) or ``"RGB"`` (3 channels).

    ``L`` and ``RGB`` images (what :func:`medaudit.data.images.decode_image` returns) go through
    ``img.convert("RGB")`` / ``img.convert("L")`` exactly as a torchvision pipeline converts them.
    16-bit and float images are scaled from their own range; transparent ones composited on black.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        img = Image.fromarray(a.round().astype(np.uint8), "L")
    elif img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("L" if in_chans == 1 else "RGB")


def pil_to_uint8(img: Image.Image, in_chans: int) -> np.ndarray:
    """Any PIL mode → uint8 (H, W) for 1 channel or (H, W, 3) for 3 channels (see :func:`pil_normalised`)."""
    return np.asarray(pil_normalised(img, in_chans), dtype=np.uint8)


def _array_image(a: np.ndarray, in_chans: int) -> Image.Image:
    """One uint8 image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as the PIL image an image file would give."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]  # drop alpha, as the torch backend does for arrays
    return Image.fromarray(np.ascontiguousarray(a)).convert("L" if in_chans == 1 else "RGB")


def _to_float(arr: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W[, C]) → float32 (B, C, H, W) in [0, 1], as torchvision's ``ToTensor``."""
    x = torch.from_numpy(np.array(arr, copy=True))  # a batch copy: sources may be read-only
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0)


def split_tensor_dataset(split, recipe: Recipe, scan_rows: np.ndarray | None = None):
    """A torch Dataset over a data split yielding ``(x, y, index)`` with the recipe applied.

    ``scan_rows`` (bool, one per sample; file splits only): the samples whose scan results
    (:func:`medaudit.data.scan.scan_decoded`) are wanted from this same decode; items are then
    ``(x, y, index, scan)``, with ``scan`` None for the others and the error's message for a
    file that cannot be decoded (whose ``x`` is zeros: the pass goes on, the scan reports it).
    """

    class _SplitDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(split)

        def __getitem__(self, i: int):
            y = torch.as_tensor(split.labels[i])
            if scan_rows is not None and scan_rows[i]:
                return self._with_scan(i, y)
            if split.array is not None:
                x = recipe.batch_from_array(split.array[i : i + 1])[0]
            elif recipe.jpeg_draft:  # the split's own decoder applies it (JPEG files only)
                x = recipe.transform_pil(split.load_image(i, draft_min_side=recipe.img_size))
            else:
                x = recipe.transform_pil(split.load_image(i))
            return (x, y, i) if scan_rows is None else (x, y, i, None)

        def _with_scan(self, i: int, y: torch.Tensor):
            try:
                im, original = split._decode(i)  # what load_image returns, with the file's own mode
            except MedauditError as exc:
                return torch.zeros(recipe.in_chans, recipe.img_size, recipe.img_size), y, i, str(exc)
            return recipe.transform_pil(im), y, i, scan_decoded(im, original)

    return _SplitDataset()


def _collate_with_scan(items):
    xs, ys, idx, scans = zip(*items)
    return torch.stack(xs), torch.stack(ys), torch.as_tensor(idx), list(scans)


def iter_batches(split, recipe: Recipe, batch_size: int, *, indices=None, num_workers: int | None = None,
                 scan=None):
    """Yield ``(x, y, idx)`` batches in order.

    In-memory (npz) splits are converted a whole batch at a time from the uint8 array
    (no per-sample Python work, no float copy of the dataset); image folders stream
    from disk through a DataLoader with worker processes.

    ``scan``: a :class:`medaudit.data.scan.ScanPlan` of this (file) split; each of its misses
    is hashed from the decode that feeds the model and recorded in it before its batch is
    yielded (decode once, :meth:`medaudit.data.base.Split.fused_scan_plan`). Needs the
    recipe's full decode (not ``jpeg_draft``), since the hashes are of the full image.
    """

    idx_all = np.arange(len(split)) if indices is None else np.asarray(indices)
    if split.array is not None:
        for start in range(0, len(idx_all), batch_size):
            idx = idx_all[start : start + batch_size]
            x = recipe.batch_from_array(split.array[idx])
            yield x, torch.as_tensor(split.labels[idx]), torch.as_tensor(idx)
        return
    if num_workers is None:
        num_workers = scan_workers(len(idx_all))
    if scan is None:
        ds = torch.utils.data.Subset(split_tensor_dataset(split, recipe), idx_all.tolist())
        yield from torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        return
    if recipe.jpeg_draft:
        raise ValueError("a fused scan needs the full decode; this recipe drafts JPEGs")
    rows = np.zeros(len(split), dtype=bool)
    rows[scan.misses] = True
    rows &= ~scan.done  # after a CUDA out-of-memory retry, the rows already recorded
    ds = torch.utils.data.Subset(split_tensor_dataset(split, recipe, rows), idx_all.tolist())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=_collate_with_scan)
    for x, y, idx, results in loader:
        for i, result in zip(idx.tolist(), results):
            if result is not None:
                scan.record(i, result)
        yield x, y, idx
