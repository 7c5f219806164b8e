"""Penultimate-layer features of a checkpoint's model on a data split, cached like predictions.

The features are the *input of the classifier head*: captured by a forward pre-hook on the
head (timm's ``get_classifier()``; otherwise the last ``nn.Linear`` of the model, which is
torchvision's ``fc`` / ``heads.head`` / ``classifier[-1]``), so they are exactly what the logits
are computed from — ``forward_head(pre_logits=True)`` for timm models — for any architecture,
in one plain forward. The pass runs under :func:`medaudit.models.runtime.inference_state` (the
model comes back unchanged) and the hook is removed afterwards, also on error.

Features are for the shift tests (:mod:`medaudit.metrics.shift`), whose MMD subsamples to at most
1000 samples per side anyway: only a seeded subsample of at most ``max_samples`` images is
embedded. The cache entry is keyed by :func:`medaudit.predict.cache_key` with the recipe variant
``"features"`` (and the cap), under ``<predictions cache>/features/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medaudit.device import resolve_device
from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path
from medaudit.models.preprocess import iter_batches
from medaudit.models.runtime import inference_state, use_channels_last
from medaudit.predict import cache_key, default_cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from medaudit.models.checkpoint import Loaded

MAX_SAMPLES = 1000


def classifier_head(model: nn.Module) -> nn.Module:
    """The module whose input is the penultimate representation.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    nn.Module

    Raises
    ------
    MedauditError
        When the model has neither a timm classifier nor any ``nn.Linear``.
    """
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MedauditError(f"{type(model).__name__}: no classifier head (nn.Linear) to take features before")
    return linears[-1]


def feature_positions(n: int, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """Sorted positions of the embedded subsample: all when ``n <= max_samples``, else a seeded draw."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=max_samples, replace=False))


def compute_features(loaded: Loaded, split, positions: np.ndarray, *, device: str = "auto",
                     batch_size: int = 64) -> np.ndarray:
    """Head inputs of the samples at ``positions``, float32 (K, D), one plain fp32 forward each.

    Parameters
    ----------
    loaded : Loaded
        A checkpoint; its model is not changed.
    split : data split
    positions : ndarray of int, shape (K,)
    device : str
    batch_size : int

    Returns
    -------
    ndarray of float32, shape (K, D)
    """
    model = loaded.model
    dev = resolve_device(device)
    channels_last = use_channels_last(model, dev)
    captured: list[np.ndarray] = []

    def grab(_module, inputs):
        captured.append(inputs[0].detach().flatten(1).float().cpu().numpy())

    handle = classifier_head(model).register_forward_pre_hook(grab)
    try:
        with inference_state(model, dev, channels_last=channels_last) as m, torch.inference_mode():
            for x, _y, _idx in iter_batches(split, loaded.recipe, batch_size, indices=positions):
                x = x.to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                m(x)
    finally:
        handle.remove()
    feats = np.concatenate(captured, axis=0) if captured else np.zeros((0, 0), np.float32)
    if feats.shape[0] != len(positions):
        raise MedauditError(f"{loaded.path}: the classifier head ran {feats.shape[0]} times for {len(positions)} "
                            "images; features cannot be taken from this architecture")
    return feats


def features_cached(loaded: Loaded, split, *, split_name: str, cache_dir: Path | None = None,
                    use_cache: bool = True, device: str = "auto", batch_size: int = 64,
                    max_samples: int = MAX_SAMPLES) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`compute_features` on a seeded subsample of the split, behind a cache.

    Parameters
    ----------
    loaded : Loaded
    split : data split
        With ``fingerprint()`` and ``sample_ids``.
    split_name : str
    cache_dir : Path, optional
        The predictions cache folder (default :func:`medaudit.predict.default_cache_dir`);
        entries go to its ``features/`` subfolder.
    use_cache : bool
    device : str
    batch_size : int
    max_samples : int

    Returns
    -------
    sample_ids : ndarray of str, shape (K,)
    features : ndarray of float32, shape (K, D)
    was_cached : bool
    """
    recipe = {**loaded.recipe.to_dict(), "variant": "features", "max_samples": int(max_samples)}
    key = cache_key(loaded.sha256, split.fingerprint(), split_name, recipe)
    path = (cache_dir or default_cache_dir()) / "features" / f"{key}.npz"
    positions = feature_positions(len(split), max_samples)
    ids = np.asarray(split.sample_ids)[positions].astype(str)
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                cached_ids, feats = z["sample_ids"], z["features"]
            if np.array_equal(cached_ids, ids) and feats.ndim == 2 and np.isfinite(feats).all():
                return ids, feats, True
        except (OSError, ValueError, KeyError):
            pass  # damaged entry: recompute and rewrite it
    feats = compute_features(loaded, split, positions, device=device, batch_size=batch_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, sample_ids=ids, features=feats)
    except OSError:
        pass  # a cache that cannot be written costs a recompute next time, nothing else
    return ids, feats, False
