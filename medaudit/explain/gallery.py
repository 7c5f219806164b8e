"""The Grad-CAM step of a report: checkpoints + predictions + data split → tile files and cam blocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medaudit.errors import MedauditError
from medaudit.explain.cam import compute_cams, resolve_method
from medaudit.explain.evidence import localisation_for_models, split_inputs
from medaudit.explain.faithfulness import faithfulness
from medaudit.explain.select import select_gallery
from medaudit.explain.tiles import draw_tiles
from medaudit.naming import file_stems as unique_stems
from medaudit.naming import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from medaudit.models.checkpoint import Loaded
    from medaudit.predictions import Predictions


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
    faithful: bool = True,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> dict:
    """CAMs and tiles for one model's gallery items (from :func:`select_gallery`).

    Parameters
    ----------
    loaded : Loaded
        The checkpoint; its model is left as it was (see :func:`compute_cams`).
    items : sequence of dict
        Gallery items (``sample_id``, ``target`` class index, labels and group for the caption).
    split : data split
        The split the items' sample ids belong to.
    name : str
        The model's display name.
    out_dir : path
        Folder the tile files are written to.
    file_stem : str, optional
        Tile file names are ``<file_stem>_<i>.<ext>``; default: ``name`` made file-safe.
    method : str
        A key of :data:`medaudit.explain.cam.CAM_METHODS`.
    layer : str, optional
        Dotted target layer; default chosen per architecture.
    batch_size : int
        Images per CAM call.
    fmt : {"jpeg", "png"}
    faithful : bool
        Also measure the maps' faithfulness on these samples
        (:func:`medaudit.explain.faithfulness.faithfulness`).
    seed, n_bootstrap : int
        Seed of the random maps and the intervals; resamples of the intervals.

    Returns
    -------
    dict
        The report's ``models[i].cam`` block: ``method`` (concrete, also for ``"auto"``),
        ``layer`` (the concrete one) and ``layer_reason``, ``tiles`` (one dict per item, with its
        ``file``), ``n_invalid``, ``faithfulness`` (or None) and ``reason`` (set, with the tiles still
        showing the inputs, when no CAM could be drawn).
    """
    if not items:
        return {"method": resolve_method(loaded.model, method), "layer": layer, "layer_reason": None, "tiles": [],
                "n_invalid": 0, "faithfulness": None, "reason": "no samples selected for the gallery"}
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
    faith = None
    if faithful and n_bad < len(items):
        faith = faithfulness(loaded.model, x, res.targets, res.cams, res.valid, res.grid or (7, 7), seed=seed,
                             n_bootstrap=n_bootstrap, batch_size=batch_size)
    return {"method": res.method, "layer": res.layer, "layer_reason": res.layer_reason, "tiles": tiles,
            "n_invalid": n_bad, "faithfulness": faith, "reason": reason}


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
    masks_dir: str | Path | None = None,
    boxes_csv: str | Path | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """Gallery for every model on the same samples (chosen by :func:`select_gallery`).

    A model whose CAM fails for a reason of its own (e.g. a chosen layer missing in one
    architecture) raises: the user asked for that layer, so silence would mislead.

    Parameters
    ----------
    loaded : sequence of Loaded, length M
    preds : sequence of Predictions, length M
        Each model's predictions on ``split`` (they choose the gallery).
    split : data split
    names : sequence of str, length M
        Display names, the keys of the result.
    file_stems : sequence of str, length M, optional
        Tile file stems; default: :func:`medaudit.naming.file_stems` of ``names``.
    negative_classes : sequence of str
        The "healthy" classes; a disease sample predicted as one is a missed disease.
    method : str
    layer : str, optional
    per_group : int
        Samples per gallery group (missed disease, other errors, confident correct).
    out_dir : path
        Folder the tile files are written to.
    batch_size : int
    masks_dir, boxes_csv : path, optional
        Lesion masks or boxes (:func:`medaudit.explain.evidence.read_lesions`): each block then
        gains ``localisation`` (:func:`medaudit.explain.evidence.localisation_block`), the first
        model of each pair holding the paired tests under ``localisation.paired[<other model>]``.
    n_bootstrap, seed : int
        Resamples and seed of the faithfulness and localisation intervals.

    Returns
    -------
    dict of str to dict
        ``{model name: cam block}`` (see :func:`cam_block`); for multilabel tasks every block
        has no tiles and a ``reason``.
    """
    if not (len(loaded) == len(preds) == len(names)):
        raise MedauditError(f"{len(loaded)} checkpoints, {len(preds)} predictions and {len(names)} names")
    if preds and preds[0].multilabel:
        return {n: {"method": method, "layer": layer, "tiles": [], "n_invalid": 0,
                    "reason": "Grad-CAM galleries are not available for multilabel tasks yet"} for n in names}
    galleries = select_gallery(preds, negative_classes=negative_classes, per_group=per_group)
    stems = list(file_stems) if file_stems is not None else unique_stems(names)
    blocks = {
        n: cam_block(ld, g["items"], split, name=n, out_dir=out_dir, file_stem=stem, method=method, layer=layer,
                     batch_size=batch_size, seed=seed, n_bootstrap=n_bootstrap)
        for n, stem, ld, g in zip(names, stems, loaded, galleries, strict=True)
    }
    if masks_dir is not None or boxes_csv is not None:
        loc = localisation_for_models(loaded, names, split, negative_classes, masks_dir=masks_dir, boxes_csv=boxes_csv,
                                      method=method, layer=layer, batch_size=batch_size, n_bootstrap=n_bootstrap,
                                      seed=seed)
        for n in names:
            blocks[n]["localisation"] = loc[n]
    return blocks
