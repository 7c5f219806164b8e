"""`medaudit cam`: Grad-CAM galleries for one or more checkpoints on a data split."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled

METHODS = ["gradcam", "gradcam++", "eigencam", "layercam", "scorecam"]


def _subset_predictions(loaded, split, ids: list[str], name: str, batch_size: int):
    """Predictions of one model on just the requested samples (no full-split pass)."""
    import torch

    from medaudit.explain.gallery import split_inputs
    from medaudit.predictions import Predictions

    x = split_inputs(split, loaded.recipe, ids)
    pos = {sid: i for i, sid in enumerate(split.sample_ids)}
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        with torch.inference_mode():
            logits = torch.cat([loaded.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        loaded.model.train(was_training)
    probs = torch.sigmoid(logits) if loaded.task == "multilabel" else torch.softmax(logits, dim=1)
    return Predictions(model_name=name, class_names=loaded.class_names, task=loaded.task, sample_ids=ids,
                       y_true=split.labels[[pos[s] for s in ids]], probs=probs.float().numpy())


@click.command()
@click.option("--model", "models", required=True, multiple=True, type=click.Path(path_type=Path), help="medaudit checkpoint; repeat for several models (same samples for all).")
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True)
@click.option("--ids", default=None, help="Comma-separated sample ids to explain (default: chosen gallery: missed disease, errors, confident correct).")
@click.option("--cam-method", default="gradcam", show_default=True, type=click.Choice(METHODS))
@click.option("--cam-layer", default=None, help="Dotted path of the target layer (default: chosen per architecture; a wrong path lists candidates).")
@click.option("--per-group", "--cam-per-group", "per_group", default=8, show_default=True, type=click.IntRange(0, 256), help="Samples per gallery group.")
@click.option("--negative-class", "negative_classes", multiple=True, help="A 'healthy' class (repeatable). Default: auto-detected.")
@click.option("--classes", default=None, help="Class names for data with integer labels, comma-separated.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision for the predictions that choose the gallery (CUDA only), as in predict/report.")
@click.option("--format", "fmt", default="jpeg", show_default=True, type=click.Choice(["jpeg", "png"]))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder: tiles in OUT/cams, summary in OUT/cams.json.")
@handle_errors
def cam(models, data_spec, split, ids, cam_method, cam_layer, per_group, negative_classes, classes, batch_size, amp,
        fmt, out_dir):
    """Write Grad-CAM tiles (input, overlay, true/predicted label) for checkpoints on a data split.

    \b
    Examples:
      medaudit cam --model r18.pt --data data/brain_mri -o cams_out
      medaudit cam --model r18.pt --model vit.pt --data breast.npz --cam-method gradcam++ -o out
      medaudit cam --model vit.pt --data d --ids test/3,test/17 --cam-layer blocks.-2.norm1 -o out
    """
    from medaudit.audit import AuditSettings, resolve_negative_classes
    from medaudit.data import load_dataset
    from medaudit.explain.gallery import cam_block
    from medaudit.explain.select import describe_samples, select_gallery
    from medaudit.fileio import atomic_path, replace_dir
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.naming import file_stems
    from medaudit.predict import check_classes_match, predict_cached

    loaded = [load_checkpoint(p) for p in models]
    names = [p.stem for p in models]
    if len(set(names)) != len(names):
        names = [f"{p.parent.name}_{p.stem}" for p in models]
    ds = load_dataset(data_spec, classes=classes.split(",") if classes else None)
    data = ds.split(split)
    for ld in loaded:
        check_classes_match(ld, ds.class_names)
    negatives, source = resolve_negative_classes(
        ds.class_names, ds.task, AuditSettings(negative_classes=list(negative_classes) or None)
    )
    if ids:
        wanted = [s.strip() for s in ids.split(",") if s.strip()]
        preds = [_subset_predictions(ld, data, wanted, n, batch_size) for ld, n in zip(loaded, names, strict=True)]
        galleries = describe_samples(preds, negative_classes=negatives)
    else:
        preds = [
            predict_cached(ld, data, split_name=split, dataset_spec=data_spec, model_name=n, amp=amp,
                           progress=not progress_disabled())[0]
            for ld, n in zip(loaded, names, strict=True)
        ]
        galleries = select_gallery(preds, negative_classes=negatives, per_group=per_group)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Tiles go to a staging folder that replaces OUT/cams at the end: a rerun leaves no stale
    # tiles from the previous one, and a failed run leaves the previous output as it was.
    staging = Path(tempfile.mkdtemp(prefix=".cams.tmp-", dir=out_dir))
    tiles_dir = staging / "cams"  # tile paths in cams.json are relative to OUT: cams/<model>_000.jpg
    try:
        blocks = {}
        for ld, n, stem, g in zip(loaded, names, file_stems(names), galleries, strict=True):
            blocks[n] = cam_block(ld, g["items"], data, name=n, out_dir=tiles_dir, file_stem=stem, method=cam_method,
                                  layer=cam_layer, batch_size=batch_size, fmt=fmt)
            b = blocks[n]
            click.echo(f"{n}: {len(b['tiles'])} tiles ({b['n_invalid']} without a valid CAM), layer {b['layer']}"
                       + (f" — {b['reason']}" if b["reason"] else ""))
        summary = {"data": data_spec, "split": split, "negative_classes": negatives,
                   "negative_classes_source": source, "models": blocks}
        tiles_dir.mkdir(exist_ok=True)  # no tiles at all is still a (empty) result
        replace_dir(tiles_dir, out_dir / "cams")
        with atomic_path(out_dir / "cams.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    click.echo(f"tiles → {out_dir / 'cams'}; summary → {out_dir / 'cams.json'}")
