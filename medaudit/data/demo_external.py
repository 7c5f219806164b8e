"""The demo's external site: the synthetic generator of :mod:`medaudit.data.demo` scanned elsewhere.

Same anatomy, lesions and classes as the demo's site A, acquired at another contrast and noise
level: the rendered slice ``x`` (in [0, 1]) becomes ``0.18 + 0.62 x`` (lower contrast, lifted
floor) plus Gaussian noise of sd 0.07 (site A: 0.03). A model trained on the demo sees a covariate
shift (``p(x | y)`` changes, the class mix does not), which ``medaudit report --external`` should
detect and name. One split (``root/<class>/*.png``), so the cohort is all of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medaudit.data.demo import DEMO_CLASSES, draw_patient, render_slice
from medaudit.errors import MedauditError

EXTERNAL_CONTRAST = (0.18, 0.62)  # offset, gain applied to the rendered slice in [0, 1]
EXTERNAL_NOISE = 0.07
_MARKER = "medaudit-demo-external.json"
_TAG = 0xE7  # the stream tag of the external site's draws (the demo's own streams use other tags)


def make_external_site(root: str | Path, *, n_per_class: int = 20, size: int = 64, seed: int = 0) -> Path:
    """Write the external site's images: ``root/<class>/ext_<i>.png``.

    Parameters
    ----------
    root : path-like
        Created, or reused when it holds the same external site (a marker records the parameters;
        other parameters rewrite it). A non-empty folder without the marker is refused.
    n_per_class : int
        Images per class (>= 1); one patient per image.
    size : int
        Width/height in pixels (>= 16).
    seed : int
        Same arguments -> byte-identical files.

    Returns
    -------
    Path
        ``root`` (loads as an image folder with one split, ``all``).
    """
    root = Path(root)
    if n_per_class < 1 or size < 16:
        raise MedauditError("external demo site: need at least 1 image per class and size >= 16")
    params = {"classes": list(DEMO_CLASSES), "n_per_class": n_per_class, "size": size, "seed": seed,
              "contrast": list(EXTERNAL_CONTRAST), "noise": EXTERNAL_NOISE, "version": 1}
    marker = root / _MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return root
        for cls in DEMO_CLASSES:
            for f in (root / cls).glob("ext_*.png"):
                f.unlink()
        marker.unlink()
    elif root.exists() and any(root.iterdir()):
        raise MedauditError(f"{root}: folder is not empty and holds no external demo site; choose an empty or new "
                            "folder")
    offset, gain = EXTERNAL_CONTRAST
    for ci, cls in enumerate(DEMO_CLASSES):
        out = root / cls
        out.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, _TAG, ci, i])
            img, _ = render_slice(rng, cls, size, patient=draw_patient(rng, cls, "A"))
            x = offset + gain * (img.astype(np.float32) / 255.0) + rng.normal(0.0, EXTERNAL_NOISE, img.shape)
            Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), "L").save(out / f"ext_{i:03d}.png")
    marker.write_text(json.dumps(params, sort_keys=True))
    return root
