"""Image corruptions at five severities, and a split whose images are corrupted (robustness sweeps).

Each corruption acts on the *decoded* image (uint8, ``(H, W)`` or ``(H, W, C)``), before the
checkpoint's recipe resizes and normalises it, as a different scanner or a re-saved file would.
It is deterministic per (sample id, corruption, severity, seed): the random draws (noise, the
sign of a rotation, the direction of a motion blur, the shape of a bias field) come from a
``numpy.random.Generator`` seeded by a sha256 of those four and :data:`CORRUPTION_VERSION`, never
from Python's ``hash()`` (salted per process) or a global seed.

Spatial parameters (blur widths, motion length) are given for a 224-pixel image and scaled to the
shorter side of each image, so a severity means the same physical degradation at 28, 64 or 224
pixels. ``torchvision.transforms.v2`` does the transforms it has (Gaussian blur, rotation); numpy,
scipy and PIL the rest. Its ``GaussianNoise`` is not used: it draws from torch's global
generator, which would break the per-sample determinism; nor its ``JPEG``: it encodes through
``torchvision.io``, deprecated since torchvision 0.29 (PIL's libjpeg does the same).

Why not ``medmnistc`` (the MedMNIST-C reference code): it pins ``medmnist`` and its
``wand`` dependency needs the ImageMagick system library, which ``pip`` cannot install; its
corruptions are defined per MedMNIST dataset at 28/224 pixels only. The parameters here follow
its kinds of corruption, on any image size and channel count (docs/robustness.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from medaudit.errors import MedauditError

# Part of every corrupted split's fingerprint (and so of the predictions cache key): bump it when
# a corruption's definition or parameters change, so cached passes of the old ones are not reused.
CORRUPTION_VERSION = 1
SEVERITIES = (1, 2, 3, 4, 5)
_REFERENCE_SIDE = 224.0  # spatial parameters are given for this side and scaled to the image's


@dataclass(frozen=True)
class Corruption:
    """One corruption: a function of (float image, parameter, generator) and its five parameters.

    Attributes
    ----------
    name : str
        The key in :data:`CORRUPTIONS` (and on the command line).
    label : str
        Words for the report ("contrast reduction").
    param : str
        What the parameter is ("sigma (intensity)").
    levels : tuple of float, length 5
        The parameter at severities 1..5.
    apply : callable
        ``apply(x, level, rng) -> x'`` with ``x`` float32 ``(H, W, C)`` in [0, 1]; the result is
        clipped and rounded to uint8 by :func:`corrupt_image`.
    """

    name: str
    label: str
    param: str
    levels: tuple[float, ...]
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _side(x: np.ndarray) -> float:
    return float(min(x.shape[0], x.shape[1]))


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


def _gaussian_noise(x, sigma, rng):
    return x + rng.normal(0.0, sigma, size=x.shape).astype(np.float32)


def _speckle(x, sigma, rng):
    return x * (1.0 + rng.normal(0.0, sigma, size=x.shape).astype(np.float32))


def _shot(x, photons, rng):
    # Poisson counts at `photons` for a white pixel: fewer photons, more noise.
    return (rng.poisson(np.clip(x, 0, 1) * photons) / photons).astype(np.float32)


def _gaussian_blur(x, sigma224, rng):
    sigma = max(sigma224 * _side(x) / _REFERENCE_SIDE, 0.3)
    # Reflect padding needs a radius below the image side.
    radius = min(int(math.ceil(3 * sigma)), int(_side(x)) - 1)
    if radius < 1:
        return x
    from torchvision.transforms.v2 import functional as TF  # torchvision loads in ~2 s: only when corrupting

    return _hwc(TF.gaussian_blur(_chw(x), kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma]))


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle`` radians (odd side)."""
    half = max(int(math.ceil(length / 2)), 1)
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for t in np.linspace(-length / 2, length / 2, max(int(4 * length), 3)):
        k[int(round(half + t * math.sin(angle))), int(round(half + t * math.cos(angle)))] = 1.0
    return k / k.sum()


def _motion_blur(x, length224, rng):
    length = max(length224 * _side(x) / _REFERENCE_SIDE, 1.5)
    k = _motion_kernel(length, float(rng.uniform(0, math.pi)))
    return np.stack([ndimage.convolve(x[..., c], k, mode="reflect") for c in range(x.shape[2])], axis=-1)


def _contrast(x, factor, rng):
    mean = x.mean(axis=(0, 1), keepdims=True)
    return (x - mean) * factor + mean


def _brightness(x, delta, rng):
    return x + delta


def _gamma(x, gamma, rng):
    return np.clip(x, 0, 1) ** gamma


