"""``medaudit train``: train a CNN or ViT and write a checkpoint the audit reads without flags."""

from __future__ import annotations

import sys

import click

from medaudit.cli._common import handle_errors, progress_disabled
from medaudit.errors import MedauditError
from medaudit.tasks import TASKS

# Options that define the run; with --resume they come from the saved state instead.
_RUN_OPTIONS = (
    "classes", "task", "model", "img_size", "in_chans", "resize", "interpolation", "mean", "std", "small_stem", "pretrained", "weights",
    "loss", "focal_gamma", "focal_alpha", "class_weights", "label_smoothing", "optimizer", "lr", "weight_decay",
    "momentum", "scheduler", "milestones", "epochs", "warmup_epochs", "batch_size", "finetune", "augment", "sampler",
    "select_by", "val_fraction", "early_stop", "seed", "amp",
)


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise MedauditError(f"{option} takes comma-separated numbers (got '{text}')") from None


def _ints(option: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise MedauditError(f"{option} takes comma-separated integers (got '{text}')") from None


def _load_dataset(spec: str, classes: list[str] | None = None, task: str | None = None):
    """The dataset behind ``--data`` (a seam for tests)."""
    from medaudit.data import load_dataset

    return load_dataset(spec, classes=classes, task=task)


@click.command()
@click.option("--data", "data", help="Dataset spec (image folder, .npz, CSV...) as for `medaudit data`.")
@click.option("--classes", help="Class names in label order, comma-separated (for integer labels).")
@click.option("--task", type=click.Choice(TASKS),
              help="Declare the task (default: detected from the labels; ordinal is never detected).")
@click.option("--model", "model", help="timm name (resnet18, vit_small_patch16_224...) or tv:NAME (torchvision).")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Best checkpoint, e.g. checkpoints/r18.pt "
              "(NAME.last.pt, the resumable state, is written beside it every epoch).")
@click.option("--img-size", type=int, default=224, show_default=True, help="Square input side in pixels.")
@click.option("--in-chans", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="3 repeats grayscale over RGB; 1 keeps one channel.")
@click.option("--resize", type=click.Choice(["stretch", "pad", "crop"]), default="stretch", show_default=True)
@click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]), default="bilinear",
              show_default=True)
@click.option("--mean", help="Normalisation mean, comma-separated (default ImageNet).")
@click.option("--std", help="Normalisation std, comma-separated (default ImageNet).")
@click.option("--small-stem/--standard-stem", default=None, help="ResNet (28) stem: 3x3 stride-1, no max-pool; default on for img-size <= 64. --standard-stem keeps the 7x7 stride-2 stem (and its pretrained weights).")
@click.option("--pretrained", is_flag=True, help="Start from the architecture's cached pretrained weights.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Start from a local state_dict (.pt/.safetensors).")
@click.option("--loss", type=click.Choice(["ce", "focal", "weighted-ce", "bce"]), default="ce", show_default=True,
              help="bce is for multi-label data.")
@click.option("--focal-gamma", type=float, default=2.0, show_default=True)
@click.option("--focal-alpha", help="Scalar (2 classes: weight of class 1) or one value per class.")
@click.option("--class-weights", default="none", show_default=True,
              help="auto (n / (C * count)), none, or w1,w2,... (weighted-ce defaults to auto).")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--scheduler", type=click.Choice(["none", "cosine", "multistep"]), default="none", show_default=True)
@click.option("--milestones", help="multistep: 0-based epochs where lr x0.1 (default 50%,75% of --epochs).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--warmup-epochs", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--finetune", type=click.Choice(["full", "head"]), default="full", show_default=True,
              help="head: freeze the backbone (BN in eval mode), train the classifier only.")
@click.option("--augment", type=click.Choice(["none", "basic", "strong"]), default="none", show_default=True,
              help="basic: h-flip + rotation 10 deg; strong: + scale/shift, rotation 15 deg, brightness/contrast.")
