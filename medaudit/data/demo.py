"""Deterministic synthetic "brain MRI" demo data: 4 classes of grayscale axial slices from
patients scanned at two sites, with a CSV manifest of their metadata.

Every image is an elliptical head (bright skull ring, textured brain, two dark
ventricles, noise, random pose/contrast); tumour classes add one lesion whose centre,
size and look are drawn inside a fixed class region. Regions are boxes
``(x0, y0, x1, y1)`` in fractions of the image width/height (origin top-left) that
contain the *whole* lesion (:data:`LESION_REGIONS`):

* ``glioma``      (0.15, 0.15, 0.55, 0.55) upper-left hemisphere; irregular outline,
  bright enhancing rim around a dark necrotic core;
* ``meningioma``  (0.57, 0.28, 0.84, 0.67) right periphery against the skull; round,
  smooth, homogeneously bright;
* ``pituitary``   (0.41, 0.58, 0.59, 0.77) midline, low (sellar region); small, bright;
* ``notumor``     no lesion.

**Patients.** Each patient has one diagnosis (class) and contributes 2-4 slices
(:data:`SLICES_PER_PATIENT`) to one split only. Head shape, pose, brightness, site, sex,
age and the lesion (place, size, outline, contrast) are drawn once per patient; each
slice redraws the texture and the noise and jitters pose, lesion size and contrast a
little, so a patient's slices are correlated but not copies.

**Sites.** :data:`SITE_ACQUISITION` gives each site's lesion contrast (fraction of the way
from tissue to lesion intensity), noise and gain. Site B is the planted problem: fainter
lesions, twice the noise, a darker image; it is a quarter of the training and validation
patients and half of the test patients (:data:`SITE_B_SHARE`, block-randomised in blocks
of 4 patients per split and class), so a model trained on the demo misses more disease on
site B. Sex is F/M (meningioma 70 % F, else 50 %); age in whole years from a normal
distribution per class (:data:`AGE`), clipped to 18-90.

**Determinism.** Patients are numbered within (split, class); how many slices each has
and their sites come from one stream seeded by ``(seed, split, class)``, the patient's
draws from ``(seed, split, class, patient)``, the slice's from ``(seed, split, class,
index)``. So image ``index`` of a split and class depends only on ``(seed, split, class,
index)``: changing ``n_train`` does not change the test set, and a larger ``n_test`` only
adds images (the last patient of a class may then gain slices).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medaudit.errors import MedauditError

DEMO_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
DEMO_SITES = ("A", "B")
MANIFEST = "manifest.csv"
#: The manifest's columns; ``patient_id`` is the patient column (hashed when the manifest is loaded).
MANIFEST_COLUMNS = ("path", "label", "split", "patient_id", "sex", "age", "site")
SLICES_PER_PATIENT = (2, 4)  # inclusive range
#: site -> (lesion contrast range, noise sd, gain range); intensities are in [0, 1] before quantisation.
SITE_ACQUISITION = {"A": ((0.7, 1.0), 0.03, (0.9, 1.1)), "B": ((0.3, 0.5), 0.06, (0.8, 0.95))}
#: split -> patients of site B in each block of 4 (train 1 in 4, test 2 in 4).
SITE_B_SHARE = {"train": 1, "val": 1, "test": 2}
#: class -> (mean, sd) of age in years; P(female) per class.
AGE = {"glioma": (55.0, 14.0), "meningioma": (60.0, 12.0), "notumor": (45.0, 16.0), "pituitary": (45.0, 14.0)}
FEMALE = {"glioma": 0.5, "meningioma": 0.7, "notumor": 0.5, "pituitary": 0.5}
_SPLITS = ("train", "val", "test")
_MARKER = "medaudit-demo.json"
_BLOCK = 4
# Last element of every seed key: what it seeds. numpy's SeedSequence pads keys with zeros, so
# keys of one length with a non-zero tag never collide ([1, 2, 0] and [1, 2] seed the same stream).
_LAYOUT, _PATIENT, _SLICE = 1, 2, 3

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


@dataclass(frozen=True)
class DemoPatient:
    """What one patient's slices share (drawn by :func:`draw_patient`)."""

    cls: str
    site: str
    sex: str
    age: int
    head: tuple[float, float, float, float, float]  # centre x, centre y, semi-axes a, b, tilt (degrees)
    gain: float
    lesion: tuple[float, ...] | None  # x, y, radius, contrast, outline lobes k, outline phase (None: no tumour)


