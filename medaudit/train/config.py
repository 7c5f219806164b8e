"""The training configuration: one validated, serialisable record of a run's settings.

It is stored (as a dict of primitives) in every checkpoint ``training`` block, so a run can
be resumed and audited without guessing. No torch import here.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from medaudit.errors import MedauditError
from medaudit.models.preprocess import IMAGENET_MEAN, IMAGENET_STD

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "multistep")
FINETUNE = ("full", "head")
SAMPLERS = ("none", "balanced")
SELECT_FIXED = ("val_auc", "val_loss", "val_acc")
_RECALL_RE = re.compile(r"^val_recall\[(.+)\]$")


@dataclass
class TrainConfig:
    """Every option of ``medaudit train`` (see the CLI help for meanings)."""

    arch: str
    data: str = ""
    classes: list[str] | None = None  # class names for integer labels (as --classes elsewhere)
    task: str | None = None  # declared task (ordinal is never detected)
    img_size: int = 224
    in_chans: int = 3
    resize: str = "stretch"
    interpolation: str = "bilinear"
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    small_stem: bool | None = None
    pretrained: bool = False
    weights: str | None = None
    loss: str = "ce"
    focal_gamma: float = 2.0
    focal_alpha: list[float] | None = None
    class_weights: str = "none"  # "auto" | "none" | "w1,w2,..."
    label_smoothing: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    milestones: list[int] | None = None
    epochs: int = 10
    warmup_epochs: int = 0
    batch_size: int = 64
    finetune: str = "full"
    augment: str = "none"
    sampler: str = "none"
    select_by: str = "val_auc"
    val_fraction: float = 0.1
    early_stop: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int | None = None

    def validate(self) -> TrainConfig:
        """Check ranges and choices; raise MedauditError naming the option. Returns self."""
        from medaudit.train.augment import LEVELS

        choices = {
            "--optimizer": (self.optimizer, OPTIMIZERS),
            "--scheduler": (self.scheduler, SCHEDULERS),
            "--finetune": (self.finetune, FINETUNE),
            "--sampler": (self.sampler, SAMPLERS),
            "--augment": (self.augment, LEVELS),
        }
        for opt, (value, allowed) in choices.items():
            if value not in allowed:
                raise MedauditError(f"{opt} must be one of {', '.join(allowed)} (got '{value}')")
        if self.epochs < 1:
            raise MedauditError(f"--epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            raise MedauditError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise MedauditError(f"--lr must be a positive number (got {self.lr})")
        if self.weight_decay < 0:
            raise MedauditError(f"--weight-decay must be >= 0 (got {self.weight_decay})")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise MedauditError(f"--warmup-epochs must be in [0, --epochs) (got {self.warmup_epochs})")
        if not 0.0 < self.val_fraction < 1.0:
            raise MedauditError(f"--val-fraction must be in (0, 1) (got {self.val_fraction})")
        if self.early_stop is not None and self.early_stop < 1:
            raise MedauditError(f"--early-stop must be >= 1 epoch (got {self.early_stop})")
        if self.select_by not in SELECT_FIXED and not _RECALL_RE.match(self.select_by):
            raise MedauditError(
                f"--select-by must be one of {', '.join(SELECT_FIXED)} or val_recall[CLASS] (got '{self.select_by}')"
            )
        if self.focal_alpha is not None and self.loss != "focal":
            raise MedauditError(f"--focal-alpha only applies to --loss focal (got --loss {self.loss})")
        if self.sampler == "balanced" and (self.class_weights != "none" or self.loss == "weighted-ce"):
            what = "--class-weights" if self.class_weights != "none" else "--loss weighted-ce (automatic class weights)"
            raise MedauditError(f"--sampler balanced already balances classes; drop {what} or the sampler")
        if not 0.0 <= self.momentum < 1.0:
            raise MedauditError(f"--momentum must be in [0, 1) (got {self.momentum})")
        if self.milestones and min(self.milestones) < 0:
            raise MedauditError(f"--milestones are 0-based epochs, >= 0 (got {self.milestones})")
        if self.num_workers is not None and self.num_workers < 0:
            raise MedauditError(f"--num-workers must be >= 0 (got {self.num_workers})")
        self.class_weight_values()  # parse check
        return self

    # -- derived ------------------------------------------------------------------
    def class_weight_values(self) -> list[float] | str | None:
        """``"auto"``, None, or the parsed list of ``--class-weights``."""
        cw = (self.class_weights or "none").strip()
        if cw == "auto":
            return "auto"
        if cw == "none":
            return "auto" if self.loss == "weighted-ce" else None
        try:
            return [float(v) for v in cw.split(",")]
        except ValueError:
            raise MedauditError(f"--class-weights must be auto, none or w1,w2,... (got '{cw}')") from None

    def recall_class(self) -> str | None:
        """CLASS of ``--select-by val_recall[CLASS]``, else None."""
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
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
