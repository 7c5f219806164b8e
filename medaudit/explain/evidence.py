"""CAMs as measured evidence: lesion masks/boxes in, localisation per model; faithfulness without masks.

* :func:`read_lesions` — ``--masks DIR`` (one mask image per sample at the sample's relative path)
  or ``--boxes CSV`` (``path,x0,y0,x1,y1`` in image pixels) → boolean masks at the model's input,
  through the checkpoint's own resize recipe (so a crop or letterbox moves the mask as it moves
  the image);
* :func:`localisation_block` — every model's CAM of the true class on every image with a lesion,
  summarised by :mod:`medaudit.metrics.localisation` (pointing game, energy inside; paired tests);

Faithfulness without masks is :mod:`medaudit.explain.faithfulness`.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medaudit.errors import MedauditError, MedauditWarning
from medaudit.explain.cam import compute_cams
from medaudit.metrics.localisation import (
    compare_localisation,
    localisation_summary,
    pointing_and_energy,
)
from medaudit.models.preprocess import iter_batches
from medaudit.predict import sample_positions

BOX_COLUMNS = ("path", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class Lesions:
    """Lesion masks of the samples of a split that have one.

    Attributes
    ----------
    positions : list of int, length L
        Positions in the split.
    masks : ndarray of bool, shape (L, s, s)
        At the model input (after the recipe's resize).
    source : {"masks", "boxes"}
    n_missing : int
        Samples of a disease class without a mask or box.
    """

    positions: list[int]
    masks: np.ndarray
    source: str
    n_missing: int


def split_inputs(split, recipe, sample_ids: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Normalised model inputs ``(B, C, s, s)`` for the given sample ids of a data split, in their order."""
    idx = sample_positions(split, sample_ids)
    xs = [x for x, _y, _i in iter_batches(split, recipe, batch_size, indices=idx, num_workers=0)]
    return torch.cat(xs) if xs else torch.zeros((0, recipe.in_chans, recipe.img_size, recipe.img_size))


def _mask_candidates(root: Path, sid: str) -> list[Path]:
    p = root / sid
    return [p] if p.suffix.lower() == ".png" else [p, p.with_suffix(".png"), root / f"{sid}.png"]


def _read_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            header = tuple((rows[0].keys() if rows else ()) or ())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MedauditError(f"{path}: cannot read the boxes CSV ({e})", param="boxes") from None
    if not rows or any(c not in header for c in BOX_COLUMNS):
        raise MedauditError(f"{path}: the boxes CSV needs a header {','.join(BOX_COLUMNS)} and at least one row",
                            param="boxes")
    boxes: dict[str, list] = {}
    for i, r in enumerate(rows, start=2):
        try:
            x0, y0, x1, y1 = (float(r[c]) for c in BOX_COLUMNS[1:])
        except (TypeError, ValueError):
            raise MedauditError(f"{path}: line {i}: x0,y0,x1,y1 must be numbers (got "
                                f"{[r.get(c) for c in BOX_COLUMNS[1:]]})", param="boxes") from None
        if not (x1 > x0 and y1 > y0):
            raise MedauditError(f"{path}: line {i}: the box needs x1 > x0 and y1 > y0 (pixels, top-left origin)",
                                param="boxes")
        boxes.setdefault((r["path"] or "").strip().replace("\\", "/"), []).append((x0, y0, x1, y1))
    return boxes


def _to_input(mask: np.ndarray, recipe) -> np.ndarray:
    """Boolean mask (H, W) at image resolution → (s, s) at the model input, by the image's own resize."""
    x = recipe.batch_from_array((mask.astype(np.uint8) * 255)[None])[0, 0]
    return (x.numpy() * recipe.std[0] + recipe.mean[0]) >= 0.5


def check_lesion_source(masks_dir: Path | None, boxes_csv: Path | None) -> None:
    """Refuse, before any inference, both sources at once or a source that is not there."""
    if masks_dir is not None and boxes_csv is not None:
        raise MedauditError("give either --masks DIR or --boxes CSV, not both", param="masks")
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise MedauditError(f"{masks_dir}: --masks must be a folder of mask images at the samples' relative paths",
                            param="masks")
    if boxes_csv is not None and not Path(boxes_csv).is_file():
        raise MedauditError(f"{boxes_csv}: --boxes file not found (a CSV path,x0,y0,x1,y1)", param="boxes")


def read_lesions(split, recipe, negative_idx: Sequence[int], *, masks_dir: Path | None = None,
                 boxes_csv: Path | None = None) -> Lesions:
    """Lesion masks of a split's samples at the model input.

    Parameters
    ----------
    split : data split
        Its ``sample_ids`` are the relative paths masks and boxes are looked up by.
    recipe : Recipe
        The checkpoint's preprocessing (masks are resized as its images are).
    negative_idx : sequence of int
        "Healthy" classes: their samples need no lesion (not counted as missing).
    masks_dir : Path, optional
        Folder of mask images (any non-zero pixel is lesion), at ``masks_dir/<sample id>`` (or
        with a ``.png`` suffix), each the size of its image.
    boxes_csv : Path, optional
        CSV ``path,x0,y0,x1,y1`` (pixels of the original image; several rows per path are unioned).

    Returns
    -------
    Lesions

    Raises
    ------
    MedauditError
        Both or neither source given, a missing folder/file, an unreadable or mis-sized mask, a box
        outside its image, or no sample of the split with a lesion.
    """
    if masks_dir is None and boxes_csv is None:
        raise MedauditError("give --masks DIR or --boxes CSV", param="masks")
    check_lesion_source(masks_dir, boxes_csv)
    boxes = None
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
    else:
        boxes_csv = Path(boxes_csv)
        boxes = _read_boxes(boxes_csv)
    positions, masks, missing = [], [], 0
    for i, sid in enumerate(split.sample_ids):
        if boxes is not None:
            rects = boxes.get(sid)
            if rects is None:
                missing += int(split.labels[i]) not in negative_idx
                continue
            w, h = split.load_image(i).size
            m = np.zeros((h, w), bool)
            for x0, y0, x1, y1 in rects:
                if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                    raise MedauditError(f"{boxes_csv}: box {(x0, y0, x1, y1)} of {sid} lies outside its {w}x{h} "
                                        "image", param="boxes")
                m[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = True
        else:
            found = next((p for p in _mask_candidates(masks_dir, sid) if p.is_file()), None)
            if found is None:
                missing += int(split.labels[i]) not in negative_idx
                continue
            try:
                with Image.open(found) as im:
                    m = np.asarray(im.convert("L")) > 0
            except (OSError, ValueError) as e:
                raise MedauditError(f"{found}: cannot read the mask image ({e})", param="masks") from None
            size = split.load_image(i).size
            if (m.shape[1], m.shape[0]) != size:
                raise MedauditError(f"{found}: mask is {m.shape[1]}x{m.shape[0]} but its image {sid} is "
                                    f"{size[0]}x{size[1]}; masks must match their images pixel for pixel",
                                    param="masks")
        if m.any():
            positions.append(i)
            masks.append(_to_input(m, recipe))
    source = "masks" if masks_dir is not None else "boxes"
    where = masks_dir if masks_dir is not None else boxes_csv
    if not positions:
        raise MedauditError(f"{where}: no sample of split '{split.name}' has a non-empty lesion "
                            f"{'mask' if source == 'masks' else 'box'} (looked up by sample id, e.g. "
                            f"{split.sample_ids[0]!r})", param=source)
    if missing:
        warnings.warn(f"{where}: {missing} disease sample(s) of split '{split.name}' have no lesion {source[:-1]}; "
                      "localisation is measured on the others", MedauditWarning, stacklevel=2)
    return Lesions(positions, np.stack(masks), source, missing)


def localisation_block(loaded: Sequence, names: Sequence[str], split, lesions: Sequence[Lesions],
                       class_names: Sequence[str],
                       *, method: str = "auto", layer: str | None = None, batch_size: int = 16,
                       n_bootstrap: int = 1000, seed: int = 0) -> tuple[dict[str, dict], list[dict]]:
    """Every model's CAM of the true class on every lesion image, measured against the lesion.

    Parameters
    ----------
    loaded : sequence of Loaded, length M
    names : sequence of str, length M
    split : data split
    lesions : sequence of Lesions, length M
        From :func:`read_lesions` with each model's recipe (the same samples, masks at each input size).
    class_names : sequence of str
    method, layer, batch_size :
        As in :func:`~medaudit.explain.cam.compute_cams`.
    n_bootstrap, seed :
        Of the energy intervals.

    Returns
    -------
    per_model : dict
        ``{name: {"source", "n", "n_invalid", "n_missing", "per_class", "overall", "method", "layer"}}``
        (:func:`~medaudit.metrics.localisation.localisation_summary`).
    pairs : list of dict
        ``{"a", "b", **compare_localisation}`` for every pair of models.
    """
    positions = lesions[0].positions
    if any(les.positions != positions for les in lesions):
        raise MedauditError("internal: lesion masks of different models cover different samples")
    labels = np.asarray(split.labels)[positions].astype(np.int64)
    ids = [split.sample_ids[i] for i in positions]
    per_image, per_model = {}, {}
    for ld, name, les in zip(loaded, names, lesions, strict=True):
        parts, used = [], None
        chunk = max(batch_size, 64)
        for s in range(0, len(ids), chunk):  # bounded memory: maps are reduced to numbers chunk by chunk
            x = split_inputs(split, ld.recipe, ids[s:s + chunk])
            res = compute_cams(ld.model, x, labels[s:s + chunk].tolist(), method=method, layer=layer, arch=ld.arch,
                               batch_size=batch_size)
            masks = les.masks[s:s + chunk]
            if masks.shape[1:] != res.cams.shape[1:]:
                masks = np.stack([_resize_bool(m, res.cams.shape[1:]) for m in masks])
            parts.append(pointing_and_energy(res.cams, masks))
            used = res
        hit, energy, ok = (np.concatenate([p[j] for p in parts]) for j in range(3))
        per_image[name] = (hit, energy, ok)
        summary = localisation_summary(hit, energy, ok, labels, class_names, n_bootstrap=n_bootstrap, seed=seed)
        # What a map spread evenly over the image would score as energy inside: the lesion's area share.
        area = les.masks.reshape(len(les.masks), -1).mean(axis=1)
        for k, c in enumerate(class_names):
            if c in summary["per_class"]:
                summary["per_class"][c]["lesion_area"] = float(area[labels == k].mean())
        summary["overall"]["lesion_area"] = float(area.mean())
        per_model[name] = {"source": les.source, "n_missing": les.n_missing, "method": used.method,
                           "layer": used.layer, "target": "true class", **summary}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs.append({"a": a, "b": b, **compare_localisation(per_image[a], per_image[b], labels, class_names,
                                                                 n_bootstrap=n_bootstrap, seed=seed)})
    return per_model, pairs


def _resize_bool(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(t, size=tuple(hw), mode="nearest")[0, 0].numpy() > 0.5


def localisation_for_models(loaded: Sequence, names: Sequence[str], split, negative_classes: Sequence[str], *,
                            masks_dir=None, boxes_csv=None, method: str = "auto", layer: str | None = None,
                            batch_size: int = 16, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict]:
    """The ``models[i].cam.localisation`` blocks: masks read once per preprocessing recipe, every model measured.

    Parameters
    ----------
    loaded : sequence of Loaded, length M
    names : sequence of str, length M
    split : data split
    negative_classes : sequence of str
        "Healthy" classes (their images need no lesion).
    masks_dir, boxes_csv, method, layer, batch_size, n_bootstrap, seed :
        See :func:`read_lesions` and :func:`localisation_block`.

    Returns
    -------
    dict
        ``{name: block}``; the block of the first model of each pair has ``paired[<other>]``
        (:func:`~medaudit.metrics.localisation.compare_localisation`, A = this model).
    """
    class_names = list(split.class_names)
    neg_idx = [class_names.index(c) for c in negative_classes if c in class_names]
    by_recipe: dict[str, Lesions] = {}
    lesions = []
    for ld in loaded:
        key = repr(sorted(ld.recipe.to_dict().items()))
        if key not in by_recipe:
            by_recipe[key] = read_lesions(split, ld.recipe, neg_idx, masks_dir=masks_dir, boxes_csv=boxes_csv)
        lesions.append(by_recipe[key])
    per_model, pairs = localisation_block(loaded, names, split, lesions, class_names, method=method, layer=layer,
                                          batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed)
    for block in per_model.values():
        block["paired"] = {}
    for p in pairs:
        per_model[p["a"]]["paired"][p["b"]] = {k: v for k, v in p.items() if k not in ("a", "b")}
    return {n: per_model[n] for n in names}
