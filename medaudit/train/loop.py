"""The training loop behind ``medaudit train``: reproducible, resumable, selection on validation only.

Reproducibility: model init, dropout and every random draw run inside
``torch.random.fork_rng`` seeded with ``cfg.seed`` (the caller's global RNG is left as it was);
data order comes from a private ``torch.Generator`` and augmentation from another. Every
epoch ends with an atomic ``NAME.last.pt`` holding everything needed to continue exactly
(model, optimizer, AMP scaler, RNG states, epoch, best score, history); the best epoch on the
validation criterion is written to ``NAME.pt``. The test split is never read.

Under ``torchrun`` (``medaudit.distributed``) the same loop runs on every rank with
``DistributedDataParallel``: the epoch's order is drawn once for the whole job and each global
batch (``batch_size``) is split into equal contiguous shares, one per rank, so the optimizer sees
the same batches as one process; validation runs each sample exactly once on some rank and every
rank selects on the gathered outputs; only rank 0 writes files. With one process nothing is
exchanged and the run is the single-process one, bit for bit.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medaudit.data import load_dataset
from medaudit.distributed import Context, global_batches, rank_share, session, shard_range
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.checkpoint import atomic_torch_save, build_checkpoint
from medaudit.models.factory import SMALL_INPUT_MAX, create_model, has_small_stem
from medaudit.models.preprocess import Recipe, iter_batches, split_tensor_dataset
from medaudit.models.runtime import use_channels_last
from medaudit.models.weights import safe_torch_load
from medaudit.predictions import probabilities_from_logits
from medaudit.train.augment import Augmenter
from medaudit.train.config import TrainConfig
from medaudit.train.ema import WeightEma, first_step_weight
from medaudit.train.losses import balanced_class_weights, build_loss, check_loss_task, multilabel_pos_weights
from medaudit.train.state import (
    epoch_summary,
    freeze_backbone,
    is_better,
    n_correct,
    resolve_splits,
    score_text,
    selection_score,
    set_train_mode,
)
from medaudit.train.state import val_metrics as compute_val_metrics
from medaudit.validation import validation_record

# Loss finiteness is checked every batch on the CPU (free) and every N batches on a GPU (a check syncs).
_CHECK_EVERY_ACCEL = 20


class TrainingInterrupted(Exception):
    """Ctrl-C (or SIGTERM) during training; says what was saved.

    Parameters
    ----------
    epoch : int
        The 1-based epoch that was running.
    last_path : Path or None
        ``NAME.last.pt`` to resume from, or None when this run had not completed an epoch.
    saved_epoch : int
        Epochs held by ``last_path`` (0 when None).
    """

    def __init__(self, epoch: int, last_path: Path | None, saved_epoch: int) -> None:
        done = f"epoch {saved_epoch} is saved in {last_path}" if last_path is not None else "no epoch had completed"
        super().__init__(f"interrupted during epoch {epoch}; {done}")
        self.epoch, self.last_path, self.saved_epoch = epoch, last_path, saved_epoch


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Parameters
    ----------
    best_path : Path
        The checkpoint of the best epoch on validation (with the full history).
    last_path : Path
        ``NAME.last.pt``, the resumable state after the last epoch run.
    best_epoch : int
        1-based.
    best_score : float or None
        Selection score of the best epoch (higher is better; ``-loss`` for ``val_loss``).
    history : list of dict
        One entry per epoch (losses, accuracies, val AUC and recalls, lr, wall time, score).
    stopped_early : bool
    config : TrainConfig, optional
        The settings the run used (for a resumed run: the saved ones).
    """

    best_path: Path
    last_path: Path
    best_epoch: int
    best_score: float | None
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    config: TrainConfig | None = None


def _silent(_line: str) -> None:
    """The default ``log``: a library prints nothing unless its caller asks."""


