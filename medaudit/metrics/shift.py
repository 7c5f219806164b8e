"""Dataset-shift tests between a reference sample and a cohort: BBSD, MMD, label shift, a verdict.

Pure numpy/scipy functions of saved outputs (softmax probabilities, penultimate features, the
reference's labels). The methods follow Rabanser, Günnemann & Lipton (2019, "Failing loudly"):

* **BBSD** (black-box shift detection): a two-sample Kolmogorov-Smirnov test per class on the
  softmax outputs, Bonferroni-adjusted over the classes tested (binary tasks test one column:
  ``p(class 0) = 1 - p(class 1)`` holds the same information).
* **MMD**: the unbiased squared maximum mean discrepancy with an RBF kernel whose bandwidth is
  the median pairwise distance (median heuristic), on penultimate-layer features reduced by PCA
  (fitted on both samples) to at most 32 dimensions; a permutation p-value with a fixed seed.
  Each side is subsampled to ``max_per_side`` (default 1000) so the cost is bounded:
  O(max_per_side² x permutations), not O(N²).
* **Label shift**: the EM prior adjustment of Saerens, Latinne & Decaestecker (2002): the
  cohort's class prevalence that makes the model's (reference-calibrated) posteriors consistent,
  starting from the reference prevalence.
* **Verdict** (:func:`shift_verdict`): a shift is detected when the smaller of the BBSD
  (Bonferroni) and MMD p-values is below ``alpha / 2`` (Bonferroni over the two tests, so two
  samples from one distribution are flagged in at most about ``alpha`` of cases). A detected shift
  is called *label shift* only when the tests, re-run on a reference subsample drawn to the
  cohort's class mix (its labels when known, else the EM estimate; rejection sampling with
  keep-probability ``w_y / max w``), no
  longer detect it; it is *covariate shift* when they still do; *kind unclear* when that
  reweighted subsample is too small to say.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from medaudit.errors import MedauditError

ALPHA = 0.05
PCA_DIMS = 32
MAX_PER_SIDE = 1000
N_PERMUTATIONS = 500
# Below this many reference samples after reweighting to the cohort's prevalence, the re-run
# tests have too little power to tell label shift from covariate shift.
MIN_REWEIGHTED = 50
# A prevalence change smaller than this (total variation) is not called label shift.
MIN_PREVALENCE_CHANGE = 0.05


def _probs(p, what: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 2:
        raise MedauditError(f"{what}: need probabilities of shape (N >= 2, C >= 2), got {a.shape}", param=what)
    if not np.isfinite(a).all():
        raise MedauditError(f"{what}: contains NaN or inf", param=what)
    return a


def ks_statistic(x, y) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup_t |F_x(t) - F_y(t)|``.

    Parameters
    ----------
    x : array_like of float, shape (n,)
    y : array_like of float, shape (m,)

    Returns
    -------
    float
    """
    x, y = np.sort(np.asarray(x, dtype=np.float64)), np.sort(np.asarray(y, dtype=np.float64))
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / x.size
    fy = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def bbsd_test(probs_ref, probs_new, class_names: Sequence[str], *, alpha: float = ALPHA) -> dict:
    """BBSD: per-class two-sample KS tests on the softmax outputs, Bonferroni-adjusted.

    Parameters
    ----------
    probs_ref : array_like of float, shape (N, C)
        The model's probabilities on the reference sample (e.g. the internal test split).
    probs_new : array_like of float, shape (M, C)
        The same model's probabilities on the cohort.
    class_names : sequence of str, length C
    alpha : float
        Level of the test (on the Bonferroni-adjusted minimum p-value).

    Returns
    -------
    dict
        ``method``; ``per_class``: per tested class ``{"statistic", "p_value"}`` (scipy's
        ``ks_2samp``, exact for small samples); ``p_value``: the Bonferroni-adjusted minimum,
        ``min(1, k * min p)`` over the ``k`` classes tested; ``significant`` (``p_value < alpha``),
        ``alpha``, ``n_reference``, ``n_cohort``.
    """
    a, b = _probs(probs_ref, "probs_ref"), _probs(probs_new, "probs_new")
    names = [str(c) for c in class_names]
    if a.shape[1] != len(names) or b.shape[1] != len(names):
        raise MedauditError(f"probabilities have {a.shape[1]} and {b.shape[1]} columns for {len(names)} classes",
                            param="class_names")
    cols = [1] if len(names) == 2 else list(range(len(names)))
    per_class = {}
    for j in cols:
        res = stats.ks_2samp(a[:, j], b[:, j])
        per_class[names[j]] = {"statistic": float(res.statistic), "p_value": float(res.pvalue)}
    p_min = min(v["p_value"] for v in per_class.values())
    p_adj = float(min(1.0, p_min * len(cols)))
    return {"method": f"BBSD: two-sample KS per class on softmax outputs, Bonferroni over {len(cols)} "
                      f"class{'es' if len(cols) > 1 else ''}",
            "per_class": per_class, "p_value": p_adj, "significant": bool(p_adj < alpha), "alpha": alpha,
            "n_reference": int(a.shape[0]), "n_cohort": int(b.shape[0])}


