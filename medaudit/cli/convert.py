"""`medaudit convert`: wrap a bare state_dict into a medaudit checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors
from medaudit.models.recipe_options import INTERPOLATIONS, RESIZE_BACKENDS, RESIZE_POLICIES
from medaudit.tasks import TASKS


def _floats(value: str | None, option: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got '{value}'", param_hint=option) from None


@click.command()
@click.argument("weights", type=click.Path(path_type=Path))
@click.option("--arch", required=True, help="Architecture the weights belong to: a timm name (resnet18) or tv:NAME.")
@click.option("--classes", "class_names", required=True, help="Comma-separated class names, in the order of the model's outputs.")
@click.option("--task", type=click.Choice(TASKS), default=None, help="Default: binary for 2 classes, else multiclass.")
@click.option("--img-size", default=224, show_default=True, type=int, help="Input size the weights were trained at.")
@click.option("--in-chans", default=3, show_default=True, type=click.Choice(["1", "3"]))
@click.option("--mean", default=None, help="Normalisation mean used in training (default ImageNet).")
@click.option("--std", default=None, help="Normalisation std used in training (default ImageNet).")
@click.option("--resize", type=click.Choice(RESIZE_POLICIES), default="stretch", show_default=True, help="stretch = Resize((s, s)).")
@click.option("--interpolation", type=click.Choice(INTERPOLATIONS), default="bilinear", show_default=True)
@click.option("--resize-backend", type=click.Choice(RESIZE_BACKENDS), default="pil", show_default=True,
              help="pil = PIL's Image.resize on the 8-bit image, as torchvision's Resize does on PIL images "
                   "(a notebook's transforms); torch = medaudit's tensor resize (as medaudit train).")
@click.option("--small-stem/--standard-stem", default=None, help="ResNet 3x3 stride-1 stem (default: on for img-size <= 64).")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="The checkpoint to write (.pt); not the weights file itself.")
@handle_errors
def convert(weights, arch, class_names, task, img_size, in_chans, mean, std, resize, interpolation, resize_backend,
            small_stem, out):
    """Wrap a bare state_dict (e.g. a notebook's best_resnet.pth) into a checkpoint.

    \b
    Example:
      medaudit convert best_resnet.pth --arch resnet18 --classes glioma,meningioma,notumor,pituitary \\
          --img-size 224 -o checkpoints/resnet18.pt
    torchvision and timm key layouts are accepted; `module.` prefixes are stripped; keys are
    checked strictly. Preprocessing options say how the weights were trained and are recorded;
    resizing defaults to PIL's, which is what torchvision's Resize does in a notebook.
    """
    from medaudit.models.checkpoint import convert_weights
    from medaudit.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Recipe

    recipe = Recipe(
        img_size=img_size, in_chans=int(in_chans),
        mean=_floats(mean, "--mean") or IMAGENET_MEAN, std=_floats(std, "--std") or IMAGENET_STD,
        resize=resize, interpolation=interpolation, resize_backend=resize_backend,
    )
    names = [c.strip() for c in class_names.split(",") if c.strip()]
    out = convert_weights(weights, out, arch=arch, class_names=names, task=task, recipe=recipe, small_stem=small_stem)
    click.echo(f"checkpoint → {out}")
