"""`medaudit cam`: Grad-CAM galleries for one or more checkpoints on a data split."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled

# The library's own list (medaudit.explain.cam.CAM_METHODS) would import torch and
# pytorch_grad_cam for `medaudit --help`; tests/test_explain_cli.py checks the two agree.
METHODS = ("auto", "gradcam", "gradcam++", "eigencam", "layercam", "scorecam")
METHOD_HELP = ("CAM method; auto: the architecture family's default, chosen by measurement (docs/cam-defaults.md: "
               "Grad-CAM for CNNs, LayerCAM for Vision Transformers).")
MASKS_HELP = ("Folder of lesion masks, one image per sample at the sample's relative path (any non-zero pixel is "
              "lesion): measures whether the CAMs point at the lesion (pointing game, energy inside).")
BOXES_HELP = "CSV of lesion boxes path,x0,y0,x1,y1 (image pixels), instead of --masks."


@click.command()
@click.option("--model", "models", required=True, multiple=True, type=click.Path(path_type=Path), help="medaudit checkpoint; repeat for several models (same samples for all).")
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True)
@click.option("--ids", "sample_ids", default=None, help="Comma-separated sample ids to explain (default: chosen gallery: missed disease, errors, confident correct).")
@click.option("--cam-method", "method", default="auto", show_default=True, type=click.Choice(METHODS), help=METHOD_HELP)
@click.option("--cam-layer", "layer", default=None, help="Dotted path of the target layer (default: chosen per architecture; a wrong path lists candidates).")
@click.option("--per-group", "--cam-per-group", "per_group", default=8, show_default=True, type=click.IntRange(0, 256), help="Samples per gallery group.")
@click.option("--negative-class", "negative_classes", multiple=True, help="A 'healthy' class (repeatable). Default: auto-detected.")
@click.option("--classes", default=None, help="Class names for data with integer labels, comma-separated.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision for the predictions that choose the gallery (CUDA only), as in predict/report.")
@click.option("--format", "fmt", default="jpeg", show_default=True, type=click.Choice(["jpeg", "png"]))
@click.option("--masks", "masks_dir", default=None, type=click.Path(path_type=Path), help=MASKS_HELP)
@click.option("--boxes", "boxes_csv", default=None, type=click.Path(path_type=Path), help=BOXES_HELP)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder: tiles in OUT/cams, summary in OUT/cams.json.")
@handle_errors
def cam(models, data_spec, split, sample_ids, method, layer, per_group, negative_classes, classes, batch_size, amp,
        fmt, masks_dir, boxes_csv, out_dir):
    """Write Grad-CAM tiles (input, overlay, true/predicted label) for checkpoints on a data split.

    \b
    Examples:
      medaudit cam --model r18.pt --data data/brain_mri -o cams_out
      medaudit cam --model r18.pt --model vit.pt --data breast.npz --cam-method gradcam++ -o out
      medaudit cam --model vit.pt --data d --ids test/3,test/17 --cam-layer blocks.-2.norm1 -o out
    """
    from medaudit.distributed import lead  # torchrun: predictions sharded, the CAM tiles drawn on rank 0
    from medaudit.explain.run import run_cam_gallery

    result = lead(
        run_cam_gallery, models, data_spec, out_dir, split=split,
        sample_ids=[s.strip() for s in sample_ids.split(",") if s.strip()] if sample_ids else None,
        method=method, layer=layer, per_group=per_group, negative_classes=negative_classes,
        classes=classes.split(",") if classes else None, batch_size=batch_size, amp=amp, fmt=fmt,
        progress=not progress_disabled(), masks_dir=masks_dir, boxes_csv=boxes_csv,
    )
    for name, block in result.summary["models"].items():
        click.echo(f"{name}: {len(block['tiles'])} tiles ({block['n_invalid']} without a valid CAM), "
                   f"{block['method']} at layer {block['layer']}" + (f" — {block['reason']}" if block["reason"] else ""))
        loc = block.get("localisation")
        if loc:
            pg = loc["overall"]["pointing_game"]
            click.echo(f"  points inside the lesion on {pg['k']} of {pg['n']} images" +
                       (f" ({pg['value']:.0%} [{pg['ci_low']:.0%}-{pg['ci_high']:.0%}])" if pg["value"] is not None else ""))
    click.echo(f"tiles → {result.tiles_dir}; summary → {result.summary_path}")