@click.option("--sampler", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: class-balanced sampling with replacement (instead of class weights).")
@click.option("--select-by", default="val_auc", show_default=True,
              help="val_auc | val_loss | val_acc | val_recall[CLASS] (always on validation, never test).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Stratified share of train used as val when the data has no val split.")
@click.option("--early-stop", type=int, help="Stop after this many epochs without improvement.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision (CUDA only).")
@click.option("--num-workers", type=int, help="Image-folder loader workers (default min(4, CPUs)).")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue a run from its NAME.last.pt.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or epoch lines.")
@click.pass_context
@handle_errors
def train(ctx: click.Context, **opts) -> None:
    """Train a classifier reproducibly; select on validation; write a medaudit checkpoint.

    \b
    Example (MedMNIST protocol):
      medaudit train --data breastmnist.npz --model resnet18 --img-size 28 --epochs 100 \\
        --batch-size 128 --scheduler multistep -o checkpoints/r18.pt
    """
    from medaudit.train.config import TrainConfig
    from medaudit.train.loop import TrainingInterrupted, load_resume
    from medaudit.train.loop import train as run_training

    resume = None
    if opts["resume"]:
        cfg, resume = load_resume(opts["resume"])
        given = [n for n in _RUN_OPTIONS
                 if ctx.get_parameter_source(n) not in (click.core.ParameterSource.DEFAULT, None)]
        if given:
            click.echo(f"WARNING: --resume uses the saved settings; ignoring --{', --'.join(g.replace('_', '-') for g in given)}",
                       err=True)
        cfg.device, cfg.num_workers = opts["device"], opts["num_workers"]
        cfg.data = opts["data"] or cfg.data
        out = opts["out"] or opts["resume"].removesuffix(".last.pt") + ".pt"
    else:
        if not opts["data"] or not opts["model"] or not opts["out"]:
            raise MedauditError("medaudit train needs --data, --model and -o/--out (or --resume NAME.last.pt)")
        cfg = TrainConfig(
            arch=opts["model"], data=opts["data"], img_size=opts["img_size"],
            classes=[c.strip() for c in opts["classes"].split(",")] if opts["classes"] else None, task=opts["task"], in_chans=int(opts["in_chans"]),
            resize=opts["resize"], interpolation=opts["interpolation"], small_stem=opts["small_stem"],
            pretrained=opts["pretrained"], weights=opts["weights"], loss=opts["loss"],
            focal_gamma=opts["focal_gamma"], focal_alpha=_floats("--focal-alpha", opts["focal_alpha"]),
            class_weights=opts["class_weights"], label_smoothing=opts["label_smoothing"],
            optimizer=opts["optimizer"], lr=opts["lr"], weight_decay=opts["weight_decay"],
            momentum=opts["momentum"], scheduler=opts["scheduler"],
            milestones=_ints("--milestones", opts["milestones"]), epochs=opts["epochs"],
            warmup_epochs=opts["warmup_epochs"], batch_size=opts["batch_size"], finetune=opts["finetune"],
            augment=opts["augment"], sampler=opts["sampler"], select_by=opts["select_by"],
            val_fraction=opts["val_fraction"], early_stop=opts["early_stop"], seed=opts["seed"],
            device=opts["device"], amp=opts["amp"], num_workers=opts["num_workers"],
        )
        for name in ("mean", "std"):
            values = _floats(f"--{name}", opts[name])
            if values is not None:
                setattr(cfg, name, values)
        out = opts["out"]
    cfg.validate()
    ds = _load_dataset(cfg.data, cfg.classes, cfg.task)
    quiet = opts["quiet"]

    def log(line: str) -> None:
        if line.startswith("WARNING"):  # warnings show even with --quiet
            click.echo(line, err=True)
        elif not quiet:
            click.echo(line)

    try:
        result = run_training(ds, cfg, out, resume=resume, progress=not (quiet or progress_disabled()), log=log)
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(130)
    score = "n/a" if result.best_score is None else f"{abs(result.best_score):.4f}"
    click.echo(f"best: epoch {result.best_epoch} ({cfg.select_by} {score}) -> {result.best_path}; "
               f"resumable state: {result.last_path}")