def last_path_for(out: str | Path) -> Path:
    """``checkpoints/NAME.pt`` -> ``checkpoints/NAME.last.pt``."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def best_path_for(last: str | Path) -> Path:
    """``checkpoints/NAME.last.pt`` -> ``checkpoints/NAME.pt``, where a resumed run writes by default."""
    return Path(str(last).removesuffix(".last.pt") + ".pt")


def check_writable(out: Path) -> None:
    """Fail before training, not after an hour, when the checkpoint cannot be written."""
    if out.is_dir():
        raise MedauditError(f"out {out}: is a folder; give a file name such as {out / 'model.pt'}", param="out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".medaudit-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise MedauditError(f"out {out}: output folder is not writable ({exc.strerror}); choose another path",
                            param="out") from None


def load_resume(resume: str | Path) -> tuple[TrainConfig, dict]:
    """Read a ``NAME.last.pt``.

    Parameters
    ----------
    resume : path
        The resumable state written by :func:`train` every epoch.

    Returns
    -------
    (TrainConfig, dict)
        The run's saved config and the whole checkpoint dict (pass it as ``train(resume=...)``).
    """
    path = Path(resume)
    if not path.is_file():
        raise MedauditError(f"resume {path}: file not found", param="resume")
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or "resume" not in obj:
        raise MedauditError(f"resume {path}: not a resumable state; give the NAME.last.pt written by medaudit train",
                            param="resume")
    return TrainConfig.from_dict(obj["resume"]["config"]), obj


def train_from_config(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: dict | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Load the dataset ``cfg.data`` names and :func:`train` on it (``medaudit train``'s entry point).

    Parameters
    ----------
    cfg : TrainConfig
        ``cfg.data`` is the dataset spec (``cfg.classes`` and ``cfg.task`` are passed to
        :func:`medaudit.data.load_dataset`); validated before the data are read.
    out : path
        Best checkpoint path; ``NAME.last.pt`` is written beside it every epoch.
    resume, progress, log
        As for :func:`train`.

    Returns
    -------
    TrainResult
    """
    cfg.validate()
    if not cfg.data:
        raise MedauditError("data is not set: give the dataset spec to train on", param="data")
    ds = load_dataset(cfg.data, classes=cfg.classes, task=cfg.task)
    return train(ds, cfg, out, resume=resume, progress=progress, log=log)