def pca_project(x, y, dims: int = PCA_DIMS) -> tuple[np.ndarray, np.ndarray, int]:
    """Project both samples on the top principal components of their union.

    Parameters
    ----------
    x : ndarray, shape (n, D)
    y : ndarray, shape (m, D)
    dims : int
        At most this many components (fewer when ``D`` or ``n + m - 1`` is smaller).

    Returns
    -------
    (x', y', k) : (n, k) and (m, k) float64 arrays and k
    """
    pooled = np.concatenate([x, y], axis=0)
    mean = pooled.mean(axis=0)
    k = int(min(dims, pooled.shape[1], pooled.shape[0] - 1))
    centred = pooled - mean
    if centred.shape[1] <= centred.shape[0]:
        # Eigenvectors of the D x D scatter matrix: the principal axes (cheaper than an SVD of N x D).
        w, v = np.linalg.eigh(centred.T @ centred)
        comp = v[:, np.argsort(w)[::-1][:k]]
    else:
        # More dimensions than samples: from the N x N Gram matrix, axes = X' u / |X' u|.
        w, u = np.linalg.eigh(centred @ centred.T)
        top = np.argsort(w)[::-1][:k]
        comp = centred.T @ u[:, top]
        comp /= np.maximum(np.linalg.norm(comp, axis=0, keepdims=True), 1e-300)
    return (x - mean) @ comp, (y - mean) @ comp, k


def rbf_kernel_matrix(z: np.ndarray, bandwidth: float | None = None) -> tuple[np.ndarray, float]:
    """RBF kernel ``exp(-|a - b|² / (2 s²))`` over the rows of ``z``; ``s`` by the median heuristic.

    Parameters
    ----------
    z : ndarray, shape (N, k)
    bandwidth : float, optional
        ``s``; default: the median of the pairwise distances (off the diagonal).

    Returns
    -------
    (K, s) : ndarray (N, N) and float
    """
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    if bandwidth is None:
        off = d2[np.triu_indices(d2.shape[0], k=1)]
        med = float(np.median(off)) if off.size else 0.0
        # s = the median pairwise distance (all points equal: any s gives K = 1; take 1).
        bandwidth = float(np.sqrt(med)) if med > 0 else 1.0
    return np.exp(-d2 / (2.0 * bandwidth**2)), bandwidth