def draw_patient(rng: np.random.Generator, cls: str, site: str = "A") -> DemoPatient:
    """Draw one patient of class ``cls`` scanned at ``site`` (one of :data:`DEMO_SITES`)."""
    (c0, c1), _, (g0, g1) = SITE_ACQUISITION[site]
    head = (*(0.5 + rng.uniform(-0.02, 0.02, 2)), rng.uniform(0.36, 0.40), rng.uniform(0.42, 0.46),
            rng.uniform(-8, 8))
    gain = rng.uniform(g0, g1)
    lesion = None
    if cls in _LESIONS:
        (x0, x1), (y0, y1), (r0, r1), _ = _LESIONS[cls]
        lesion = (rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(r0, r1), rng.uniform(c0, c1),
                  float(rng.integers(3, 6)), rng.uniform(0, 6.3))
    sex = "F" if rng.random() < FEMALE[cls] else "M"
    mean, sd = AGE[cls]
    age = int(np.clip(np.rint(rng.normal(mean, sd)), 18, 90))
    return DemoPatient(cls, site, sex, age, tuple(float(h) for h in head), float(gain),
                       None if lesion is None else tuple(float(v) for v in lesion))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean smooth texture: ``cells`` x ``cells`` noise upsampled bicubically."""
    small = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), "F")
    return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32)


def render_slice(rng: np.random.Generator, cls: str, size: int = 64, *,
                 patient: DemoPatient | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic slice.

    Parameters
    ----------
    rng : numpy.random.Generator
        The slice's own draws (texture, noise, jitter); also the patient's when ``patient`` is None.
    cls : str
        One of :data:`DEMO_CLASSES`.
    size : int
        Width and height in pixels.
    patient : DemoPatient, optional
        The patient the slice belongs to (its class must be ``cls``); default: a new site-A
        patient drawn from ``rng``.

    Returns
    -------
    image : ndarray of uint8, shape (size, size)
    lesion : ndarray of bool, shape (size, size)
        Pixels the lesion changed (all False for ``notumor``).
    """
    if patient is None:
        patient = draw_patient(rng, cls)
    elif patient.cls != cls:
        raise ValueError(f"patient of class {patient.cls!r} cannot give a {cls!r} slice")
    (c0, c1), noise, (g0, g1) = SITE_ACQUISITION[patient.site]
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    hx, hy, a, b, tilt = patient.head
    cx, cy = hx + rng.uniform(-0.005, 0.005), hy + rng.uniform(-0.005, 0.005)  # the patient moves a little
    t = np.deg2rad(tilt + rng.uniform(-1.0, 1.0))
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
    if patient.lesion is not None:
        _, _, (r0, r1), _ = _LESIONS[cls]
        lx, ly, r, contrast, k, phase = patient.lesion
        # another slice through the same tumour: a little larger or smaller, kept inside the class range
        r = float(np.clip(r * rng.uniform(0.9, 1.1), r0, r1))
        contrast = float(np.clip(contrast + rng.uniform(-0.05, 0.05), c0, c1))
        d = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2)
        if cls == "glioma":  # irregular outline, bounded by r * f
            ang = np.arctan2(yy - ly, xx - lx)
            r_edge = r * (1 + 0.17 * np.sin(k * ang + phase) + 0.1 * np.sin((k + 2) * ang))
        else:
            r_edge = np.full_like(d, r)
        inside = np.clip((r_edge - d) / _SOFT, 0.0, 1.0)
        if cls == "glioma":
            core = np.clip((0.55 * r_edge - d) / _SOFT, 0.0, 1.0)
            target = 0.80 - 0.55 * core + 0.06 * _smooth_noise(rng, size, 16)
        elif cls == "meningioma":
            target = np.full_like(d, 0.80)
        else:
            target = np.full_like(d, 0.92)
        img = img + inside * contrast * (target - img)
        lesion = inside > 0

    gain = float(np.clip(patient.gain * rng.uniform(0.98, 1.02), g0, g1))
    img = img * gain + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8), lesion


