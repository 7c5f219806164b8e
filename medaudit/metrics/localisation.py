"""Does the CAM point at the lesion? Pointing game and energy inside the lesion, with intervals.

Pure numpy on saved maps and masks. Per image:

* **pointing game** (Zhang et al. 2018): the map's maximum falls inside the lesion (a hit);
* **energy inside** (the "energy-based pointing game" of Score-CAM, Wang et al. 2020): the share
  of the map's total mass that lies inside the lesion, ``sum(cam * mask) / sum(cam)``.

Per class, the hit rate gets a Wilson interval (:func:`medaudit.metrics.intervals.proportion`) and
the mean energy a percentile bootstrap from the one resampling engine
(:func:`medaudit.metrics.resample.point_and_bootstrap`), stratified by class. Two models on the same
images are compared by the exact McNemar test on hits
(:func:`medaudit.metrics.significance.mcnemar_exact`) and a paired bootstrap of the energy difference.
:func:`mean_difference` is the paired mean difference the faithfulness check also uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.intervals import estimate, interval_withheld, percentile_ci, proportion
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.metrics.significance import mcnemar_exact


def pointing_and_energy(cams: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image pointing-game hit and share of CAM energy inside the lesion.

    Parameters
    ----------
    cams : ndarray of float, shape (N, H, W)
        Maps >= 0; a row with a NaN (an invalid CAM, see :class:`medaudit.explain.cam.CamResult`)
        or no positive mass is not evaluated.
    masks : ndarray of bool, shape (N, H, W)
        The lesion of each image at the map's resolution.

    Returns
    -------
    hit : ndarray of bool, shape (N,)
        The (first) maximum of the map lies inside the mask (False where not evaluated).
    energy : ndarray of float64, shape (N,)
        ``sum(cam * mask) / sum(cam)`` in [0, 1]; NaN where not evaluated.
    evaluated : ndarray of bool, shape (N,)
        A valid map and a non-empty mask.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if cams.ndim != 3 or cams.shape != masks.shape:
        raise MedauditError(f"maps {cams.shape} and lesion masks {masks.shape} must both be (N, H, W)", param="masks")
    n = cams.shape[0]
    flat, m = cams.reshape(n, -1), masks.reshape(n, -1)
    total = flat.sum(axis=1)
    evaluated = np.isfinite(flat).all(axis=1) & (total > 0) & m.any(axis=1)
    safe = np.where(evaluated[:, None], flat, 0.0)
    peak = safe.argmax(axis=1)
    hit = evaluated & m[np.arange(n), peak]
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = np.where(evaluated, (safe * m).sum(axis=1) / np.where(evaluated, total, 1.0), np.nan)
    return hit, np.clip(energy, 0.0, 1.0), evaluated


def _class_order(groups: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    order = np.argsort(groups, kind="stable")
    return order, np.bincount(groups, minlength=len(names)).tolist()


def _means(values: dict[str, np.ndarray], groups: np.ndarray, n_groups: int, n_bootstrap: int, seed: int,
           combine) -> tuple[np.ndarray, np.ndarray]:
    """Point (G,) and bootstrap (B, G) of ``combine(sums per block, counts)`` per group (stratified)."""
    order, strata = _class_order(groups, range(n_groups))
    g = groups[order]
    blocks = [Block("n", g, np.arange(len(g)), n_groups)]
    blocks += [Block(k, g, np.arange(len(g)), n_groups, np.asarray(v, dtype=np.float64)[order])
               for k, v in values.items()]
    design = SumDesign(len(g), blocks)

    def evaluate(sums):
        n = sums["n"].T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"mean": combine({k: sums[k].T for k in values}, n)}

    point, boot = point_and_bootstrap(design, evaluate, strata, n_bootstrap, seed, ["mean"])
    return point["mean"], boot["mean"]


def _value(point: float, boot_col: np.ndarray, count: int, what: str, alpha: float, n_bootstrap: int) -> dict:
    if count == 0:
        return estimate(float("nan"), None, f"no evaluated images for {what}")
    if n_bootstrap == 0:
        return estimate(point, None, f"{what} is undefined", ci_reason="bootstrap disabled (0 resamples)")
    ci = percentile_ci(boot_col.reshape(-1, 1), alpha)[:, 0]
    bounds = (float(ci[0]), float(ci[1]))
    return estimate(point, bounds, f"{what} is undefined", ci_reason=interval_withheld(bounds, count, f"{count} images"))


def mean_difference(a: np.ndarray, b: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0,
                    alpha: float = 0.05, what: str = "difference") -> dict:
    """Mean of ``a - b`` over paired samples, with a percentile bootstrap interval.

    Parameters
    ----------
    a, b : ndarray of float, shape (N,)
        Paired per-sample values (same samples, same order); pairs with a NaN are dropped.
    n_bootstrap, seed, alpha :
        Resamples, generator seed, 1 - confidence level.
    what : str
        Name used in the reasons.

    Returns
    -------
    dict
        Value object (:func:`medaudit.metrics.intervals.estimate`) with ``n``, the pairs used.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise MedauditError(f"mean_difference: a {a.shape} and b {b.shape} must be 1-D of equal length")
    keep = np.isfinite(a) & np.isfinite(b)
    n = int(keep.sum())
    if n == 0:
        return {**estimate(float("nan"), None, f"no paired samples for {what}"), "n": 0}
    point, boot = _means({"a": a[keep], "b": b[keep]}, np.zeros(n, dtype=np.int64), 1, n_bootstrap, seed,
                         lambda s, cnt: (s["a"] - s["b"]) / cnt)
    return {**_value(float(point[0]), boot[:, 0], n, what, alpha, n_bootstrap), "n": n}


