"""The one forward pass: (checkpoint, data split) → :class:`~medaudit.predictions.Predictions`, cached.

No metric is computed here; everything downstream is a pure function of the saved
predictions. The cache key is (checkpoint sha256, split content fingerprint, split name,
preprocessing recipe, predictions format), so changing one image or one weight re-runs
inference and nothing else does.

The split's metadata (patient, age, site, ...) is attached to the predictions here, outside the
cached result: the cache key does not depend on it and cache entries do not hold it, so editing a
manifest's metadata columns takes effect without re-running inference, and a cached pass is given
the split's metadata as it is now.

Under ``torchrun`` (a command run through :func:`medaudit.distributed.lead`) the pass is sharded
here, so every caller of :func:`predict_cached` / :func:`run_inference` (report, cam, sweeps) gets
it: rank 0 decides on the cache alone (a hit sends no request, so every rank skips), otherwise it
asks the other ranks to run the same pass; each rank runs a contiguous run of whole batches of the
one-process pass (no padding, no DDP wrapper), and rank 0 gathers ``(index, logits)``, checks the
indices are exactly ``0..N-1`` and goes on as one process would: the same probabilities, the same
cache key and entry. The other ranks return None and write nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medaudit import __version__
from medaudit.data.hashcache import cache_root
from medaudit.device import resolve_device
from medaudit.distributed import led_job
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.preprocess import iter_batches
from medaudit.models.runtime import FOLD_MIN_PIXELS, fold_batchnorm, inference_state, use_channels_last
from medaudit.predictions import (
    FORMAT,
    ChecksumMissing,
    Predictions,
    PredictionsFileError,
    probabilities_from_logits,
)

if TYPE_CHECKING:  # pragma: no cover
    from medaudit.models.checkpoint import Loaded


def check_classes_match(loaded: Loaded, data_class_names: list[str]) -> None:
    """Raise unless the data's classes are the model's, in the same order.

    Labels are indices: a different class order would silently relabel every sample.
    """
    if list(loaded.class_names) != list(data_class_names):
        raise MedauditError(
            f"{loaded.path}: the model's classes {loaded.class_names} differ from the data's {list(data_class_names)}; "
            "if the data's labels are integers, give the class names in the model's order, else rename the class "
            "folders"
        )


def sample_positions(split, sample_ids: Sequence[str]) -> np.ndarray:
    """Positions in ``split`` of the given sample ids, in their order.

    Parameters
    ----------
    split : data split
        Anything with ``sample_ids``.
    sample_ids : sequence of str, length K

    Returns
    -------
    ndarray of int64, shape (K,)

    Raises
    ------
    MedauditError
        (``param="sample_ids"``) naming ids that are not in the split.
    """
    pos = {sid: i for i, sid in enumerate(split.sample_ids)}
    missing = [s for s in sample_ids if s not in pos]
    if missing:
        raise MedauditError(f"{len(missing)} sample ids are not in the split (e.g. {missing[:3]})", param="sample_ids")
    return np.array([pos[s] for s in sample_ids], dtype=np.int64)


def split_metadata(split, positions: np.ndarray) -> dict[str, np.ndarray] | None:
    """The split's metadata columns at ``positions`` (None when the split has none).

    Parameters
    ----------
    split : data split
        With an optional ``metadata`` dict of (N,) arrays.
    positions : ndarray of int64, shape (K,)

    Returns
    -------
    dict of str to ndarray of shape (K,), or None
    """
    metadata = getattr(split, "metadata", None)
    return {k: np.asarray(v)[positions] for k, v in metadata.items()} if metadata else None


def attach_metadata(preds: Predictions, split, patient_column: str | None = None) -> Predictions:
    """``preds`` with the split's current metadata for its samples (any it held before is replaced).

    Parameters
    ----------
    preds : Predictions
        N samples, all in ``split``.
    split : data split
    patient_column : str, optional
        The metadata column of hashed patient ids (``Dataset.patient_column``); recorded only when
        the split has that column.

    Returns
    -------
    Predictions
    """
    metadata = split_metadata(split, sample_positions(split, preds.sample_ids.tolist()))
    patient = patient_column if metadata and patient_column in metadata else None
    return dataclasses.replace(preds, metadata=metadata, patient_column=patient)


def default_cache_dir() -> Path:
    """:func:`medaudit.data.hashcache.cache_root` (``$MEDAUDIT_CACHE`` or ``~/.cache/medaudit``) + ``/predictions``."""
    return cache_root() / "predictions"


def inference_precision(device: torch.device, amp: bool) -> str:
    """``"bf16"``/``"fp16"`` under CUDA autocast, else ``"fp32"`` (AMP is used on CUDA only)."""
    if not (amp and device.type == "cuda"):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def cache_key(checkpoint_sha256: str, split_fingerprint: str, split: str, recipe: dict,
              precision: str = "fp32") -> str:
    """Key of a cached pass. Precision is part of it: bf16 probabilities are not fp32 ones."""
    blob = json.dumps(
        {"ckpt": checkpoint_sha256, "data": split_fingerprint, "split": split, "recipe": recipe, "format": FORMAT,
         **({} if precision == "fp32" else {"precision": precision})},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _forward_all(model, split, recipe, positions: np.ndarray, device: torch.device, batch_size: int, *, amp: bool,
                 channels_last: bool, progress: bool, scan=None) -> tuple[np.ndarray, int]:
    """Return (logits (N, C) float32 of the samples at ``positions``, batch size finally used).

    Halves the batch on CUDA OOM and carries on from the first sample not yet done. ``scan``:
    the split's :class:`~medaudit.data.scan.ScanPlan`, filled from the same decodes.
    """
    n = len(positions)
    out: list[np.ndarray] = []
    precision = inference_precision(device, amp)
    use_amp = precision != "fp32"
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    bar = tqdm(total=n, desc="predict", unit="img", disable=not progress, leave=False)
    done = 0
    while done < n:
        try:
            for x, _y, _idx in iter_batches(split, recipe, batch_size, indices=positions[done:], scan=scan):
                x = x.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = model(x)
                out.append(logits.float().cpu().numpy())
                done += x.shape[0]
                bar.update(x.shape[0])
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise MedauditError("out of GPU memory even at batch size 1; run on the CPU ('cpu')",
                                    param="device") from None
            batch_size //= 2
            torch.cuda.empty_cache()
    bar.close()
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32), batch_size


def _folded_if_worth_it(model, recipe, n: int, device: torch.device, channels_last: bool) -> tuple[nn.Module, int]:
    """:func:`~medaudit.models.runtime.fold_batchnorm` for passes of at least
    :data:`~medaudit.models.runtime.FOLD_MIN_PIXELS` (images x pixels), else ``(model, 0)``."""
    if n * recipe.img_size * recipe.img_size < FOLD_MIN_PIXELS:
        return model, 0
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, recipe.in_chans, recipe.img_size, recipe.img_size, generator=gen).to(device)
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    return fold_batchnorm(model, example)


def _check_logits(loaded: Loaded, logits: np.ndarray, sample_ids: np.ndarray) -> None:
    """One score per class name and finite everywhere; the message names the samples that are not."""
    n_cls = len(loaded.class_names)
    if logits.shape[1] != n_cls:
        raise MedauditError(
            f"{loaded.path}: the model outputs {logits.shape[1]} scores but the checkpoint names {n_cls} classes"
        )
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        ids = ", ".join(sample_ids[bad][:10])
        raise MedauditError(f"{loaded.path}: non-finite (NaN/inf) outputs for {int(bad.sum())} samples: {ids}")


def run_inference(
    loaded: Loaded,
    split,
    *,
    split_name: str,
    split_fingerprint: str | None,
    dataset_spec: str,
    model_name: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    amp: bool = True,
    progress: bool = False,
    sample_ids: Sequence[str] | None = None,
    patient_column: str | None = None,
    scan_plan=None,
) -> Predictions:
    """Run the checkpoint's model over a data split with the checkpoint's own recipe.

    The caller's model is not changed: the pass runs under
    :func:`medaudit.models.runtime.inference_state` (eval mode, on ``device``, channels-last
    where :func:`~medaudit.models.runtime.use_channels_last` says so), which restores every
    submodule's train/eval flag, device and memory layout afterwards.

    Parameters
    ----------
    loaded : Loaded
        A checkpoint from :func:`medaudit.models.checkpoint.load_checkpoint`.
    split : data split
        ``sample_ids`` (N,), ``labels`` (N,) or (N, K), and ``array`` or ``load_image``.
    split_name : str
        Recorded in the provenance (``train``, ``val``, ``test``, ``all``).
    split_fingerprint : str or None
        Content fingerprint of the split, recorded in the provenance (None: not computed).
    dataset_spec : str
        The data spec the split came from, for provenance and messages.
    model_name : str, optional
        Display name; default: the checkpoint's file stem.
    device : str
        ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    batch_size : int
        Images per forward; halved on CUDA out-of-memory (the size used is recorded).
    amp : bool
        Autocast (bf16, else fp16) on CUDA; the CPU always runs fp32.
    progress : bool
        Show a progress bar.
    sample_ids : sequence of str, optional
        Run only these samples, in this order (default: the whole split).
    patient_column : str, optional
        The split's metadata column of hashed patient ids (``Dataset.patient_column``).
    scan_plan : ScanPlan, optional
        From ``split.fused_scan_plan()``: hash the images the pass decodes, into this plan (one
        process only; the caller then calls ``split.complete_scan(scan_plan)``).

    Returns
    -------
    Predictions or None
        None on ranks > 0 of a command under torchrun (their shard went to rank 0). Else
        ``probs`` (N, C) float64 by :func:`medaudit.predictions.probabilities_from_logits`, in the
        split's sample order (or that of ``sample_ids``), with the pass's provenance (checkpoint
        sha256, data, recipe, device, precision, batch size, wall time, versions) and the split's
        metadata for those samples (:func:`attach_metadata`).
    """
    positions = np.arange(len(split)) if sample_ids is None else sample_positions(split, sample_ids)
    if len(positions) == 0 and sample_ids is not None:
        raise MedauditError("no sample ids given", param="sample_ids")
    if len(positions) == 0:
        raise MedauditError(f"split '{split_name}' of {dataset_spec} is empty")
    job = led_job()
    if job is not None and scan_plan is not None:
        raise ValueError("a fused scan runs in one process; under torchrun the split is scanned first")
    if job is not None and job.ctx.is_main:  # the other ranks run the same pass on their shards
        loaded.model  # noqa: B018  (a lazy checkpoint is built, and refused, before the other ranks are asked)
        job.request(_serve_pass, {"path": str(loaded.path), "sha256": loaded.sha256}, split,
                    dict(split_name=split_name, split_fingerprint=split_fingerprint, dataset_spec=dataset_spec,
                         model_name=model_name, batch_size=batch_size, amp=amp, sample_ids=sample_ids))
    dev = job.ctx.device if job is not None else resolve_device(device)
    lo, hi = job.batch_shard(len(positions), batch_size) if job is not None else (0, len(positions))
    channels_last = use_channels_last(loaded.model, dev)
    t0 = time.perf_counter()
    with inference_state(loaded.model, dev, channels_last=channels_last) as model:
        # Decided on the whole pass, not the shard: every rank (and a one-process run) folds alike.
        runner, n_folded = _folded_if_worth_it(model, loaded.recipe, len(positions), dev, channels_last)
        with torch.inference_mode():
            logits, used_bs = _forward_all(runner, split, loaded.recipe, positions[lo:hi], dev, batch_size, amp=amp,
                                           channels_last=channels_last,
                                           progress=progress and (job is None or lo == 0), scan=scan_plan)
        if n_folded:
            # An fx GraphModule sits in reference cycles: without a collection each pass's folded
            # copy (the model's weights again, ~50 MB for a ResNet-18) outlived it, and a report's
            # peak memory grew by one copy per pass.
            del runner
            gc.collect()
    if job is not None:
        if hi == lo:  # an empty shard still joins the gather, with rows of the checkpoint's width
            logits = np.zeros((0, len(loaded.class_names)), np.float32)
        gathered = job.gather(lo, torch.from_numpy(logits), len(positions), f"split '{split_name}' of {dataset_spec}")
        if gathered is None:
            return None
        logits = gathered.numpy()
    wall = time.perf_counter() - t0
    ids = np.asarray(split.sample_ids)[positions]
    _check_logits(loaded, logits, ids)
    provenance = {
        "checkpoint": str(loaded.path),
        "checkpoint_sha256": loaded.sha256,
        "arch": loaded.arch,
        "dataset_spec": dataset_spec,
        "dataset_fingerprint": split_fingerprint,
        "split": split_name,
        "recipe": loaded.recipe.to_dict(),
        "device": str(dev),
        "amp": bool(amp and dev.type == "cuda"),
        "channels_last": channels_last,
        "batchnorm_folded": n_folded,
        "precision": inference_precision(dev, amp),
        "batch_size": used_bs,
        "wall_s": round(wall, 4),
        "versions": {"medaudit": __version__, "torch": torch.__version__, "python": platform.python_version()},
        **({"distributed": job.record()} if job is not None else {}),
    }
    metadata = split_metadata(split, positions)
    return Predictions(
        model_name=model_name or loaded.name,
        class_names=loaded.class_names,
        task=loaded.task,
        sample_ids=ids,
        y_true=np.asarray(split.labels)[positions],
        probs=probabilities_from_logits(logits, loaded.task),
        provenance=provenance,
        metadata=metadata,
        patient_column=patient_column if metadata and patient_column in metadata else None,
    )


def predict_cached(
    loaded: Loaded,
    split,
    *,
    split_name: str,
    dataset_spec: str,
    model_name: str | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    device: str = "auto",
    amp: bool = True,
    patient_column: str | None = None,
    **kwargs,
) -> tuple[Predictions, bool]:
    """:func:`run_inference` behind the predictions cache.

    Parameters
    ----------
    loaded : Loaded
        A checkpoint from :func:`medaudit.models.checkpoint.load_checkpoint`.
    split : data split
        With ``fingerprint()`` (the content hash that keys the cache).
    split_name : str
    dataset_spec : str
    model_name : str, optional
        Display name given to the result, cached or not; default: the checkpoint's file stem.
    cache_dir : Path, optional
        Default: :func:`default_cache_dir`.
    use_cache : bool
        False runs the pass even when an entry exists (and refreshes the entry).
    device : str
    amp : bool
        As in :func:`run_inference`; the precision they give is part of the cache key.
    patient_column : str, optional
        The split's metadata column of hashed patient ids (``Dataset.patient_column``).
    **kwargs
        ``batch_size``, ``progress``: passed to :func:`run_inference`; they do not change the
        probabilities, so they are not part of the cache key.

    Returns
    -------
    preds : Predictions
        All samples of the split, in its order, with the split's current metadata (which is not
        part of the cache key, nor stored in the entry).
    was_cached : bool
        True when the cache answered and no forward pass ran.
    """
    if loaded.task != "multilabel" and len(split) and int(np.max(split.labels)) >= len(loaded.class_names):
        raise MedauditError(
            f"{dataset_spec}: labels go up to {int(np.max(split.labels))} but {loaded.path.name} has "
            f"{len(loaded.class_names)} classes"
        )
    job = led_job()
    precision = inference_precision(job.ctx.device if job is not None else resolve_device(device), amp)
    name = model_name or loaded.name
    # Decode once: a split never hashed before (a new folder) is hashed by the pass that predicts
    # it, which a cached entry could then not have saved -- unless the folder was copied or moved,
    # which is predicted again rather than hashed first (Split.fused_scan_plan).
    plan = _fused_scan_plan(loaded, split, job, use_cache)
    if plan is None:
        fp = split.fingerprint()
        path = _entry_path(cache_dir, loaded, fp, split_name, precision)
        preds = _read_entry(path, precision) if use_cache else None
        if preds is not None:
            preds.model_name = name
            return attach_metadata(preds, split, patient_column), True
    preds = run_inference(loaded, split, split_name=split_name, split_fingerprint=None if plan else fp,
                          dataset_spec=dataset_spec, model_name=name, device=device, amp=amp,
                          patient_column=patient_column, scan_plan=plan, **kwargs)
    if plan is not None:
        split.complete_scan(plan)
        fp = split.fingerprint()  # an image that could not be decoded fails here, named, before any write
        preds.provenance["dataset_fingerprint"] = fp
        path = _entry_path(cache_dir, loaded, fp, split_name, precision)
    # The entry is the inference result only: metadata (and its patient hashes) stays with the data.
    _write_entry(dataclasses.replace(preds, metadata=None, patient_column=None), path)
    return preds, False


def _fused_scan_plan(loaded: Loaded, split, job, use_cache: bool):
    """``split.fused_scan_plan()`` where the pass can hash as it predicts: one process, the full decode."""
    fused = getattr(split, "fused_scan_plan", None)  # file splits (corrupted views fingerprint their base)
    if fused is None or job is not None or loaded.recipe.jpeg_draft:
        return None
    return fused(cold_only=use_cache)


def _entry_path(cache_dir: Path | None, loaded: Loaded, fingerprint: str, split_name: str, precision: str) -> Path:
    key = cache_key(loaded.sha256, fingerprint, split_name, loaded.recipe.to_dict(), precision)
    return (cache_dir or default_cache_dir()) / f"{key}.npz"


# Ranks > 0 of a led job: the checkpoints they have loaded, by sha256 (a report asks for each model twice).
_SERVED: dict[str, Loaded] = {}


def _serve_pass(checkpoint: dict, split, kwargs: dict) -> None:
    """A rank > 0's part of rank 0's :func:`run_inference` (called through the job's request channel).

    The checkpoint is read from its path, which must hold the same bytes on every node (its sha256 is checked).
    """
    from medaudit.models.checkpoint import load_checkpoint  # torch-only module, needed on these ranks only

    loaded = _SERVED.get(checkpoint["sha256"])
    if loaded is None:
        loaded = load_checkpoint(checkpoint["path"])
        if loaded.sha256 != checkpoint["sha256"]:
            raise MedauditError(f"{checkpoint['path']}: this node reads other bytes than rank 0 did (sha256 "
                                f"{loaded.sha256[:12]} vs {checkpoint['sha256'][:12]}); every node must see the same "
                                "checkpoint file")
        if len(_SERVED) >= 4:
            _SERVED.pop(next(iter(_SERVED)))
        _SERVED[checkpoint["sha256"]] = loaded
    run_inference(loaded, split, progress=False, **kwargs)


def _read_entry(path: Path, precision: str) -> Predictions | None:
    """The cached predictions at ``path``, or None (a miss) when there are none to trust.

    A damaged entry (empty, truncated, not a zip, bytes changed, arrays altered and re-zipped,
    not a regular file) is a miss with a warning, never an error: the pass runs again and
    rewrites it. The stored checksum catches what the zip does not (NumPy reads a member without
    reaching its CRC). An entry without one (an older medaudit's) is a quiet miss, like an entry of
    another precision.
    """
    if not os.path.lexists(path):
        return None
    try:
        preds = Predictions.load(path, require_checksum=True)
    except ChecksumMissing:
        return None
    except PredictionsFileError as exc:
        _warn_damaged(path, exc.reason)
        return None
    except MedauditError as exc:  # not a regular file (a folder, a FIFO)
        _warn_damaged(path, str(exc).removeprefix(f"{path}: "))
        return None
    # The entry's own provenance must agree with the precision asked for; one that does not
    # (e.g. copied in from an older cache, where CUDA AMP passes sat under the fp32 key) is a miss.
    if _cached_precision(preds.provenance) != precision:
        return None
    return preds


def _warn_damaged(path: Path, reason: str) -> None:
    warnings.warn(f"predictions cache entry {path} is unusable ({reason}); running inference again and "
                  "rewriting it", MedauditWarning, stacklevel=3)


def _write_entry(preds: Predictions, path: Path) -> None:
    """Write the entry atomically with its checksum; a cache that cannot be written only warns."""
    try:
        preds.save(path, checksum=True)
    except OSError as exc:  # read-only or full cache folder, a folder in the entry's place
        warnings.warn(f"could not write the predictions cache entry {path} ({exc.strerror or exc}); "
                      "the next run will run inference again", MedauditWarning, stacklevel=3)


def _cached_precision(provenance: dict) -> str:
    if provenance.get("precision"):
        return str(provenance["precision"])
    return "mixed (unknown dtype)" if provenance.get("amp") else "fp32"
