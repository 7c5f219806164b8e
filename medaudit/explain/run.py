"""``medaudit cam`` as a library call: checkpoints + data → CAM tiles in ``OUT/cams`` and ``OUT/cams.json``.

The command only parses options, calls :func:`run_cam_gallery` and prints its summary. The
samples shown are the gallery :func:`~medaudit.explain.select.select_gallery` chooses from each
model's (cached) predictions, or the ids the caller names; every model shows the same ones.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medaudit.audit import AuditSettings, resolve_negative_classes
from medaudit.data import load_dataset
from medaudit.errors import MedauditError
from medaudit.explain.evidence import check_lesion_source, localisation_for_models
from medaudit.explain.gallery import cam_block
from medaudit.explain.select import describe_samples, select_gallery
from medaudit.fileio import atomic_path, check_destination, created_dir, replace_dir, require_regular_file
from medaudit.models.checkpoint import load_checkpoint
from medaudit.naming import file_stems, model_names
from medaudit.predict import check_classes_match, predict_cached, run_inference

TILES_DIR = "cams"  # tile paths in cams.json are relative to the output folder: cams/<model>_000.jpg
SUMMARY_FILE = "cams.json"


@dataclass(frozen=True)
class CamGallery:
    """What :func:`run_cam_gallery` wrote.

    Attributes
    ----------
    summary : dict
        The contents of ``cams.json``: ``data``, ``split``, ``negative_classes``,
        ``negative_classes_source`` and ``models`` ({display name: cam block, see
        :func:`medaudit.explain.gallery.cam_block`}), in model order.
    tiles_dir : Path
        ``OUT/cams``, holding exactly this run's tiles.
    summary_path : Path
        ``OUT/cams.json``.
    """

    summary: dict
    tiles_dir: Path
    summary_path: Path


def run_cam_gallery(
    checkpoints: Sequence[Path],
    data_spec: str,
    out_dir: Path,
    *,
    split: str = "test",
    sample_ids: Sequence[str] | None = None,
    method: str = "auto",
    layer: str | None = None,
    per_group: int = 8,
    negative_classes: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 16,
    amp: bool = True,
    fmt: str = "jpeg",
    progress: bool = False,
    masks_dir: Path | None = None,
    boxes_csv: Path | None = None,
) -> CamGallery:
    """Write CAM tiles (input, overlay, true/predicted label) of every checkpoint on one data split.

    Parameters
    ----------
    checkpoints : sequence of Path, length M
        medaudit checkpoints; display names by :func:`medaudit.naming.model_names`.
    data_spec : str
        Image folder, ``.npz``, ``medmnist:NAME[@SIZE]`` or CSV manifest.
    out_dir : Path
        Output folder (created): tiles go to ``OUT/cams``, which is replaced as a whole, so no
        tile of an earlier run stays; the summary to ``OUT/cams.json``. A failed run leaves the
        previous output as it was.
    split : str
        The split whose samples are shown.
    sample_ids : sequence of str, optional
        Show these samples, in this order; only they are run through the models. Default: the
        gallery chosen from each model's predictions on the whole split (missed disease, other
        errors, confident correct), computed or read from the predictions cache.
    method : str
        A key of :data:`medaudit.explain.cam.CAM_METHODS`.
    layer : str, optional
        Dotted target layer; default chosen per architecture.
    per_group : int
        Samples per gallery group (ignored with ``sample_ids``).
    negative_classes : sequence of str, optional
        The "healthy" classes; default: detected (:func:`medaudit.audit.resolve_negative_classes`).
    classes : sequence of str, optional
        Class names for data whose labels are integers.
    batch_size : int
        Images per forward and per CAM call.
    amp : bool
        Mixed precision for the predictions that label and choose the samples (CUDA only).
    fmt : {"jpeg", "png"}
        Tile file format.
    progress : bool
        Show progress bars for the prediction passes.
    masks_dir, boxes_csv : Path, optional
        Lesion masks or boxes: each model's block gains ``localisation``
        (:func:`medaudit.explain.evidence.localisation_for_models`), measured on every image of
        the split with a lesion.

    Returns
    -------
    CamGallery
        The summary written and where it was written.
    """
    out_dir = Path(out_dir)
    check_cam_output(out_dir)
    check_lesion_source(masks_dir, boxes_csv)
    loaded = [load_checkpoint(p) for p in checkpoints]
    names = model_names(checkpoints)
    ds = load_dataset(data_spec, classes=list(classes) if classes else None)
    data = ds.split(split)
    for ld in loaded:
        check_classes_match(ld, ds.class_names)
    negatives, source = resolve_negative_classes(
        ds.class_names, ds.task, AuditSettings(negative_classes=list(negative_classes or []) or None)
    )
    if sample_ids is not None:
        # Only the requested samples are run: no pass over the whole split, nothing cached.
        preds = [run_inference(ld, data, split_name=split, split_fingerprint=None, dataset_spec=data_spec,
                               model_name=n, batch_size=batch_size, amp=amp, progress=progress,
                               sample_ids=list(sample_ids))
                 for ld, n in zip(loaded, names, strict=True)]
        galleries = describe_samples(preds, negative_classes=negatives)
    else:
        preds = [predict_cached(ld, data, split_name=split, dataset_spec=data_spec, model_name=n, amp=amp,
                                progress=progress)[0]
                 for ld, n in zip(loaded, names, strict=True)]
        galleries = select_gallery(preds, negative_classes=negatives, per_group=per_group)

    # Tiles go to a staging folder that replaces OUT/cams at the end: a rerun leaves no stale
    # tiles from the previous one, and a failed run leaves the previous output as it was (and
    # no empty OUT when there was none, e.g. after a wrong --cam-layer).
    with created_dir(out_dir):
        loc = None
        if masks_dir is not None or boxes_csv is not None:
            loc = localisation_for_models(loaded, names, data, negatives, masks_dir=masks_dir, boxes_csv=boxes_csv,
                                          method=method, layer=layer, batch_size=batch_size)
        return _write_gallery(out_dir, loaded, names, galleries, data, data_spec, split, negatives, source,
                              method=method, layer=layer, batch_size=batch_size, fmt=fmt, localisation=loc)


def check_cam_output(out_dir: Path) -> None:
    """Refuse, before any work, an ``out_dir`` that cannot be made or whose ``cams`` folder (replaced
    as a whole) or ``cams.json`` holds anything an earlier ``medaudit cam`` did not write."""
    out_dir = check_destination(out_dir, param="out_dir")
    tiles_dir, summary_path = out_dir / TILES_DIR, out_dir / SUMMARY_FILE
    if not tiles_dir.exists() and not summary_path.exists():
        return
    known: set[str] = set()
    if summary_path.exists():
        try:
            summary = json.loads(require_regular_file(summary_path, param="out_dir").read_text(encoding="utf-8"))
            known = {t["file"] for b in summary["models"].values() for t in b["tiles"] if t.get("file")}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise MedauditError(f"{summary_path}: exists but is not a cams.json written by medaudit cam; it would "
                                "be overwritten, so move it or choose another output folder", param="out_dir") from None
    if tiles_dir.exists():
        if not tiles_dir.is_dir() or tiles_dir.is_symlink():
            raise MedauditError(f"{tiles_dir}: exists and is not a folder of tiles; move it or choose another "
                                "output folder", param="out_dir")
        found = {p.relative_to(out_dir).as_posix() for p in tiles_dir.rglob("*") if not p.is_dir()}
        unknown = sorted(found - known)
        if unknown:
            shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            raise MedauditError(f"{tiles_dir}: holds files no earlier medaudit cam wrote ({shown}); the folder is "
                                "replaced as a whole, so move them or choose another output folder", param="out_dir")


def _write_gallery(out_dir, loaded, names, galleries, data, data_spec, split, negatives, source, *, method, layer,
                   batch_size, fmt, localisation=None) -> CamGallery:
    staging = Path(tempfile.mkdtemp(prefix=".cams.tmp-", dir=out_dir))
    staged_tiles = staging / TILES_DIR
    try:
        blocks = {
            n: cam_block(ld, g["items"], data, name=n, out_dir=staged_tiles, file_stem=stem, method=method,
                         layer=layer, batch_size=batch_size, fmt=fmt)
            for ld, n, stem, g in zip(loaded, names, file_stems(names), galleries, strict=True)
        }
        for n in names if localisation else ():
            blocks[n]["localisation"] = localisation[n]
        summary = {"data": data_spec, "split": split, "negative_classes": negatives,
                   "negative_classes_source": source, "models": blocks}
        staged_tiles.mkdir(exist_ok=True)  # no tiles at all is still an (empty) result
        replace_dir(staged_tiles, out_dir / TILES_DIR)
        with atomic_path(out_dir / SUMMARY_FILE) as tmp:
            tmp.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    finally:
        # Best effort: a failing clean-up must not hide the error that got us here.
        shutil.rmtree(staging, ignore_errors=True)
    return CamGallery(summary, out_dir / TILES_DIR, out_dir / SUMMARY_FILE)
