"""The training configuration: one validated, serialisable record of a run's settings.

It is stored (as a dict of primitives) in every checkpoint ``training`` block, so a run can
be resumed and audited without guessing. It is also the single source of ``medaudit train``'s
options: each field's default, choices and help live here (``field(metadata=...)``, read
through :func:`setting`), and the CLI generates one option per field. No torch import here.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from medaudit.errors import MedauditError
from medaudit.models.recipe_options import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, RESIZE_POLICIES
from medaudit.tasks import TASKS

LOSSES = ("ce", "focal", "weighted-ce", "bce")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "multistep")
FINETUNE = ("full", "head")
AUGMENT_LEVELS = ("none", "basic", "strong")
SAMPLERS = ("none", "balanced")
SELECT_FIXED = ("val_auc", "val_loss", "val_acc")
_RECALL_RE = re.compile(r"^val_recall\[(.+)\]$")


def setting(
    default: Any = MISSING,
    help: str | None = None,
    *,
    flag: str | None = None,
    choices: tuple | None = None,
    runtime: bool = False,
    path: bool = False,
    default_factory: Any = MISSING,
) -> Any:
    """A :class:`TrainConfig` field with what the CLI needs to offer it as an option.

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`.
    help : str, optional
        The option's help text.
    flag : str, optional
        The option's spelling when it is not ``--`` + the field name with ``-`` for ``_``
        (``"--model"``; ``"--amp/--no-amp"`` for an on/off pair).
    choices : tuple, optional
        The allowed values; :meth:`TrainConfig.validate` checks them and the CLI offers them.
    runtime : bool
        How to run, not what is trained (data location, device, workers): a resumed run takes
        these from the caller instead of the saved settings.
    path : bool
        The value is a file path (the CLI checks that it is not a folder).

    Returns
    -------
    dataclasses.Field
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "runtime": runtime, "path": path}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a training run; the field metadata are the options of ``medaudit train``."""

    arch: str = setting(help="timm name (resnet18, vit_small_patch16_224...) or tv:NAME (torchvision).",
                        flag="--model")
    data: str | None = setting(None, "Dataset spec (image folder, .npz, CSV...) as for `medaudit data`.", runtime=True)
    classes: list[str] | None = setting(None, "Class names in label order, comma-separated (for integer labels).")
    task: str | None = setting(None, "Declare the task (default: detected from the labels; ordinal is never detected).",
                               choices=TASKS)
    img_size: int = setting(224, "Square input side in pixels.")
    in_chans: int = setting(3, "3 repeats grayscale over RGB; 1 keeps one channel.", choices=(1, 3))
    resize: str = setting("stretch", choices=RESIZE_POLICIES)
    interpolation: str = setting("bilinear", choices=INTERPOLATIONS)
    mean: list[float] = setting(help="Normalisation mean, comma-separated (default ImageNet).",
                                default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = setting(help="Normalisation std, comma-separated (default ImageNet).",
                               default_factory=lambda: list(IMAGENET_STD))
    small_stem: bool | None = setting(
        None, "ResNet (28) stem: 3x3 stride-1, no max-pool; default on for img-size <= 64. --standard-stem keeps the "
        "7x7 stride-2 stem (and its pretrained weights).", flag="--small-stem/--standard-stem")
    pretrained: bool = setting(False, "Start from the architecture's cached pretrained weights.")
    weights: str | None = setting(None, "Start from a local state_dict (.pt/.safetensors).", path=True)
    loss: str = setting("ce", "bce is for multi-label data.", choices=LOSSES)
    focal_gamma: float = setting(2.0)
    focal_alpha: list[float] | None = setting(None, "Scalar (2 classes: weight of class 1) or one value per class.")
    class_weights: str = setting("none", "auto (n / (C * count)), none, or w1,w2,... (weighted-ce defaults to auto).")
    label_smoothing: float = setting(0.0)
    optimizer: str = setting("adam", choices=OPTIMIZERS)
    lr: float = setting(1e-3)
    weight_decay: float = setting(0.0)
    momentum: float = setting(0.9, "SGD momentum.")
    scheduler: str = setting("none", choices=SCHEDULERS)
    milestones: list[int] | None = setting(None, "multistep: 0-based epochs where lr x0.1 (default 50%,75% of --epochs).")
    epochs: int = setting(10)
    warmup_epochs: int = setting(0)
    batch_size: int = setting(64, "The global batch: under torchrun each of the N processes takes batch-size / N.")
    sync_bn: bool = setting(False, "Under torchrun: BatchNorm statistics of the whole global batch, not of each "
                            "process's share (the same training as one process; slower). No effect on one process.")
    finetune: str = setting("full", "head: freeze the backbone (BN in eval mode), train the classifier only.",
                            choices=FINETUNE)
    augment: str = setting(
        "none", "basic: h-flip + rotation 10 deg; strong: + scale/shift, rotation 15 deg, brightness/contrast.",
        choices=AUGMENT_LEVELS)
    sampler: str = setting("none", "balanced: class-balanced sampling with replacement (instead of class weights).",
                           choices=SAMPLERS)
    select_by: str = setting("val_auc", "val_auc | val_loss | val_acc | val_recall[CLASS] (always on validation, never "
                             "test).")
    val_fraction: float = setting(0.1, "Stratified share of train used as val when the data has no val split.")
    early_stop: int | None = setting(None, "Stop after this many epochs without improvement.")
    ema: bool = setting(False, "Keep an exponential moving average of the weights (as timm ModelEmaV3); validation, "
                        "selection and the saved checkpoint use the averaged weights.")
    ema_decay: float = setting(0.999, "EMA decay per optimizer step, in (0, 1).")
    ema_warmup: bool = setting(True, "Ramp the EMA decay up as 1 - step^(-2/3) (capped at --ema-decay), so a short run "
                               "does not keep its first weights.", flag="--ema-warmup/--no-ema-warmup")
    seed: int = setting(0)
    device: str = setting("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.", runtime=True)
    amp: bool = setting(True, "Mixed precision (CUDA only).", flag="--amp/--no-amp")
    num_workers: int | None = setting(None, "Image-folder loader workers (default min(4, CPUs)).", runtime=True)

    def validate(self) -> TrainConfig:
        """Check ranges and choices; raise MedauditError naming the field (``param``). Returns self."""
        for f in fields(self):
            allowed, value = f.metadata["choices"], getattr(self, f.name)
            if allowed is not None and value is not None and value not in allowed:
                raise MedauditError(f"{f.name} must be one of {', '.join(map(str, allowed))} (got '{value}')",
                                    param=f.name)
        if self.epochs < 1:
            raise MedauditError(f"epochs must be >= 1 (got {self.epochs})", param="epochs")
        if self.batch_size < 1:
            raise MedauditError(f"batch_size must be >= 1 (got {self.batch_size})", param="batch_size")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise MedauditError(f"lr must be a positive number (got {self.lr})", param="lr")
        if self.weight_decay < 0:
            raise MedauditError(f"weight_decay must be >= 0 (got {self.weight_decay})", param="weight_decay")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise MedauditError(f"warmup_epochs must be in [0, epochs) = [0, {self.epochs}) (got {self.warmup_epochs})",
                                param="warmup_epochs")
        if not 0.0 < self.val_fraction < 1.0:
            raise MedauditError(f"val_fraction must be in (0, 1) (got {self.val_fraction})", param="val_fraction")
        if self.early_stop is not None and self.early_stop < 1:
            raise MedauditError(f"early_stop must be >= 1 epoch (got {self.early_stop})", param="early_stop")
        if self.select_by not in SELECT_FIXED and not _RECALL_RE.match(self.select_by):
            raise MedauditError(f"select_by must be one of {', '.join(SELECT_FIXED)} or val_recall[CLASS] "
                                f"(got '{self.select_by}')", param="select_by")
        if self.focal_alpha is not None and self.loss != "focal":
            raise MedauditError(f"focal_alpha only applies to the focal loss (got loss {self.loss})", param="focal_alpha")
        if self.sampler == "balanced" and (self.class_weights != "none" or self.loss == "weighted-ce"):
            what = (f"the class weights ({self.class_weights})" if self.class_weights != "none"
                    else "loss weighted-ce (automatic class weights)")
            raise MedauditError(f"sampler balanced already balances classes; drop {what} or the sampler",
                                param="sampler")
        if not 0.0 < self.ema_decay < 1.0:
            raise MedauditError(f"ema_decay must be in (0, 1) (got {self.ema_decay})", param="ema_decay")
        if not 0.0 <= self.momentum < 1.0:
            raise MedauditError(f"momentum must be in [0, 1) (got {self.momentum})", param="momentum")
        if self.milestones and min(self.milestones) < 0:
            raise MedauditError(f"milestones are 0-based epochs, >= 0 (got {self.milestones})", param="milestones")
        if self.num_workers is not None and self.num_workers < 0:
            raise MedauditError(f"num_workers must be >= 0 (got {self.num_workers})", param="num_workers")
        self.class_weight_values()  # parse check
        return self

    # -- derived ------------------------------------------------------------------
    def class_weight_values(self) -> list[float] | str | None:
        """``"auto"``, None, or the parsed list of ``class_weights``."""
        cw = (self.class_weights or "none").strip()
        if cw == "auto":
            return "auto"
        if cw == "none":
            return "auto" if self.loss == "weighted-ce" else None
        try:
            return [float(v) for v in cw.split(",")]
        except ValueError:
            raise MedauditError(f"class_weights must be auto, none or w1,w2,... (got '{cw}')",
                                param="class_weights") from None

    def recall_class(self) -> str | None:
        """CLASS of ``select_by="val_recall[CLASS]"``, else None."""
        m = _RECALL_RE.match(self.select_by)
        return m.group(1) if m else None

    def resolved_milestones(self) -> list[int]:
        """0-based epochs from which multistep multiplies the lr by another 0.1.

        Default: 50 % and 75 % of the epochs (the MedMNIST protocol: 50 and 75 of 100).
        """
        if self.milestones:
            return sorted(int(m) for m in self.milestones)
        return [int(0.5 * self.epochs), int(0.75 * self.epochs)]

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch`` (linear warm-up, then the schedule)."""
        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / (self.warmup_epochs + 1)
        if self.scheduler == "cosine":
            span = max(1, self.epochs - self.warmup_epochs)
            return self.lr * 0.5 * (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / span))
        if self.scheduler == "multistep":
            return self.lr * 0.1 ** sum(epoch >= m for m in self.resolved_milestones())
        return self.lr

    def to_dict(self) -> dict:
        """The settings as a dict of primitives (the checkpoint's ``training`` block), in field order."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config saved by :meth:`to_dict`; keys that are not fields (run outcomes) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def runtime_fields() -> tuple[Field, ...]:
    """The fields a resumed run takes from its caller, not from the saved settings (``runtime=True``)."""
    return tuple(f for f in fields(TrainConfig) if f.metadata["runtime"])
