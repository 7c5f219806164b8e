"""`medaudit cam`: Grad-CAM galleries for one or more checkpoints on a data split."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled

# The library's own list (medaudit.explain.cam.CAM_METHODS) would import torch and
# pytorch_grad_cam for `medaudit --help`; tests/test_explain_cli.py checks the two agree.
METHODS = ("gradcam", "gradcam++", "eigencam", "layercam", "scorecam")


@click.command()
@click.option("--model", "models", required=True, multiple=True, type=click.Path(path_type=Path), help="medaudit checkpoint; repeat for several models (same samples for all).")
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True)
@click.option("--ids", "sample_ids", default=None, help="Comma-separated sample ids to explain (default: chosen gallery: missed disease, errors, confident correct).")
@click.option("--cam-method", "method", default="gradcam", show_default=True, type=click.Choice(METHODS))
@click.option("--cam-layer", "layer", default=None, help="Dotted path of the target layer (default: chosen per architecture; a wrong path lists candidates).")
@click.option("--per-group", "--cam-per-group", "per_group", default=8, show_default=True, type=click.IntRange(0, 256), help="Samples per gallery group.")
@click.option("--negative-class", "negative_classes", multiple=True, help="A 'healthy' class (repeatable). Default: auto-detected.")
@click.option("--classes", default=None, help="Class names for data with integer labels, comma-separated.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision for the predictions that choose the gallery (CUDA only), as in predict/report.")
@click.option("--format", "fmt", default="jpeg", show_default=True, type=click.Choice(["jpeg", "png"]))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder: tiles in OUT/cams, summary in OUT/cams.json.")
@handle_errors
def cam(models, data_spec, split, sample_ids, method, layer, per_group, negative_classes, classes, batch_size, amp,
        fmt, out_dir):
    """Write Grad-CAM tiles (input, overlay, true/predicted label) for checkpoints on a data split.

    \b
    Examples:
      medaudit cam --model r18.pt --data data/brain_mri -o cams_out
      medaudit cam --model r18.pt --model vit.pt --data breast.npz --cam-method gradcam++ -o out
      medaudit cam --model vit.pt --data d --ids test/3,test/17 --cam-layer blocks.-2.norm1 -o out
    """
    from medaudit.explain.run import run_cam_gallery

    result = run_cam_gallery(
        models, data_spec, out_dir, split=split,
        sample_ids=[s.strip() for s in sample_ids.split(",") if s.strip()] if sample_ids else None,
        method=method, layer=layer, per_group=per_group, negative_classes=negative_classes,
        classes=classes.split(",") if classes else None, batch_size=batch_size, amp=amp, fmt=fmt,
        progress=not progress_disabled(),
    )
    for name, block in result.summary["models"].items():
        click.echo(f"{name}: {len(block['tiles'])} tiles ({block['n_invalid']} without a valid CAM), "
                   f"layer {block['layer']}" + (f" — {block['reason']}" if block["reason"] else ""))
    click.echo(f"tiles → {result.tiles_dir}; summary → {result.summary_path}")
