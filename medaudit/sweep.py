"""The robustness sweep stage of ``medaudit report --robustness``: corrupted forwards, cached, then the block.

For a stratified subsample of the evaluated split (``--robustness-samples``, default 500), each
model predicts every (corruption, severity) through :func:`medaudit.predict.predict_cached` on a
:class:`~medaudit.data.corruptions.CorruptedSplit`, whose fingerprint names the corruption, so
each pass is cached per (checkpoint, data, corruption, severity) like the clean one; the device is
the report's (GPU when there is one). The clean predictions are the report's own, not a second
pass. Everything after the forwards is :func:`medaudit.robustness.robustness_block`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from medaudit.data.corruptions import (
    CORRUPTIONS,
    CorruptedSplit,
    check_severities,
    corrupt_image,
    resolve_corruptions,
)
from medaudit.errors import MedauditError
from medaudit.predict import predict_cached
from medaudit.predictions import Predictions
from medaudit.robustness import robustness_block

DEFAULT_SAMPLES = 500
EXAMPLE_SIDE = 64  # pixels of an example tile's longer side: a few kB as a PNG data URI


def check_sweep_options(corruptions, severities: Sequence[int], n_samples: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The sweep's options checked before any inference: (corruption names, severities).

    Raises
    ------
    MedauditError
        Unknown corruption names (``param="robustness"``, listing the valid ones), severities
        outside 1..5 (``"robustness_severities"``) or fewer than 2 samples (``"robustness_samples"``).
    """
    if int(n_samples) < 2:
        raise MedauditError(f"robustness samples {n_samples}: give at least 2 (default {DEFAULT_SAMPLES})",
                            param="robustness_samples")
    return resolve_corruptions(corruptions), check_severities(severities)


def stratified_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` samples drawn without replacement within each class, in proportion to its size.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n : int
        Wanted size; ``n >= N`` returns every index.
    seed : int

    Returns
    -------
    ndarray of int64, shape (min(n, N),), ascending
        Each class keeps at least one sample when it has one (largest-remainder allocation).
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / total
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    while take.sum() > n:  # the floor of 1 can overshoot when there are many tiny classes
        take[np.argmax(take)] -= 1
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    for k in order[: n - int(take.sum())]:
        take[k] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _png_uri(img: np.ndarray) -> str:
    im = Image.fromarray(img)
    im.thumbnail((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def example_tiles(split, corruptions: Sequence[str], severity: int, seed: int, disease_idx: Sequence[int]) -> list[dict]:
    """One sample (the first of a disease class, else the first) clean and under each corruption.

    Returns
    -------
    list of dict
        ``{"corruption", "severity", "image"}``; the clean tile has corruption ``"none"``, severity 0.
    """
    labels = np.asarray(split.labels)
    hits = np.flatnonzero(np.isin(labels, list(disease_idx))) if len(disease_idx) else np.zeros(0, np.int64)
    i = int(hits[0]) if hits.size else 0
    img = np.asarray(split.load_image(i))
    out = [{"corruption": "none", "severity": 0, "image": _png_uri(img)}]
    for c in corruptions:
        out.append({"corruption": c, "severity": int(severity),
                    "image": _png_uri(corrupt_image(img, c, severity, split.sample_ids[i], seed))})
    return out


def run_sweep(loaded: Sequence, names: Sequence[str], split, clean: Sequence[Predictions], *, corruptions,
              severities: Sequence[int] = (1, 2, 3, 4, 5), n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
              negative_classes: Sequence[str] = (), n_bootstrap: int = 1000, split_name: str = "test",
              progress: bool = False, **predict_kwargs) -> dict:
    """Predict every model on every corrupted copy of the subsample and build the ``robustness`` block.

    Parameters
    ----------
    loaded : sequence of Loaded, length M
        Checkpoints (:func:`medaudit.models.checkpoint.load_checkpoint`).
    names : sequence of str, length M
        Display names.
    split : medaudit.data.base.Split
        The evaluated split.
    clean : sequence of Predictions, length M
        Each model's predictions on the whole split, in its sample order.
    corruptions : str or sequence of str
        ``"default"`` or names (:func:`medaudit.data.corruptions.resolve_corruptions`).
    severities : sequence of int
    n_samples : int
        Stratified subsample size (``--robustness-samples``).
    seed : int
        Of the subsample, the corruptions' draws and the bootstrap.
    negative_classes : sequence of str
    n_bootstrap : int
    split_name : str
        Names the corrupted passes in the cache key (with the corruption).
    progress : bool
        A progress bar over the (model, corruption, severity) passes.
    **predict_kwargs
        Passed to :func:`medaudit.predict.predict_cached` (``dataset_spec``, ``cache_dir``,
        ``use_cache``, ``device``, ``amp``, ``batch_size``).

    Returns
    -------
    dict
        ``snapshot["robustness"]`` (docs/report-schema.md); ``settings.timings_s`` is not in it:
        the caller times the stage.
    """
    corruptions, severities = check_sweep_options(corruptions, severities, n_samples)
    if np.asarray(split.labels).ndim != 1:
        raise MedauditError("robustness sweeps support single-label tasks; this data is multilabel",
                            param="robustness")
    idx = stratified_subsample(split.labels, int(n_samples), seed)
    subsampled = len(idx) < len(split)
    base = split.subset(idx, name=split.name) if subsampled else split
    clean_sub = []
    for p in clean:
        q = p.subset(idx)
        if not np.array_equal(q.sample_ids, np.asarray(base.sample_ids)):
            raise MedauditError(f"{p.model_name}: its predictions are not in the split's sample order",
                                param="robustness")
        clean_sub.append(q)
    cells: list[dict] = [{} for _ in loaded]
    jobs = [(c, s) for c in corruptions for s in severities]
    bar = tqdm(total=len(jobs) * len(loaded), desc="robustness", unit="pass", disable=not progress, leave=False)
    for c, s in jobs:
        view = CorruptedSplit(base, c, s, seed)
        for j, (ld, name) in enumerate(zip(loaded, names, strict=True)):
            preds, _ = predict_cached(ld, view, split_name=f"{split_name} [{c} @ {s}]", model_name=name,
                                      **predict_kwargs)
            cells[j][(c, s)] = preds
            bar.update(1)
    bar.close()
    class_names = list(clean[0].class_names)
    disease_idx = [k for k, n in enumerate(class_names) if n not in negative_classes]
    show = 3 if 3 in severities else severities[len(severities) // 2]
    settings = {"corruptions": list(corruptions), "severities": list(severities), "n_samples": int(len(idx)),
                "n_requested": int(n_samples), "n_available": len(split), "subsampled": bool(subsampled),
                "seed": int(seed), "split": split_name,
                "parameters": {c: {"param": CORRUPTIONS[c].param, "levels": [CORRUPTIONS[c].levels[s - 1]
                                                                             for s in severities]}
                               for c in corruptions},
                "decision_rule": "most probable class (as the headline metrics)"}
    return robustness_block(clean_sub, cells, settings=settings, negative_classes=negative_classes,
                            n_bootstrap=n_bootstrap, seed=seed, labels={c: CORRUPTIONS[c].label for c in corruptions},
                            examples=example_tiles(base, corruptions, show, seed, disease_idx))
