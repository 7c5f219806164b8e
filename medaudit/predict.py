"""The one forward pass: (checkpoint, data split) → :class:`~medaudit.predictions.Predictions`, cached.

No metric is computed here; everything downstream is a pure function of the saved
predictions. The cache key is (checkpoint sha256, split content fingerprint, split name,
preprocessing recipe, predictions format), so changing one image or one weight re-runs
inference and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medaudit import __version__
from medaudit.device import resolve_device
from medaudit.errors import MedauditError
from medaudit.predictions import FORMAT, Predictions, probabilities_from_logits

if TYPE_CHECKING:  # pragma: no cover

    from medaudit.models.checkpoint import Loaded


def check_classes_match(loaded: Loaded, data_class_names: list[str]) -> None:
    """Labels are indices: a different class order would silently relabel every sample."""
    if list(loaded.class_names) != list(data_class_names):
        raise MedauditError(
            f"{loaded.path}: the model's classes {loaded.class_names} differ from the data's {list(data_class_names)}; "
            "pass --classes in the model's order if the data's labels are integers, or rename the class folders"
        )


def default_cache_dir() -> Path:
    root = os.environ.get("MEDAUDIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "medaudit"
    )
    return Path(root) / "predictions"


def inference_precision(device, amp: bool) -> str:
    """``"bf16"``/``"fp16"`` under CUDA autocast, else ``"fp32"`` (AMP is used on CUDA only)."""
    import torch

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


def _forward_all(model, split, recipe, device, batch_size: int, *, amp: bool, channels_last: bool, progress: bool):
    """Return (logits (N, C) float32, batch size finally used). Halves the batch on CUDA OOM."""
    import torch

    from medaudit.models.preprocess import iter_batches

    n = len(split)
    out: list[np.ndarray] = []
    precision = inference_precision(device, amp)
    use_amp = precision != "fp32"
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="predict", unit="img", disable=not progress, leave=False)
    done = 0
    while done < n:
        try:
            for x, _y, _idx in iter_batches(split, recipe, batch_size, indices=np.arange(done, n)):
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
                raise MedauditError("out of GPU memory even at batch size 1; use --device cpu") from None
            batch_size //= 2
            torch.cuda.empty_cache()
    bar.close()
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32), batch_size


def run_inference(
    loaded: Loaded,
    split,
    *,
    split_name: str,
    split_fingerprint: str,
    dataset_spec: str,
    model_name: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    amp: bool = True,
    progress: bool = False,
) -> Predictions:
    """Run the checkpoint's model over a data split with the checkpoint's own recipe.

    The caller's model is not mutated: eval mode is set for the pass and the previous
    train/eval state and device are restored afterwards.
    """
    import torch

    from medaudit.models.factory import use_channels_last

    model = loaded.model
    if len(split) == 0:
        raise MedauditError(f"split '{split_name}' of {dataset_spec} is empty")
    dev = resolve_device(device)
    flags = [(m, m.training) for m in model.modules()]  # each submodule's own train/eval flag
    orig_device = next(model.parameters()).device
    channels_last = use_channels_last(model, dev)
    # Restore the caller's layout afterwards, whichever it was.
    was_nhwc = any(p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                   for p in model.parameters())
    t0 = time.perf_counter()
    try:
        model.eval().to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            logits, used_bs = _forward_all(
                model, split, loaded.recipe, dev, batch_size, amp=amp, channels_last=channels_last, progress=progress
            )
    finally:
        model.to(orig_device)
        if channels_last and not was_nhwc:
            model.to(memory_format=torch.contiguous_format)
        for m, flag in flags:
            m.training = flag
    wall = time.perf_counter() - t0
    n_cls = len(loaded.class_names)
    if logits.shape[1] != n_cls:
        raise MedauditError(
            f"{loaded.path}: the model outputs {logits.shape[1]} scores but the checkpoint names {n_cls} classes"
        )
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        ids = ", ".join(np.asarray(split.sample_ids)[bad][:10])
        raise MedauditError(f"{loaded.path}: non-finite (NaN/inf) outputs for {int(bad.sum())} samples: {ids}")
    probs = probabilities_from_logits(logits, loaded.task)
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
        "precision": inference_precision(dev, amp),
        "batch_size": used_bs,
        "wall_s": round(wall, 4),
        "versions": {"medaudit": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    return Predictions(
        model_name=model_name or loaded.name,
        class_names=loaded.class_names,
        task=loaded.task,
        sample_ids=np.asarray(split.sample_ids),
        y_true=np.asarray(split.labels),
        probs=probs,
        provenance=provenance,
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
    **kwargs,
) -> tuple[Predictions, bool]:
    """:func:`run_inference` behind the predictions cache. Returns (predictions, was_cached).

    ``kwargs`` (batch size, progress) go to :func:`run_inference`; they do not change the
    probabilities, so they are not part of the cache key.
    """
    fp = split.fingerprint()
    if loaded.task != "multilabel" and len(split) and int(np.max(split.labels)) >= len(loaded.class_names):
        raise MedauditError(
            f"{dataset_spec}: labels go up to {int(np.max(split.labels))} but {loaded.path.name} has "
            f"{len(loaded.class_names)} classes"
        )
    from medaudit.device import resolve_device

    precision = inference_precision(resolve_device(device), amp)
    key = cache_key(loaded.sha256, fp, split_name, loaded.recipe.to_dict(), precision)
    path = (cache_dir or default_cache_dir()) / f"{key}.npz"
    name = model_name or loaded.name
    if use_cache and path.is_file():
        preds = Predictions.load(path)
        # The entry's own provenance must agree with the precision asked for; one that does not
        # (e.g. copied in from an older cache, where CUDA AMP passes sat under the fp32 key) is a miss.
        if _cached_precision(preds.provenance) == precision:
            preds.model_name = name
            return preds, True
    preds = run_inference(loaded, split, split_name=split_name, split_fingerprint=fp, dataset_spec=dataset_spec,
                          model_name=name, device=device, amp=amp, **kwargs)
    preds.save(path)
    return preds, False


def _cached_precision(provenance: dict) -> str:
    if provenance.get("precision"):
        return str(provenance["precision"])
    return "mixed (unknown dtype)" if provenance.get("amp") else "fp32"