def localisation_summary(hit: np.ndarray, energy: np.ndarray, evaluated: np.ndarray, labels: np.ndarray,
                         class_names: Sequence[str], *, n_bootstrap: int = 1000, seed: int = 0,
                         alpha: float = 0.05) -> dict:
    """Per class: pointing-game hit rate (Wilson) and mean energy inside the lesion (bootstrap).

    Parameters
    ----------
    hit, energy, evaluated : ndarray, shape (N,)
        From :func:`pointing_and_energy`, one entry per image with a lesion mask.
    labels : ndarray of int, shape (N,)
        Class of each image (the class whose map was computed).
    class_names : sequence of str, length C
    n_bootstrap, seed, alpha :
        Resamples of the energy interval, generator seed, 1 - confidence level.

    Returns
    -------
    dict
        ``{"n": evaluated images, "n_invalid": images without a valid map, "per_class": {class:
        {"n", "pointing_game", "energy_inside"}}, "overall": {...}}`` for the classes in ``labels``;
        ``overall`` pools all evaluated images (energy resampled within class). Rates are value
        objects; ``pointing_game`` carries ``k``/``n``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    hit, ok = np.asarray(hit, dtype=bool), np.asarray(evaluated, dtype=bool)
    energy = np.asarray(energy, dtype=np.float64)
    names = list(class_names)
    lab = labels[ok]
    point, boot = _means({"e": energy[ok]}, lab, len(names), n_bootstrap, seed, lambda s, cnt: s["e"] / cnt)
    per_class = {}
    for k, name in enumerate(names):
        if not (labels == k).any():
            continue
        sel = lab == k
        n_k = int(sel.sum())
        per_class[name] = {
            "n": n_k,
            "pointing_game": proportion(int(hit[ok][sel].sum()), n_k, f"no valid map on a '{name}' image with a lesion"),
            "energy_inside": _value(float(point[k]), boot[:, k], n_k, f"energy inside the lesion for '{name}'", alpha,
                                    n_bootstrap),
        }
    n = int(ok.sum())
    energy_all = estimate(float("nan"), None, "no valid map on an image with a lesion")
    if n:
        # Overall = the class means weighted by class size, on the same stratified resamples.
        counts = np.bincount(lab, minlength=len(names)).astype(np.float64)
        overall_boot = np.nansum(boot * counts, axis=1) / n
        energy_all = _value(float(energy[ok].mean()), overall_boot, n, "energy inside the lesion", alpha, n_bootstrap)
    overall = {"n": n, "energy_inside": energy_all,
               "pointing_game": proportion(int(hit[ok].sum()), n, "no valid map on an image with a lesion")}
    return {"n": n, "n_invalid": int((~ok).sum()), "per_class": per_class, "overall": overall}


def compare_localisation(a: tuple, b: tuple, labels: np.ndarray, class_names: Sequence[str], *,
                         n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Model A vs B on the same images: McNemar exact on hits, paired bootstrap of energy A - B.

    Parameters
    ----------
    a, b : (hit, energy, evaluated)
        Each model's :func:`pointing_and_energy` on the same images, in the same order.
    labels : ndarray of int, shape (N,)
    class_names : sequence of str
    n_bootstrap, seed, alpha :
        As in :func:`localisation_summary`.

    Returns
    -------
    dict
        ``{"per_class": {class: {"n", "pointing_game", "energy_inside"}}, "overall": ...}``:
        ``pointing_game`` is :func:`~medaudit.metrics.significance.mcnemar_exact` of the hits
        (``b10``: A hit, B missed) plus ``diff`` (hit rate A - B, None without pairs);
        ``energy_inside`` a value object of the mean paired difference A - B. Only images where
        both maps are valid are paired.
    """
    labels = np.asarray(labels, dtype=np.int64)
    hit_a, e_a, ok_a = (np.asarray(v) for v in a)
    hit_b, e_b, ok_b = (np.asarray(v) for v in b)
    ok = ok_a.astype(bool) & ok_b.astype(bool)
    names = list(class_names)

    def pair(sel: np.ndarray, what: str, seed_k: int) -> dict:
        n = int(sel.sum())
        test = mcnemar_exact(hit_a[sel].astype(bool), hit_b[sel].astype(bool))
        diff = None if n == 0 else float(hit_a[sel].mean() - hit_b[sel].mean())
        return {"n": n, "pointing_game": {**test, "diff": diff},
                "energy_inside": mean_difference(e_a[sel], e_b[sel], n_bootstrap=n_bootstrap, seed=seed_k,
                                                 alpha=alpha, what=what)}

    per_class = {name: pair(ok & (labels == k), f"energy difference for '{name}'", seed + k)
                 for k, name in enumerate(names) if (labels == k).any()}
    return {"per_class": per_class, "overall": pair(ok, "energy difference", seed)}
