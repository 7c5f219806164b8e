"""Deterministic synthetic "brain MRI" demo data: 4 classes of grayscale axial slices.

Every image is an elliptical head (bright skull ring, textured brain, two dark
ventricles, noise, random pose/contrast); tumour classes add one lesion whose centre,
size and look are drawn per image inside a fixed class region. Regions are boxes
``(x0, y0, x1, y1)`` in fractions of the image width/height (origin top-left) that
contain the *whole* lesion (:data:`LESION_REGIONS`):

* ``glioma``      (0.15, 0.15, 0.55, 0.55) upper-left hemisphere; irregular outline,
  bright enhancing rim around a dark necrotic core;
* ``meningioma``  (0.57, 0.28, 0.84, 0.67) right periphery against the skull; round,
  smooth, homogeneously bright;
* ``pituitary``   (0.41, 0.58, 0.59, 0.77) midline, low (sellar region); small, bright;
* ``notumor``     no lesion.

Lesion contrast varies (factor 0.7-1.0) so a few cases are hard. Images depend only on
``(seed, split, class, index)``, so changing ``n_train`` does not change the test set.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from medaudit.errors import MedauditError

DEMO_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
_SPLITS = ("train", "val", "test")
_MARKER = "medaudit-demo.json"

# class -> (centre x range, centre y range, radius range, max outline factor), in image fractions.
_LESIONS = {
    "glioma": ((0.32, 0.38), (0.32, 0.38), (0.10, 0.12), 1.28),
    "meningioma": ((0.69, 0.72), (0.40, 0.55), (0.08, 0.10), 1.0),
    "pituitary": ((0.49, 0.51), (0.66, 0.69), (0.05, 0.065), 1.0),
}
_SOFT = 0.012  # width of the soft lesion edge (partial-volume effect)


def _region(cx: tuple, cy: tuple, r: tuple, f: float) -> tuple[float, float, float, float]:
    m = r[1] * f + _SOFT  # rounded outwards so the box always contains the lesion
    lo, hi = (lambda x: math.floor(x * 100) / 100), (lambda x: math.ceil(x * 100) / 100)
    return (lo(cx[0] - m), lo(cy[0] - m), hi(cx[1] + m), hi(cy[1] + m))


#: class -> (x0, y0, x1, y1) box, in image fractions, holding every pixel of the lesion.
LESION_REGIONS: dict[str, tuple[float, float, float, float]] = {c: _region(*p) for c, p in _LESIONS.items()}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean smooth texture: ``cells`` x ``cells`` noise upsampled bicubically."""
    small = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), "F")
    return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32)


def render_slice(rng: np.random.Generator, cls: str, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic slice.

    Parameters
    ----------
    rng : numpy.random.Generator
    cls : str
        One of :data:`DEMO_CLASSES`.
    size : int
        Width and height in pixels.

    Returns
    -------
    image : ndarray of uint8, shape (size, size)
    lesion : ndarray of bool, shape (size, size)
        Pixels the lesion changed (all False for ``notumor``).
    """
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02, 2)
    a, b = rng.uniform(0.36, 0.40), rng.uniform(0.42, 0.46)
    t = np.deg2rad(rng.uniform(-8, 8))
    u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / a
    v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / b
    rho = np.sqrt(u**2 + v**2)

    img = np.full((size, size), 0.03, np.float32)
    brain = rho < 1.0
    tissue = 0.42 + 0.06 * (rho < 0.7) + 0.04 * _smooth_noise(rng, size, 8) + 0.02 * _smooth_noise(rng, size, 16)
    img[brain] = tissue[brain]
    img[(rho >= 1.0) & (rho < 1.09)] = 0.85
    for dx in (-0.05, 0.05):  # ventricles
        vent = ((xx - cx - dx) / 0.035) ** 2 + ((yy - cy + 0.03) / 0.08) ** 2 < 1.0
        img[vent] = 0.15

    lesion = np.zeros((size, size), bool)
    if cls in _LESIONS:
        (x0, x1), (y0, y1), (r0, r1), f = _LESIONS[cls]
        lx, ly, r = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(r0, r1)
        d = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2)
        if cls == "glioma":  # irregular outline, bounded by r * f
            ang = np.arctan2(yy - ly, xx - lx)
            k = rng.integers(3, 6)
            r_edge = r * (1 + 0.17 * np.sin(k * ang + rng.uniform(0, 6.3)) + 0.1 * np.sin((k + 2) * ang))
        else:
            r_edge = np.full_like(d, r)
        inside = np.clip((r_edge - d) / _SOFT, 0.0, 1.0)
        contrast = rng.uniform(0.7, 1.0)
        if cls == "glioma":
            core = np.clip((0.55 * r_edge - d) / _SOFT, 0.0, 1.0)
            target = 0.80 - 0.55 * core + 0.06 * _smooth_noise(rng, size, 16)
        elif cls == "meningioma":
            target = np.full_like(d, 0.80)
        else:
            target = np.full_like(d, 0.92)
        img = img + inside * contrast * (target - img)
        lesion = inside > 0

    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.03, img.shape).astype(np.float32)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8), lesion


def make_demo_dataset(
    root: str | Path, *, n_train: int = 60, n_val: int = 20, n_test: int = 20, size: int = 64, seed: int = 0
) -> Path:
    """Write the synthetic dataset as an image folder ``root/{train,val,test}/<class>/*.png``.

    Parameters
    ----------
    root : path-like
        Output folder: created, or reused when it holds a demo written earlier (a marker
        file records the parameters; same parameters → returned as is, else rewritten).
        A non-empty folder without the marker is refused.
    n_train, n_val, n_test : int
        Images per class and split (>= 1).
    size : int
        Image width/height in pixels (>= 16).
    seed : int
        Seed of the whole dataset; same arguments → byte-identical files.

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 1 or size < 16:
        raise MedauditError("demo data: need at least 1 image per class and split and size >= 16")
    params = {"classes": list(DEMO_CLASSES), "counts": counts, "size": size, "seed": seed, "version": 2}
    marker = root / _MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return root
        for s in _SPLITS:
            shutil.rmtree(root / s, ignore_errors=True)
        marker.unlink()
    elif root.exists() and any(root.iterdir()):
        raise MedauditError(f"{root}: folder is not empty and holds no demo data; choose an empty or new folder")
    for si, split in enumerate(_SPLITS):
        for ci, cls in enumerate(DEMO_CLASSES):
            out = root / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split]):
                img, _ = render_slice(np.random.default_rng([seed, si, ci, i]), cls, size)
                Image.fromarray(img, "L").save(out / f"{cls}_{i:03d}.png")
    marker.write_text(json.dumps(params, sort_keys=True))
    return root