def mmd2_unbiased(kernel: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) for one or many assignments of the samples.

    Parameters
    ----------
    kernel : ndarray, shape (N, N)
        Kernel matrix of the pooled samples.
    in_x : ndarray of bool, shape (N,) or (N, B)
        Which samples form the first sample, per assignment (the same count in every column).

    Returns
    -------
    ndarray of float, shape () or (B,)
    """
    a = np.asarray(in_x, dtype=np.float64)
    single = a.ndim == 1
    a = a.reshape(a.shape[0], -1)
    n = a.sum(axis=0)
    m = a.shape[0] - n
    diag = np.diag(kernel)
    # One matrix product per batch of assignments: with b = 1 - a, every block sum follows from
    # K a, the row sums r = K 1 and the total 1'K1 (a'Kb = r'a - a'Ka, b'Kb = 1'K1 - 2 r'a + a'Ka).
    row = kernel.sum(axis=1)
    aka = np.einsum("ij,ij->j", a, kernel @ a)
    ra = row @ a
    da = diag @ a
    sxx = aka - da
    syy = row.sum() - 2.0 * ra + aka - (diag.sum() - da)
    sxy = ra - aka
    out = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    return out[0] if single else out


def _subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=cap, replace=False)) if n > cap else np.arange(n)


def mmd_test(features_ref, features_new, *, dims: int = PCA_DIMS, max_per_side: int = MAX_PER_SIDE,
             n_permutations: int = N_PERMUTATIONS, seed: int = 0, alpha: float = ALPHA) -> dict:
    """Permutation test of "same distribution" by the RBF-kernel MMD on PCA-reduced features.

    Parameters
    ----------
    features_ref : array_like of float, shape (N, D)
        Penultimate-layer features of the reference sample.
    features_new : array_like of float, shape (M, D)
        The same model's features on the cohort.
    dims : int
        PCA components kept (at most).
    max_per_side : int
        Each side is subsampled (seeded, without replacement) to at most this many samples.
    n_permutations : int
        Label permutations of the p-value, evaluated together (one matrix product per chunk).
    seed : int
        Seed of the subsampling and the permutations.
    alpha : float

    Returns
    -------
    dict
        ``method``, ``mmd2`` (unbiased estimate), ``p_value`` (``(1 + #{perm >= observed}) /
        (1 + B)``), ``significant``, ``alpha``, ``bandwidth``, ``pca_dims``, ``n_reference``,
        ``n_cohort`` (after subsampling), ``n_permutations``, ``seed``.
    """
    x = np.asarray(features_ref, dtype=np.float64)
    y = np.asarray(features_new, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or x.shape[0] < 2 or y.shape[0] < 2:
        raise MedauditError(f"features: need (N >= 2, D) and (M >= 2, D) arrays, got {x.shape} and {y.shape}",
                            param="features")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise MedauditError("features contain NaN or inf", param="features")
    if n_permutations < 1 or max_per_side < 2:
        raise MedauditError("n_permutations must be >= 1 and max_per_side >= 2", param="n_permutations")
    rng = np.random.default_rng(seed)
    x = x[_subsample(x.shape[0], max_per_side, rng)]
    y = y[_subsample(y.shape[0], max_per_side, rng)]
    xp, yp, k = pca_project(x, y, dims)
    z = np.concatenate([xp, yp], axis=0)
    kernel, s = rbf_kernel_matrix(z)
    n, total = x.shape[0], z.shape[0]
    observed = float(mmd2_unbiased(kernel, np.arange(total) < n))
    exceed, done, chunk = 0, 0, 100
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        # One random permutation per column: the first n positions of each form sample X.
        perm = np.argsort(rng.random((total, b)), axis=0)
        in_x = np.zeros((total, b), dtype=bool)
        np.put_along_axis(in_x, perm[:n], True, axis=0)
        exceed += int((mmd2_unbiased(kernel, in_x) >= observed).sum())
        done += b
    p = (1 + exceed) / (1 + n_permutations)
    return {"method": f"MMD (RBF kernel, median-heuristic bandwidth) on penultimate features, PCA to {k} "
                      f"dims, {n_permutations} permutations",
            "mmd2": observed, "p_value": float(p), "significant": bool(p < alpha), "alpha": alpha,
            "bandwidth": s, "pca_dims": k, "n_reference": int(n), "n_cohort": int(total - n),
            "n_permutations": int(n_permutations), "seed": int(seed)}


def em_prior_adjustment(probs_new, prior_ref, *, max_iter: int = 1000, tol: float = 1e-8) -> tuple[np.ndarray, int]:
    """Saerens et al. (2002): the cohort prevalence implied by the model's posteriors (EM).

    Iterates ``p'(y|x) ∝ p(y|x) π(y) / π_ref(y)`` and ``π(y) = mean_x p'(y|x)`` from ``π = π_ref``.
    Assumes label shift (``p(x|y)`` unchanged) and posteriors calibrated on the reference.

    Parameters
    ----------
    probs_new : array_like of float, shape (M, C)
        Posteriors on the cohort.
    prior_ref : array_like of float, shape (C,)
        Class prevalence of the data the posteriors are calibrated on.
    max_iter : int
    tol : float
        Stop when no prevalence moves by more than this.

    Returns
    -------
    (prevalence, iterations) : ndarray (C,) summing to 1, int
    """
    p = _probs(probs_new, "probs_new")
    prior = np.asarray(prior_ref, dtype=np.float64)
    if prior.shape != (p.shape[1],) or np.any(prior <= 0):
        raise MedauditError(f"prior_ref: need {p.shape[1]} positive prevalences, got {prior.tolist()}",
                            param="prior_ref")
    prior = prior / prior.sum()
    pi = prior.copy()
    it, moved = 0, np.inf
    while it < max_iter and moved >= tol:
        adj = p * (pi / prior)
        adj /= np.maximum(adj.sum(axis=1, keepdims=True), 1e-300)
        new = adj.mean(axis=0)
        moved, pi, it = float(np.max(np.abs(new - pi))), new, it + 1
    return pi, it


def label_shift(probs_new, y_ref, class_names: Sequence[str], y_new=None) -> dict:
    """The estimated label shift of a cohort: EM prevalence against the reference's.

    Parameters
    ----------
    probs_new : array_like of float, shape (M, C)
    y_ref : array_like of int, shape (N,)
        True classes of the reference sample (its prevalence; the posteriors' calibration data).
    class_names : sequence of str, length C
    y_new : array_like of int, shape (M,), optional
        The cohort's true classes, when known: their prevalence is reported beside the estimate.

    Returns
    -------
    dict
        ``method``, ``prevalence`` and ``reference_prevalence`` ({class: share}),
        ``observed_prevalence`` (or None), ``total_variation`` (half the L1 distance of the
        estimate from the reference), ``iterations``.
    """
    names = [str(c) for c in class_names]
    y = np.asarray(y_ref, dtype=np.int64)
    counts = np.bincount(y, minlength=len(names)).astype(np.float64)
    # Add-half smoothing: a class absent from the reference would have an infinite ratio.
    prior = (counts + 0.5) / (counts.sum() + 0.5 * len(names))
    pi, it = em_prior_adjustment(probs_new, prior)
    observed = None
    if y_new is not None:
        obs = np.bincount(np.asarray(y_new, dtype=np.int64), minlength=len(names)) / max(len(y_new), 1)
        observed = {c: float(v) for c, v in zip(names, obs, strict=True)}
    return {"method": "EM prior adjustment (Saerens et al. 2002) of the model's posteriors",
            "prevalence": {c: float(v) for c, v in zip(names, pi, strict=True)},
            "reference_prevalence": {c: float(v) for c, v in zip(names, counts / counts.sum(), strict=True)},
            "observed_prevalence": observed,
            "total_variation": float(0.5 * np.abs(pi - counts / counts.sum()).sum()), "iterations": int(it)}


def reweighted_reference(y_ref, prevalence, reference_prevalence, seed: int = 0) -> np.ndarray:
    """Indices of a reference subsample distributed like the cohort's prevalence (rejection sampling).

    Each reference sample of class ``y`` is kept with probability ``w_y / max w``, where
    ``w_y = prevalence[y] / reference_prevalence[y]``: the kept samples follow the reweighted
    distribution exactly, without duplicates (so the two-sample tests stay valid).

    Parameters
    ----------
    y_ref : array_like of int, shape (N,)
    prevalence, reference_prevalence : array_like of float, shape (C,)
    seed : int

    Returns
    -------
    ndarray of int64, shape (K,), sorted
    """
    y = np.asarray(y_ref, dtype=np.int64)
    ref = np.asarray(reference_prevalence, dtype=np.float64)
    w = np.where(ref > 0, np.asarray(prevalence, dtype=np.float64) / np.where(ref > 0, ref, 1.0), 0.0)
    keep = w[y] / w.max()
    # Its own stream of the seed: the generator that drew the labels (simulations) must not decide the draw.
    rng = np.random.default_rng((seed, 0x5EED))
    return np.flatnonzero(rng.random(y.size) < keep).astype(np.int64)


def shift_tests(probs_ref, probs_new, y_ref, class_names: Sequence[str], *, features_ref=None, features_new=None,
                y_new=None, alpha: float = ALPHA, seed: int = 0, n_permutations: int = N_PERMUTATIONS,
                max_per_side: int = MAX_PER_SIDE, dims: int = PCA_DIMS) -> dict:
    """Every shift test between a reference sample and a cohort, and the verdict they support.

    Parameters
    ----------
    probs_ref : array_like of float, shape (N, C)
    probs_new : array_like of float, shape (M, C)
    y_ref : array_like of int, shape (N,)
        The reference's true classes (prevalence, and the reweighting of the label-shift check).
    class_names : sequence of str, length C
    features_ref, features_new : array_like of float, shapes (N, D) and (M, D), optional
        Penultimate features in the same sample order; without them MMD is not run.
    y_new : array_like of int, shape (M,), optional
        The cohort's labels: its observed prevalence, which the reweighted reference is drawn to
        (without them, the EM estimate is used).
    alpha, seed, n_permutations, max_per_side, dims
        As :func:`mmd_test`.

    Returns
    -------
    dict
        ``{"verdict", "explanation", "bbsd", "mmd" (or None), "label_shift", "reweighted"}``
        (``reweighted``: the BBSD/MMD p-values on the reference drawn to the estimated
        prevalence, ``n`` of that subsample; None when no shift was detected).
    """
    names = [str(c) for c in class_names]
    pr, pn = _probs(probs_ref, "probs_ref"), _probs(probs_new, "probs_new")
    yr = np.asarray(y_ref, dtype=np.int64)
    if yr.shape != (pr.shape[0],):
        raise MedauditError(f"y_ref: need {pr.shape[0]} labels, got shape {yr.shape}", param="y_ref")
    have_features = features_ref is not None and features_new is not None
    fr = np.asarray(features_ref, dtype=np.float64) if have_features else None
    fn = np.asarray(features_new, dtype=np.float64) if have_features else None
    mmd_kw = dict(dims=dims, max_per_side=max_per_side, n_permutations=n_permutations, seed=seed, alpha=alpha)
    bbsd = bbsd_test(pr, pn, names, alpha=alpha)
    mmd = mmd_test(fr, fn, **mmd_kw) if have_features else None
    ls = label_shift(pn, yr, names, y_new)
    reweighted = None
    if _detected(bbsd, mmd, alpha):
        # The cohort's own labels give its class mix exactly; EM estimates it when there are none.
        by = "observed labels" if ls["observed_prevalence"] is not None else "EM estimate"
        target = ls["observed_prevalence"] or ls["prevalence"]
        ref = [ls["reference_prevalence"][c] for c in names]
        keep = reweighted_reference(yr, [target[c] for c in names], ref, seed)
        reweighted = {"n": int(keep.size), "bbsd_p_value": None, "mmd_p_value": None, "by": by,
                      "total_variation": float(0.5 * sum(abs(target[c] - r) for c, r in zip(names, ref)))}
        if keep.size >= MIN_REWEIGHTED:
            reweighted["bbsd_p_value"] = bbsd_test(pr[keep], pn, names, alpha=alpha)["p_value"]
            if have_features:
                reweighted["mmd_p_value"] = mmd_test(fr[keep], fn, **mmd_kw)["p_value"]
    verdict, explanation = shift_verdict(bbsd, mmd, ls, reweighted, alpha=alpha)
    return {"verdict": verdict, "explanation": explanation, "bbsd": bbsd, "mmd": mmd, "label_shift": ls,
            "reweighted": reweighted, "alpha": alpha}


def _tests(bbsd: dict, mmd: dict | None) -> list[tuple[str, float]]:
    return [("BBSD", bbsd["p_value"])] + ([("MMD", mmd["p_value"])] if mmd is not None else [])


def _detected(bbsd: dict, mmd: dict | None, alpha: float) -> bool:
    tests = _tests(bbsd, mmd)
    return min(p for _, p in tests) < alpha / len(tests)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def shift_verdict(bbsd: dict, mmd: dict | None, label: dict, reweighted: dict | None, *,
                  alpha: float = ALPHA) -> tuple[str, str]:
    """The conclusion the tests support, in words, with the statistics it rests on.

    Parameters
    ----------
    bbsd : dict
        :func:`bbsd_test`.
    mmd : dict or None
        :func:`mmd_test` (None: no features).
    label : dict
        :func:`label_shift`.
    reweighted : dict or None
        ``{"n", "bbsd_p_value", "mmd_p_value"}``: the tests on the reference drawn to the
        estimated cohort prevalence (None when no shift was detected).
    alpha : float
        Family-wise level over the BBSD and MMD tests (Bonferroni: each at ``alpha / k``).

    Returns
    -------
    (verdict, explanation) : str, str
        ``verdict`` is one of ``"no shift detected"``, ``"label shift"``, ``"covariate shift"``,
        ``"shift, kind unclear"``.
    """
    tests = _tests(bbsd, mmd)
    level = alpha / len(tests)
    stat = "; ".join(f"{name} {_p(p)}" for name, p in tests)
    if min(p for _, p in tests) >= level:
        return ("no shift detected",
                f"{stat} (each tested at {level:g}, Bonferroni over {len(tests)} test{'s' if len(tests) > 1 else ''}); "
                "this does not show the distributions are equal, only that these samples do not tell them apart")
    by = (reweighted or {}).get("by", "EM estimate")
    mix = "the cohort's class mix" + (" (its labels)" if by == "observed labels" else " (EM estimate)")
    tv = (reweighted or {}).get("total_variation", label["total_variation"])
    if reweighted is None or reweighted.get("bbsd_p_value") is None:
        n = None if reweighted is None else reweighted.get("n")
        return ("shift, kind unclear",
                f"{stat}: the outputs or features differ, but the reference drawn to {mix} "
                f"keeps too few samples ({n}) to tell label shift from covariate shift")
    after = [("BBSD", reweighted["bbsd_p_value"])]
    if reweighted.get("mmd_p_value") is not None:
        after.append(("MMD", reweighted["mmd_p_value"]))
    after_text = "; ".join(f"{name} {_p(p)}" for name, p in after)
    still = min(p for _, p in after) < level
    if not still and tv >= MIN_PREVALENCE_CHANGE:
        return ("label shift",
                f"{stat}; {mix} differs from the reference by {tv:.2f} (total variation), and "
                f"with the reference drawn to it (n = {reweighted['n']}) the tests no longer detect "
                f"a difference ({after_text}): the change in class mix explains it")
    if still:
        return ("covariate shift",
                f"{stat}; with the reference drawn to {mix} (n = {reweighted['n']}) the "
                f"difference remains ({after_text}): a change in class mix (total variation {tv:.2f}) does not "
                "explain it, the images themselves differ")
    return ("shift, kind unclear",
            f"{stat}; {mix} changes little (total variation {tv:.2f}) yet the reweighted "
            f"tests no longer detect the difference ({after_text}), so the kind of shift cannot be named")
