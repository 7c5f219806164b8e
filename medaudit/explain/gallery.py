"""The Grad-CAM step of a report: checkpoints + predictions + data split → tile files and cam blocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medaudit.errors import MedauditError
from medaudit.explain.cam import compute_cams
from medaudit.explain.select import select_gallery
from medaudit.explain.tiles import draw_tiles
from medaudit.naming import file_stems as unique_stems
from medaudit.naming import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from medaudit.models.checkpoint import Loaded
    from medaudit.predictions import Predictions


def split_inputs(split, recipe, sample_ids: Sequence[str], batch_size: int = 64):
    """Normalised model inputs ``(B, C, s, s)`` for the given sample ids of a data split."""
    import torch

    from medaudit.models.preprocess import iter_batches

    pos = {sid: i for i, sid in enumerate(split.sample_ids)}
    missing = [s for s in sample_ids if s not in pos]
    if missing:
        raise MedauditError(f"--ids: {len(missing)} ids are not in the split (e.g. {missing[:3]})")
    idx = np.array([pos[s] for s in sample_ids], dtype=np.int64)
    xs = [x for x, _y, _i in iter_batches(split, recipe, batch_size, indices=idx, num_workers=0)]
    return torch.cat(xs) if xs else torch.zeros((0, recipe.in_chans, recipe.img_size, recipe.img_size))


def cam_block(
    loaded: Loaded,
    items: Sequence[dict],
    split,
    *,
    name: str,
    out_dir: str | Path,
    file_stem: str | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 16,
    fmt: str = "jpeg",
) -> dict:
    """CAMs and tiles for one model's gallery items (from :func:`select_gallery`).

    Returns the report's ``models[i].cam`` block:
    ``{"method", "layer", "tiles": [...], "n_invalid", "reason"}``; ``reason`` is set
    (and tiles still show the inputs) when no CAM could be drawn.
    """
    if not items:
        return {"method": method, "layer": layer, "tiles": [], "n_invalid": 0,
                "reason": "no samples selected for the gallery"}
    x = split_inputs(split, loaded.recipe, [it["sample_id"] for it in items])
    res = compute_cams(loaded.model, x, [it["target"] for it in items], method=method, layer=layer,
                       arch=loaded.arch, batch_size=batch_size)
    images = np.stack([loaded.recipe.denormalize(xi) for xi in x])
    infos = [{**it, "reason": r} for it, r in zip(items, res.reasons, strict=True)]
    tiles = draw_tiles(images, res.cams, infos, out_dir, file_stem or safe_name(name), fmt=fmt)
    n_bad = int((~res.valid).sum())
    reason = None
    if n_bad == len(items):
        reason = f"no valid CAM for any of {n_bad} samples: {res.reasons[0]}"
    return {"method": method, "layer": res.layer, "tiles": tiles, "n_invalid": n_bad, "reason": reason}


def cam_tiles_for_report(
    loaded: Sequence[Loaded],
    preds: Sequence[Predictions],
    split,
    *,
    names: Sequence[str],
    file_stems: Sequence[str] | None = None,
    negative_classes: Sequence[str],
    method: str = "gradcam",
    layer: str | None = None,
    per_group: int = 8,
    out_dir: str | Path,
    batch_size: int = 16,
) -> dict[str, dict]:
    """Gallery for every model on the same samples; returns ``{model name: cam block}``.

    A model whose CAM fails for a reason of its own (e.g. ``--cam-layer`` missing in one
    architecture) raises: the user asked for that layer, so silence would mislead.
    """
    if not (len(loaded) == len(preds) == len(names)):
        raise MedauditError(f"{len(loaded)} checkpoints, {len(preds)} predictions and {len(names)} names")
    if preds and preds[0].multilabel:
        return {n: {"method": method, "layer": layer, "tiles": [], "n_invalid": 0,
                    "reason": "Grad-CAM galleries are not available for multilabel tasks yet"} for n in names}
    galleries = select_gallery(preds, negative_classes=negative_classes, per_group=per_group)
    stems = list(file_stems) if file_stems is not None else unique_stems(names)
    return {
        n: cam_block(ld, g["items"], split, name=n, out_dir=out_dir, file_stem=stem, method=method, layer=layer,
                     batch_size=batch_size)
        for n, stem, ld, g in zip(names, stems, loaded, galleries, strict=True)
    }