def resume_training(
    resume: str | Path,
    out: str | Path | None = None,
    *,
    data: str | None = None,
    device: str = "auto",
    num_workers: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Continue the run saved in ``NAME.last.pt`` with its saved settings, exactly where it stopped.

    Only how to run comes from the caller (the config's ``runtime`` fields: ``data``, ``device``,
    ``num_workers``); what is trained (model, recipe, loss, schedule, epochs...) is the saved run's.

    Parameters
    ----------
    resume : path
        ``NAME.last.pt`` written by :func:`train`.
    out : path, optional
        Best checkpoint; default ``NAME.pt`` beside ``resume``. It must hold this run's best
        checkpoint so far when there is one.
    data : str, optional
        Dataset spec, when the data moved; default the saved one. Its fingerprint must match.
    device : str
        ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    num_workers : int, optional
        Image-folder loader workers (default ``min(4, CPUs)``); results do not depend on it.
    progress, log
        As for :func:`train`.

    Returns
    -------
    TrainResult
        With ``config`` the saved settings and the whole history, resumed epochs included.
    """
    cfg, state = load_resume(resume)
    cfg.data = data or cfg.data
    cfg.device, cfg.num_workers = device, num_workers
    return train_from_config(cfg, best_path_for(resume) if out is None else out, resume=state, progress=progress,
                             log=log)


def train(
    ds: Any,
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: dict | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg.arch`` on ``ds`` and write ``out`` (best on validation) and ``NAME.last.pt``.

    Problems that do not stop the run (no val split: a carve of train is used) are
    :class:`~medaudit.errors.MedauditWarning` s.

    Parameters
    ----------
    ds : medaudit.data.Dataset
        Needs ``class_names``, ``task``, ``splits``, ``split(name)`` and ``fingerprint()``.
        Only the train and val splits are read.
    cfg : TrainConfig
    out : path
        Best checkpoint path; ``NAME.last.pt`` is written beside it every epoch.
    resume : dict, optional
        The checkpoint dict from :func:`load_resume` (``cfg`` must be its config).
    progress : bool
        Show a tqdm bar per epoch.
    log : callable, optional
        Receives the epoch summary lines (``str``); default: nothing is printed.

    Returns
    -------
    TrainResult

    Raises
    ------
    MedauditError
        Bad settings for this data (``param`` names the setting), non-finite loss or
        validation outputs (after keeping the last good state).
    TrainingInterrupted
        On KeyboardInterrupt, saying what was saved.
    """
    log = _silent if log is None else log
    cfg.validate()
    with session(cfg.device) as ctx:
        return _train(ds, cfg, Path(out), ctx, resume, progress, log)


def _train(ds, cfg: TrainConfig, out: Path, ctx: Context, resume: dict | None, progress: bool,
           log: Callable[[str], None]) -> TrainResult:
    """:func:`train` inside its process group (``ctx``: one process, or this rank of a torchrun job)."""
    if cfg.batch_size % ctx.world_size:
        raise MedauditError(f"batch_size {cfg.batch_size} is the global batch and must divide evenly over the "
                            f"{ctx.world_size} processes; use a multiple of {ctx.world_size}", param="batch_size")
    last = last_path_for(out)
    if ctx.is_main:  # only rank 0 writes
        check_writable(out)
    class_names, task = [str(c) for c in ds.class_names], ds.task
    multilabel = task == "multilabel"
    check_loss_task(cfg.loss, task)
    recall_cls = cfg.recall_class()
    if recall_cls is not None and recall_cls not in class_names:
        raise MedauditError(f"select_by val_recall[{recall_cls}]: no such class (classes: {', '.join(class_names)})",
                            param="select_by")
    if cfg.sampler == "balanced" and multilabel:
        raise MedauditError("sampler balanced is for single-label data; use loss bce with class_weights auto",
                            param="sampler")
    splits = resolve_splits(ds, cfg.val_fraction, cfg.seed)
    train_split, val_split = splits.train, splits.val
    if cfg.batch_size > len(train_split):
        raise MedauditError(f"batch_size {cfg.batch_size} is larger than the training split ({len(train_split)} "
                            "samples); lower it", param="batch_size")
    _check_val_defines_criterion(cfg, val_split, class_names, multilabel)
    if cfg.ema:
        _check_ema_decay(cfg, len(train_split))

    recipe = Recipe(cfg.img_size, cfg.in_chans, tuple(cfg.mean), tuple(cfg.std), cfg.resize, cfg.interpolation)
    small_stem = cfg.small_stem if cfg.small_stem is not None else cfg.img_size <= SMALL_INPUT_MAX
    device = ctx.device
    amp = bool(cfg.amp and device.type == "cuda")
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.arch, len(class_names), in_chans=cfg.in_chans, img_size=cfg.img_size,
                             pretrained=cfg.pretrained and resume is None, weights=None if resume else cfg.weights,
                             small_stem=small_stem)
        if cfg.finetune == "head" and cfg.pretrained and has_small_stem(model):
            # The small stem replaces the pretrained first convolution with a random one, and
            # head-only training would freeze it: every feature after it would be noise.
            raise MedauditError(
                f"finetune head with pretrained weights at img_size {cfg.img_size}: the small ResNet stem starts "
                "from random weights and would stay frozen; turn the small stem off (the standard stem keeps its "
                "pretrained weights) or use finetune full", param="finetune")
        if resume is not None:
            model.load_state_dict(_training_weights(resume))
        # After the model so an unknown architecture fails fast (this decodes every image once).
        # Rank 0 hashes the data (every image once) and tells the others: one read, not one per rank.
        fingerprint = ctx.broadcast_object(ds.fingerprint() if ctx.is_main else None)
        if resume is not None and resume.get("dataset_fingerprint") not in (None, fingerprint):
            raise MedauditError("the dataset differs from the run being resumed (dataset fingerprint mismatch); give "
                                "the data it was trained on", param="data")
        loop = _Loop(cfg, model, ctx, amp, recipe, class_names, multilabel, train_split, val_split, progress, log)
        meta = {
            "arch": cfg.arch, "class_names": class_names, "task": task, "recipe": recipe,
            "small_stem": small_stem, "dataset_fingerprint": fingerprint,
        }
        info = {
            "val_source": splits.val_source, "train_split": splits.train_name, "n_train": len(train_split),
            "n_val": len(val_split), "val_class_counts": _class_counts(val_split.labels, class_names, multilabel),
            "validation": _validation_block(splits, cfg), "class_weights_used": loop.class_weights,
            "device": str(device), "amp": amp, **ctx.record(),
        }
        return loop.run(out, last, meta, info, resume)