def _jpeg(x, quality, rng):
    # PIL's libjpeg: torchvision's v2 JPEG goes through torchvision.io's encoder, deprecated since 0.29.
    u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
    return out[..., None] if out.ndim == 2 else out


def _pixelate(x, fraction, rng):
    h, w = x.shape[:2]
    small = (max(int(round(w * fraction)), 1), max(int(round(h * fraction)), 1))
    u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    planes = [np.asarray(Image.fromarray(u8[..., c]).resize(small, Image.BOX).resize((w, h), Image.NEAREST))
              for c in range(x.shape[2])]
    return np.stack(planes, axis=-1).astype(np.float32) / 255.0


def _bias_field(x, strength, rng):
    # A smooth multiplicative field exp(strength * p(u, v)), p a random quadratic scaled to [-1, 1]:
    # the coil inhomogeneity of MRI (brighter on one side, darker on the other).
    h, w = x.shape[:2]
    v, u = np.meshgrid(np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32),
                       indexing="ij")
    c = rng.normal(size=5).astype(np.float32)
    p = c[0] * u + c[1] * v + c[2] * u * v + c[3] * u * u + c[4] * v * v
    p = p / max(float(np.abs(p).max()), 1e-6)
    return x * np.exp(strength * p)[..., None]


def _rotation(x, degrees, rng):
    sign = 1.0 if rng.random() < 0.5 else -1.0
    from torchvision.transforms.v2 import functional as TF

    return _hwc(TF.rotate(_chw(x), sign * degrees, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0))


def _c(name, label, param, levels, fn) -> tuple[str, Corruption]:
    return name, Corruption(name, label, param, tuple(float(v) for v in levels), fn)


CORRUPTIONS: dict[str, Corruption] = dict([
    _c("gaussian_noise", "Gaussian noise", "sigma (intensity, 0-1)", (0.03, 0.06, 0.09, 0.12, 0.16), _gaussian_noise),
    _c("speckle_noise", "speckle noise", "sigma (multiplicative)", (0.10, 0.17, 0.25, 0.35, 0.45), _speckle),
    _c("shot_noise", "shot (Poisson) noise", "photons at white", (80, 40, 20, 10, 5), _shot),
    _c("gaussian_blur", "Gaussian blur", "sigma (px at 224 px)", (1.0, 2.0, 3.0, 4.5, 6.0), _gaussian_blur),
    _c("motion_blur", "motion blur", "length (px at 224 px)", (6, 10, 15, 21, 28), _motion_blur),
    _c("contrast_down", "contrast reduction", "contrast factor", (0.75, 0.6, 0.45, 0.3, 0.2), _contrast),
    _c("contrast_up", "contrast increase", "contrast factor", (1.25, 1.5, 1.8, 2.2, 2.7), _contrast),
    _c("brightness", "brightness increase", "added intensity (0-1)", (0.08, 0.16, 0.24, 0.32, 0.40), _brightness),
    _c("gamma", "gamma (darker mid-tones)", "gamma", (1.3, 1.6, 2.0, 2.5, 3.0), _gamma),
    _c("jpeg", "JPEG compression", "JPEG quality", (40, 25, 15, 10, 6), _jpeg),
    _c("pixelate", "pixelation (downsampling)", "kept resolution", (0.6, 0.45, 0.35, 0.25, 0.18), _pixelate),
    _c("bias_field", "MRI bias field", "log-intensity swing", (0.15, 0.3, 0.45, 0.6, 0.8), _bias_field),
    _c("rotation", "small rotation", "degrees (random sign)", (3, 6, 9, 12, 15), _rotation),
])
DEFAULT_CORRUPTIONS = tuple(CORRUPTIONS)


def resolve_corruptions(spec: str | Sequence[str] | None, param: str = "robustness") -> tuple[str, ...]:
    """Corruption names from ``"default"``, a comma list or a sequence of names, checked.

    Parameters
    ----------
    spec : str or sequence of str or None
        ``"default"`` (or None): every corruption; else names of :data:`CORRUPTIONS`.
    param : str
        The option the error names.

    Returns
    -------
    tuple of str
        The names in the order given, without repeats.

    Raises
    ------
    MedauditError
        An unknown name (the message lists the valid ones) or an empty list.
    """
    if spec is None:
        return DEFAULT_CORRUPTIONS
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["default"]:
        return DEFAULT_CORRUPTIONS
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        what = f"unknown corruption(s) {', '.join(map(repr, unknown))}" if unknown else "no corruption named"
        raise MedauditError(f"{what}; valid: default, {', '.join(CORRUPTIONS)}", param=param)
    return tuple(dict.fromkeys(names))