def _layout(seed: int, si: int, ci: int, n: int) -> tuple[list[int], list[str]]:
    """Patient number of each of the ``n`` images of a split and class, and each patient's site.

    Two streams, each read as a prefix, so that image ``index`` gets the same patient and site
    whatever ``n`` is.
    """
    lo, hi = SLICES_PER_PATIENT
    counts = np.random.default_rng([seed, si, ci, 0, _LAYOUT]).integers(lo, hi + 1, size=n)
    owner = np.repeat(np.arange(n), counts)[:n].tolist()
    rng = np.random.default_rng([seed, si, ci, 1, _LAYOUT])
    n_b = SITE_B_SHARE[_SPLITS[si]]
    sites = [str(s) for _ in range(-(-n // _BLOCK)) for s in rng.permutation(["A"] * (_BLOCK - n_b) + ["B"] * n_b)]
    return owner, sites[: owner[-1] + 1]


def make_demo_dataset(
    root: str | Path, *, n_train: int = 60, n_val: int = 20, n_test: int = 20, size: int = 64, seed: int = 0,
    leak_patients: int = 0, masks: str | Path | None = None,
) -> Path:
    """Write the synthetic dataset: ``root/{train,val,test}/<class>/*.png`` and ``root/manifest.csv``.

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
    leak_patients : int
        Plant leakage (for tests of the leakage check): the first ``leak_patients`` test patients
        of each class (at most as many as the training split has) are training patients of that
        class again (same id, site, head and lesion; new slices). 0 (default): every patient is in one split only.
    masks : path-like, optional
        Also write each tumour image's lesion mask (0/255 PNG) to ``masks/<same relative path>``
        (for ``--masks``; outside ``root``, which must stay a plain image folder).

    Returns
    -------
    Path
        ``root``. The folder loads as an image folder (``--data root``) or, with the patients,
        sites, sex and age, as a manifest (``--data root/manifest.csv``, columns
        :data:`MANIFEST_COLUMNS`, paths relative to ``root``, patient column ``patient_id``).
    """
    root = Path(root)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 1 or size < 16:
        raise MedauditError("demo data: need at least 1 image per class and split and size >= 16")
    if leak_patients < 0:
        raise MedauditError(f"demo data: leak_patients must be >= 0, got {leak_patients}", param="leak_patients")
    params = {"classes": list(DEMO_CLASSES), "counts": counts, "size": size, "seed": seed, "version": 3,
              "leak_patients": leak_patients}
    if masks is not None:
        params["masks"] = str(Path(masks).resolve())
    marker = root / _MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return root
        for s in _SPLITS:
            shutil.rmtree(root / s, ignore_errors=True)
        (root / MANIFEST).unlink(missing_ok=True)
        marker.unlink()
    elif root.exists() and any(root.iterdir()):
        raise MedauditError(f"{root}: folder is not empty and holds no demo data; choose an empty or new folder")
    rows = []
    for si, split in enumerate(_SPLITS):
        for ci, cls in enumerate(DEMO_CLASSES):
            out = root / split / cls
            out.mkdir(parents=True, exist_ok=True)
            owner, sites = _layout(seed, si, ci, counts[split])
            train_sites = _layout(seed, 0, ci, n_train)[1]  # the patients a planted leak reuses
            patients: dict[int, tuple[DemoPatient, str]] = {}
            for i, p in enumerate(owner):
                if p not in patients:
                    leaked = split == "test" and p < min(leak_patients, len(train_sites))
                    home, site = (0, train_sites[p]) if leaked else (si, sites[p])
                    rng_p = np.random.default_rng([seed, home, ci, p, _PATIENT])
                    patients[p] = (draw_patient(rng_p, cls, site), f"DEMO-{home}{ci}{p:04d}")
                patient, raw_id = patients[p]
                img, lesion = render_slice(np.random.default_rng([seed, si, ci, i, _SLICE]), cls, size, patient=patient)
                name = f"{cls}_{i:03d}.png"
                Image.fromarray(img, "L").save(out / name)
                if masks is not None and lesion.any():
                    (Path(masks) / split / cls).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(lesion.astype(np.uint8) * 255, "L").save(Path(masks) / split / cls / name)
                rows.append((f"{split}/{cls}/{name}", cls, split, raw_id, patient.sex, patient.age, patient.site))
    with open(root / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    marker.write_text(json.dumps(params, sort_keys=True))
    return root