def _training_weights(resume: dict) -> dict:
    """The state dict training continues from: with EMA the file's ``state_dict`` is the average (the model that
    was validated), and the raw weights travel in the resume state."""
    ema = resume["resume"].get("ema")
    return ema["model_state_dict"] if ema else resume["state_dict"]


def _class_counts(labels, class_names: list[str], multilabel: bool) -> dict:
    """Validation images per class (multi-label: positives per label): the sample sizes behind each val score's
    standard error (findings judge the noise of the selected epoch with them). Two lists in label order, not a
    mapping: report.json sorts its keys, and a binary AUC's positive class is the second label."""
    y = np.asarray(labels)
    counts = y.sum(axis=0) if multilabel else np.bincount(y.astype(np.int64), minlength=len(class_names))
    return {"classes": list(class_names), "counts": [int(c) for c in counts], "multilabel": multilabel}


def _validation_block(splits, cfg: TrainConfig) -> dict:
    """``training["validation"]`` (medaudit/validation.py): a carve lists its sample ids so that ``report`` can
    choose thresholds on the same samples; the data's own val split is named (ids left out, fingerprint kept)."""
    if splits.val_source == "val":
        return validation_record("val", "val", splits.val.sample_ids, include_ids=False)
    return validation_record("carved", splits.train_name, splits.val.sample_ids, include_ids=True,
                             fraction=cfg.val_fraction, seed=cfg.seed)