def check_severities(severities: Sequence[int], param: str = "robustness_severities") -> tuple[int, ...]:
    """The severities, sorted and unique; each must be one of 1..5."""
    sev = tuple(sorted({int(s) for s in severities}))
    if not sev or any(s not in SEVERITIES for s in sev):
        raise MedauditError(f"severities {list(severities)}: give values among 1, 2, 3, 4, 5", param=param)
    return sev


def sample_seed(sample_id: str, corruption: str, severity: int, seed: int = 0) -> int:
    """The 64-bit seed of one (sample, corruption, severity): a sha256, stable across processes."""
    key = f"medaudit.corruptions/{CORRUPTION_VERSION}|{seed}|{corruption}|{severity}|{sample_id}"
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def corrupt_image(image: np.ndarray, corruption: str, severity: int, sample_id: str, seed: int = 0) -> np.ndarray:
    """One decoded image with a corruption applied.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W) or (H, W, C)
    corruption : str
        A key of :data:`CORRUPTIONS`.
    severity : int
        1..5.
    sample_id : str
        Seeds the random draws together with ``corruption``, ``severity`` and ``seed``.
    seed : int

    Returns
    -------
    ndarray of uint8, the shape of ``image``
    """
    c = CORRUPTIONS[corruption]
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError("corrupt_image takes decoded uint8 images")
    x = (img[..., None] if img.ndim == 2 else img).astype(np.float32) / 255.0
    rng = np.random.default_rng(sample_seed(sample_id, corruption, severity, seed))
    y = c.apply(x, c.levels[severity - 1], rng)
    out = np.clip(np.rint(np.asarray(y, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return out[..., 0] if img.ndim == 2 else out


def corrupt_batch(images: np.ndarray, sample_ids: Sequence[str], corruption: str, severity: int,
                  seed: int = 0) -> np.ndarray:
    """:func:`corrupt_image` of every image of a batch (each with its own sample id's draws).

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W) or (N, H, W, C)
    sample_ids : sequence of str, length N

    Returns
    -------
    ndarray of uint8, shape of ``images``
    """
    out = np.empty_like(images)
    for i, sid in enumerate(sample_ids):
        out[i] = corrupt_image(images[i], corruption, severity, sid, seed)
    return out


class CorruptedSplit:
    """A view of a data split whose images come out corrupted; labels, ids and metadata are the split's.

    It has the interface :func:`medaudit.predict.predict_cached` reads (``sample_ids``, ``labels``,
    ``class_names``, ``metadata``, ``array`` or ``load_image``, ``fingerprint``), so a sweep is
    cached per (checkpoint, data, corruption, severity) like any pass. Array-backed splits are
    corrupted as a whole on first access to ``array`` (not at all when the cache answers);
    file-backed splits corrupt each image as it is loaded.

    Parameters
    ----------
    base : medaudit.data.base.Split
    corruption : str
        A key of :data:`CORRUPTIONS`.
    severity : int
        1..5.
    seed : int
        Enters every sample's draws (and the fingerprint).
    """

    def __init__(self, base, corruption: str, severity: int, seed: int = 0) -> None:
        if corruption not in CORRUPTIONS:
            resolve_corruptions([corruption])  # raises, listing the valid names
        check_severities([severity])
        self.base, self.corruption, self.severity, self.seed = base, corruption, int(severity), int(seed)
        self.name = f"{base.name} [{corruption} @ {severity}]"
        self.sample_ids, self.labels, self.class_names = base.sample_ids, base.labels, base.class_names
        self.paths, self.metadata = base.paths, base.metadata
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.base)

    def __repr__(self) -> str:
        return f"CorruptedSplit({self.base!r}, {self.corruption!r}, severity={self.severity})"

    @property
    def array(self) -> np.ndarray | None:
        """The corrupted pixels of an array-backed split (computed once), None for files."""
        if self.base.array is None:
            return None
        if self._array is None:
            self._array = corrupt_batch(self.base.array, self.sample_ids, self.corruption, self.severity, self.seed)
        return self._array

    def load_image(self, i: int, *, draft_min_side: int | None = None) -> Image.Image:
        """Decoded image ``i`` with the corruption applied (mode ``"L"`` or ``"RGB"``, as decoded).

        ``draft_min_side`` reaches the base split's decoder, so the corrupted passes see the same
        decode as the clean one."""
        if self.array is not None:
            return Image.fromarray(self.array[i])
        img = self.base.load_image(i, draft_min_side=draft_min_side)
        return Image.fromarray(corrupt_image(np.asarray(img), self.corruption, self.severity,
                                             self.sample_ids[i], self.seed))

    def fingerprint(self) -> str:
        """sha256 of (the base split's fingerprint, corruption, severity, seed, corruption code version)."""
        blob = {"base": self.base.fingerprint(), "corruption": self.corruption, "severity": self.severity,
                "seed": self.seed, "version": CORRUPTION_VERSION}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