def _check_ema_decay(cfg: TrainConfig, n_train: int) -> None:
    """Warn when the average would still be mostly the first step's weights at the end of the run."""
    steps = cfg.epochs * max(1, n_train // cfg.batch_size)  # a lower bound: the trailing batch may be dropped
    w = first_step_weight(steps, cfg.ema_decay, cfg.ema_warmup)
    if w > 0.5:
        suggest = max(0.5, 1 - 3 / steps)  # keeps about e^-3 = 5 % of the first step after `steps` updates
        warnings.warn(f"ema_decay {cfg.ema_decay:g} without warm-up over about {steps} optimizer steps: the first "
                      f"step's weights keep {w:.0%} of the average at the end; lower ema_decay (about {suggest:.3g}) "
                      "or turn ema_warmup on", MedauditWarning, stacklevel=3)


def _check_val_defines_criterion(cfg: TrainConfig, val, class_names: list[str], multilabel: bool) -> None:
    y = np.asarray(val.labels)
    present = set(np.flatnonzero(y.sum(axis=0) > 0)) if multilabel else set(np.unique(y).tolist())
    if cfg.select_by == "val_auc" and not multilabel and len(present) < len(class_names):
        missing = [class_names[i] for i in range(len(class_names)) if i not in present]
        raise MedauditError(f"select_by val_auc: classes {missing} are absent from the validation split "
                            "(AUC undefined); select by val_loss or raise val_fraction", param="select_by")
    rc = cfg.recall_class()
    if rc is not None and class_names.index(rc) not in present:
        raise MedauditError(f"select_by val_recall[{rc}]: class '{rc}' is absent from the validation split",
                            param="select_by")


class _Loop:
    """State of one training run (kept small: the loop, evaluation and checkpointing)."""

    def __init__(self, cfg, model, ctx: Context, amp, recipe, class_names, multilabel, train_split, val_split,
                 progress, log):
        device = ctx.device
        self.cfg, self.ctx, self.device, self.amp, self.recipe = cfg, ctx, device, amp, recipe
        # Rank 0 speaks for the job: one set of epoch lines and progress bars, not one per rank.
        self.class_names, self.multilabel = class_names, multilabel
        self.log, self.progress = (log, progress) if ctx.is_main else (_silent, False)
        self.train_split, self.val_split = train_split, val_split
        self.saved_epoch = 0  # epochs in NAME.last.pt written by this run (or the one resumed)
        self.channels_last = use_channels_last(model, device)
        model = model.to(device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        if cfg.sync_bn:
            model = ctx.convert_sync_bn(model)  # unchanged with one process (its batch is the global batch)
        self.model = model
        self.head = freeze_backbone(model) if cfg.finetune == "head" else None
        # After the move to the device and the freeze: the average is a copy of this model (same layout).
        self.ema = WeightEma(self.model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema else None
        # What the batches go through: DistributedDataParallel (gradients averaged over ranks) or the model.
        self.train_model = ctx.wrap(self.model)
        # The model validated, selected and saved: the average with --ema, else the trained model itself.
        self.eval_model = self.model if self.ema is None else self.ema.module
        self.class_weights = self._class_weights()
        self.criterion = build_loss(
            cfg.loss, "multilabel" if multilabel else "multiclass", len(class_names),
            class_weights=self.class_weights, focal_gamma=cfg.focal_gamma,
            focal_alpha=cfg.focal_alpha if cfg.focal_alpha is None or len(cfg.focal_alpha) > 1 else cfg.focal_alpha[0],
            label_smoothing=cfg.label_smoothing,
        ).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
            self.opt = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.augment = Augmenter(cfg.augment, recipe.mean, recipe.std, seed=cfg.seed + 1)
        labels = np.asarray(train_split.labels)
        self.sample_weights = None
        if cfg.sampler == "balanced":
            w = balanced_class_weights(labels, len(class_names))
            self.sample_weights = torch.as_tensor(w[labels], dtype=torch.float64)

    def _class_weights(self) -> list[float] | None:
        cw = self.cfg.class_weight_values()
        if cw != "auto":
            return cw
        y = np.asarray(self.train_split.labels)
        w = multilabel_pos_weights(y) if self.multilabel else balanced_class_weights(y, len(self.class_names))
        return [float(v) for v in w]

    # -- data -------------------------------------------------------------------------
    def _epoch_batches(self) -> list[np.ndarray]:
        """The epoch's global batches: one draw for the whole job, whatever the world size (every rank makes it)."""
        n, bs = len(self.train_split), self.cfg.batch_size
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.order_gen)
        else:
            order = torch.randperm(n, generator=self.order_gen)
        # A trailing per-rank batch of one sample breaks BatchNorm in train mode: global_batches drops it
        # (it is reshuffled next epoch).
        return global_batches(order.numpy(), bs, self.ctx.world_size)

    def _iter_train(self, batches: list[np.ndarray]):
        split = self.train_split
        if split.array is not None:
            for idx in batches:
                yield self.recipe.batch_from_array(split.array[idx]), torch.as_tensor(split.labels[idx])
            return
        nw = self.cfg.num_workers if self.cfg.num_workers is not None else min(4, os.cpu_count() or 1)
        loader = torch.utils.data.DataLoader(
            split_tensor_dataset(split, self.recipe), batch_sampler=[b.tolist() for b in batches], num_workers=nw,
            pin_memory=self.device.type == "cuda",
        )
        for x, y, _ in loader:
            yield x, y

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _target(self, y: torch.Tensor) -> torch.Tensor:
        y = y.to(self.device, non_blocking=True)
        return y.float() if self.multilabel else y.long()

    # -- one epoch ----------------------------------------------------------------------
    def _train_epoch(self, epoch: int, last: Path) -> tuple[float, float]:
        batches = self._epoch_batches()
        ctx = self.ctx
        shares = [rank_share(b, ctx.rank, ctx.world_size) for b in batches]
        set_train_mode(self.model, self.head)
        check_every = 1 if self.device.type == "cpu" else _CHECK_EVERY_ACCEL
        pending: list[torch.Tensor] = []  # batch losses not checked yet
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        bar = tqdm(self._iter_train(shares), total=len(shares), disable=not self.progress, leave=False,
                   desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="batch")
        for b, (x, y) in enumerate(bar):
            # Augmentation is drawn for the global batch and this rank's rows applied: as one process would.
            x = self.augment(self._to_device(x), of=len(batches[b]), start=ctx.rank * len(shares[b]))
            y = self._target(y)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.train_model(x)
                loss = self.criterion(logits, y)
            backward, part = self._global_loss(loss, y)
            pending.append(part.detach())
            if (b + 1) % check_every == 0 or b + 1 == len(batches):
                self._check_finite(pending, b + 1 - len(pending), epoch, last)
                pending = []
                if ctx.stop_requested():  # a signal reached some rank: all stop here, together
                    raise KeyboardInterrupt
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(backward).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            loss_sum += part.detach() * len(batches[b])
            correct += n_correct(logits.detach(), y, self.multilabel)
            seen += len(y)
        if ctx.distributed:
            loss_sum, correct = ctx.all_reduce_sum(loss_sum), ctx.all_reduce_sum(correct)
            seen = sum(len(b) for b in batches)
        return float(loss_sum) / seen, float(correct) / seen

    def _global_loss(self, loss: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what this rank backpropagates, this rank's part of the global batch's loss).

        DDP averages the ranks' gradients, which is the gradient of the global batch's loss when
        every rank's loss is a plain mean over equal shares (all losses here but weighted CE).
        Weighted CE divides by the sum of the batch's weights, so each rank's loss is rescaled by
        ``world * own weight sum / global weight sum``. With one process: the loss itself, twice.
        """
        ctx = self.ctx
        if not ctx.distributed:
            return loss, loss
        weight = getattr(self.criterion, "weight", None)
        if isinstance(self.criterion, torch.nn.CrossEntropyLoss) and weight is not None:
            own = weight[y].sum().detach()
            share = ctx.world_size * own / ctx.all_reduce_sum(own)
            return loss * share, loss * share / ctx.world_size
        return loss, loss / ctx.world_size

    def _check_finite(self, pending: list[torch.Tensor], first: int, epoch: int, last: Path) -> None:
        """Stop on a non-finite loss of batches ``first + 1...``; every rank decides on the same (summed) losses."""
        losses = self.ctx.all_reduce_sum(torch.stack(pending))
        ok = torch.isfinite(losses)
        if bool(ok.all()):
            return
        b = int((~ok).nonzero()[0, 0])
        kept = f"the last good state is {last} (epoch {epoch})" if self.saved_epoch else "no epoch had completed"
        raise MedauditError(f"training loss became {float(losses[b])} at epoch {epoch + 1}, batch {first + b + 1}; "
                            f"stopped ({kept}; the best checkpoint is untouched). Lower the learning rate (lr) or "
                            "check the data")

    def _check_val_finite(self, probs: np.ndarray, epoch: int, last: Path) -> None:
        # A finite training loss does not rule out weights that overflow in eval mode (BatchNorm's
        # running statistics differ from the batch's); selection on NaN scores would be meaningless.
        bad = ~np.isfinite(probs).all(axis=1)
        if not bad.any():
            return
        kept = f"the last good state is {last} (epoch {epoch})" if self.saved_epoch else "no epoch had completed"
        raise MedauditError(f"validation outputs are NaN/inf for {int(bad.sum())} of {len(bad)} images after epoch "
                            f"{epoch + 1} (the model diverged); stopped ({kept}; the best checkpoint is untouched). "
                            "Lower the learning rate (lr), raise batch_size or check the data")

    @torch.no_grad()
    def evaluate(self, split) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss (the training criterion), probabilities (N, C) and labels on a split, from :attr:`eval_model`.

        Each rank runs one contiguous shard (all of it with one process) and the outputs are gathered
        by sample index, each sample exactly once, so every rank holds the whole split's outputs.
        """
        ctx, model = self.ctx, self.eval_model
        # Without --sync-bn the ranks' BatchNorm running statistics drift apart: validate rank 0's model.
        ctx.broadcast_buffers(self.model)
        if model is not self.model:
            ctx.broadcast_buffers(model)
        model.eval()
        lo, hi = shard_range(len(split), ctx.rank, ctx.world_size)
        logits, idx = [], []
        for x, _, i in iter_batches(split, self.recipe, max(self.cfg.batch_size, 256), indices=np.arange(lo, hi),
                                    num_workers=self.cfg.num_workers):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits.append(model(self._to_device(x)).float())
            idx.append(i)
        own = torch.cat(logits) if logits else torch.zeros((0, len(self.class_names)), device=self.device)
        z = ctx.gather_indexed(torch.cat(idx) if idx else torch.zeros(0, dtype=torch.int64), own, len(split))
        y = torch.as_tensor(np.asarray(split.labels)).to(self.device)
        loss = float(self.criterion(z, y.float() if self.multilabel else y.long()))
        # The rule only tells sigmoid (multi-label) from softmax (one label per image).
        probs = probabilities_from_logits(z.cpu().numpy(), "multilabel" if self.multilabel else "multiclass")
        return loss, probs, y.cpu().numpy()

    # -- the run --------------------------------------------------------------------------
    def run(self, out: Path, last: Path, meta: dict, info: dict, resume: dict | None) -> TrainResult:
        cfg = self.cfg
        history: list[dict] = []
        start, best_score, best_epoch, bad = 0, None, 0, 0
        if resume is not None:
            st = resume["resume"]
            self.opt.load_state_dict(st["optimizer"])
            if st.get("scaler"):
                self.scaler.load_state_dict(st["scaler"])
            self.order_gen.set_state(st["order_rng"])
            self.augment.set_state(st["augment_rng"])
            torch.set_rng_state(st["torch_rng"])
            if self.device.type == "cuda" and st.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(st["cuda_rng"], self.device)
            if self.ema is not None:
                self.ema.load_state_dict({"state_dict": resume["state_dict"], "updates": st["ema"]["updates"]})
            start, best_score, best_epoch, bad = st["epoch_done"], st["best_score"], st["best_epoch"], st["bad_epochs"]
            # Rank 0 holds the files; it tells the others, so that all stop together.
            if best_epoch and self.ctx.broadcast_object(not out.is_file() if self.ctx.is_main else None):
                raise MedauditError(f"out {out}: the resumed run's best checkpoint so far (epoch {best_epoch}) is "
                                    "not there; give this run's own best checkpoint (NAME.pt beside NAME.last.pt) "
                                    "or copy it there first", param="out")
            self.saved_epoch = start
            history = list(resume["history"])
            best = "none yet" if best_score is None else f"epoch {best_epoch}, {score_text(cfg.select_by, best_score)}"
            self.log(f"resuming {cfg.arch} after epoch {start} (best so far: {best})")
        stopped_early = False
        epoch = start
        ctx = self.ctx
        try:
            with ctx.deferred_interrupts():
                for epoch in range(start, cfg.epochs):
                    ctx.seed_rank_rng(cfg.seed, epoch)
                    lr = cfg.lr_at(epoch)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                    t0 = time.perf_counter()
                    train_loss, train_acc = self._train_epoch(epoch, last)
                    val_loss, probs, y = self.evaluate(self.val_split)
                    self._check_val_finite(probs, epoch, last)
                    entry = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                             "val_loss": val_loss, **compute_val_metrics(y, probs, self.class_names, self.multilabel),
                             "lr": lr, "world_size": ctx.world_size}
                    entry["epoch_time_s"] = time.perf_counter() - t0
                    # Every rank holds the same outputs; rank 0's record decides, so all ranks decide alike.
                    entry = ctx.broadcast_object(entry)
                    score = selection_score(cfg.select_by, cfg.recall_class(), entry)
                    entry["score"] = score
                    best_loss = history[best_epoch - 1]["val_loss"] if best_epoch else None
                    improved = is_better(score, val_loss, best_score, best_loss)
                    if improved:
                        best_score, best_epoch, bad = score, epoch + 1, 0
                    else:
                        bad += 1
                    history.append(entry)
                    training = self._training_block(info, best_epoch, best_score, epoch + 1, False)
                    if improved and ctx.is_main:
                        atomic_torch_save(build_checkpoint(self.eval_model, **meta, training=training,
                                                           history=history, selected_on="val"), out)
                    self._save_last(last, meta, training, history, epoch + 1, best_score, best_epoch, bad)
                    self.log(epoch_summary(entry, cfg, improved))
                    if ctx.stop_requested():  # a signal during validation or saving: stop with this epoch kept
                        raise KeyboardInterrupt
                    if cfg.early_stop is not None and bad >= cfg.early_stop:
                        stopped_early = True
                        self.log(f"early stop: no improvement of {cfg.select_by} for {bad} epochs")
                        break
        except KeyboardInterrupt:
            # saved_epoch, not last.is_file(): a NAME.last.pt from an older run of the same name is not ours
            raise TrainingInterrupted(epoch + 1, last if self.saved_epoch else None, self.saved_epoch) from None
        if best_epoch == 0:
            raise MedauditError(f"select_by {cfg.select_by} was undefined in every epoch; no checkpoint selected",
                                param="select_by")
        if ctx.is_main and not (best_epoch == len(history) and not stopped_early):
            # The best checkpoint gets the full history (curves past the best epoch) and the final summary.
            best = safe_torch_load(out)
            best["history"] = history
            best["training"] = self._training_block(info, best_epoch, best_score, len(history), stopped_early)
            atomic_torch_save(best, out)
        ctx.barrier()  # the files are complete when any rank returns
        return TrainResult(out, last, best_epoch, best_score, history, stopped_early, cfg)

    def _training_block(self, info: dict, best_epoch: int, best_score, epochs_run: int, stopped_early: bool) -> dict:
        return {**self.cfg.to_dict(), **info, "best_epoch": best_epoch, "best_score": best_score,
                "epochs_run": epochs_run, "stopped_early": stopped_early,
                "ema_record": None if self.ema is None else self.ema.record(), "torch_version": str(torch.__version__)}

    def _save_last(self, last, meta, training, history, epoch_done, best_score, best_epoch, bad) -> None:
        if not self.ctx.is_main:  # the state is the same on every rank; rank 0 writes it
            self.saved_epoch = epoch_done
            return
        state = {
            "config": self.cfg.to_dict(), "epoch_done": epoch_done, "best_score": best_score,
            "best_epoch": best_epoch, "bad_epochs": bad, "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else None, "order_rng": self.order_gen.get_state(),
            "augment_rng": self.augment.state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        if self.ema is not None:
            # The file's state_dict is the average (what the history describes); training continues from these.
            state["ema"] = {"updates": self.ema.updates,
                            "model_state_dict": {k: v.detach().cpu().contiguous()
                                                 for k, v in self.model.state_dict().items()}}
        ckpt = build_checkpoint(self.eval_model, **meta, training=training, history=history, selected_on="unknown",
                                extra={"resume": state})
        atomic_torch_save(ckpt, last)
        self.saved_epoch = epoch_done
