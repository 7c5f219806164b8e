"""Patients as clusters: the cluster bootstrap on the one engine, and patient-level predictions.

Images of one patient are correlated (same anatomy, same scanner, often the same error), so a
bootstrap that resamples images treats them as independent evidence and its intervals are too
narrow. The cluster bootstrap resamples *patients*: each resample draws patients with
replacement and every image of a drawn patient comes along (Field & Welsh 2007, "Bootstrapping
clustered data"). On the engine of :mod:`medaudit.metrics.resample` this needs no new code
path: a resample's weight of image ``i`` is the count of its patient, so ``S @ W_images`` equals
``S' @ W_patients`` where ``S'`` adds up each patient's columns of ``S``. :func:`on_clusters`
builds ``S'`` (its blocks map entries to patients instead of images) and
:func:`~medaudit.metrics.resample.point_and_bootstrap` draws patient counts with
:func:`~medaudit.metrics.intervals.stratified_weights` unchanged. :func:`cluster_weights` is the
same draw expanded to images, for checking that identity.

Patient ids are the salted hashes of :mod:`medaudit.phi` (``"p-<16 hex>"``); ``""`` means the
patient is unknown, and each such image is its own cluster (the only safe assumption: pooling
the unknowns would invent one huge patient).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.intervals import stratified_weights
from medaudit.metrics.resample import Block

AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class Clusters:
    """Which cluster (patient) each sample belongs to, numbered so that strata are contiguous.

    Attributes
    ----------
    index : ndarray of int64, shape (N,)
        Cluster of each sample, in ``[0, n_clusters)``.
    ids : ndarray of str, shape (K,)
        Hashed patient id of each cluster; ``""`` for a sample whose patient is unknown.
    strata_sizes : list of int
        Clusters per stratum, in cluster order (see :func:`cluster_index`).
    given : bool
        False when no patient ids were given and every sample is its own cluster.
    """

    index: np.ndarray
    ids: np.ndarray
    strata_sizes: list[int]
    given: bool

    @property
    def n_clusters(self) -> int:
        return int(self.ids.shape[0])

    def count(self, mask: np.ndarray) -> int:
        """Distinct clusters among the samples where ``mask`` (N,) is True."""
        return int(np.unique(self.index[np.asarray(mask, dtype=bool)]).size)


def check_clusters(clusters, n: int, param: str = "clusters") -> np.ndarray | None:
    """Patient ids as a str array (N,), ``""`` = unknown; None passes through.

    Parameters
    ----------
    clusters : array_like of str, shape (N,), or None
    n : int
        Number of samples.
    param : str
        The parameter named in errors.

    Returns
    -------
    ndarray of str, shape (N,), or None

    Raises
    ------
    MedauditError
        If the length differs from ``n`` or the values are numbers (hashed ids are strings).
    """
    if clusters is None:
        return None
    arr = np.asarray(clusters)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise MedauditError(f"patient ids: need one per sample ({n}), got shape {arr.shape}", param=param)
    if arr.dtype.kind not in "UO":
        raise MedauditError("patient ids must be strings (hashed ids from the loader, '' = unknown), "
                            f"got {arr.dtype} values", param=param)
    return np.asarray(["" if v is None else str(v) for v in arr], dtype=str) if arr.dtype.kind == "O" else arr


def cluster_index(clusters: np.ndarray | None, stratum: np.ndarray) -> Clusters:
    """Number the clusters: stratum by stratum, named patients by id, then unknown singletons.

    Parameters
    ----------
    clusters : ndarray of str, shape (N,), or None
        Hashed patient ids, ``""`` = unknown (own cluster). None: every sample is its own cluster.
    stratum : ndarray of int, shape (N,)
        Stratum of each sample (e.g. 1 = disease). A cluster's stratum is the *largest* of its
        samples' (a patient with any disease image is a disease patient).

    Returns
    -------
    Clusters

    Notes
    -----
    Named clusters are ordered by their id and singletons by sample position, so with samples
    in a canonical order the numbering (and every seeded resample) does not depend on the
    order the caller passed them in.
    """
    stratum = np.asarray(stratum, dtype=np.int64)
    n = stratum.shape[0]
    ids = np.full(n, "", dtype=str) if clusters is None else np.asarray(clusters, dtype=str)
    named = ids != ""
    uniq, inv = np.unique(ids[named], return_inverse=True)
    raw = np.empty(n, dtype=np.int64)
    raw[named] = inv
    raw[~named] = uniq.size + np.arange(int((~named).sum()))  # each unknown its own cluster
    k = uniq.size + int((~named).sum())
    c_stratum = np.zeros(k, dtype=np.int64)
    np.maximum.at(c_stratum, raw, stratum)
    c_ids = np.concatenate([uniq, np.full(k - uniq.size, "", dtype=str)]).astype(str)
    order = np.lexsort((np.arange(k), c_stratum))  # by stratum; named (by id) before singletons
    new = np.empty(k, dtype=np.int64)
    new[order] = np.arange(k)
    sizes = np.bincount(c_stratum, minlength=int(stratum.max(initial=0)) + 1).tolist()
    return Clusters(index=new[raw], ids=c_ids[order], strata_sizes=sizes, given=clusters is not None)


def on_clusters(blocks: Sequence[Block], clusters: Clusters) -> list[Block]:
    """The same blocks with their entries mapped from samples to clusters.

    Parameters
    ----------
    blocks : sequence of Block
        Blocks whose ``cols`` are sample indices in ``[0, N)``.
    clusters : Clusters

    Returns
    -------
    list of Block
        Blocks over ``clusters.n_clusters`` columns for a
        :class:`~medaudit.metrics.resample.SumDesign`: with cluster count weights ``W`` (K, m)
        their sums equal the original blocks' sums with weights ``W[clusters.index]``.
    """
    return [Block(b.name, b.rows, clusters.index[np.asarray(b.cols, dtype=np.int64)], b.n_rows, b.data)
            for b in blocks]


def cluster_weights(clusters: Clusters, n_bootstrap: int, rng: np.random.Generator,
                    chunk: int) -> Iterator[np.ndarray]:
    """Cluster-bootstrap weights per *sample*: each sample weighs its cluster's draw count.

    The clusters are drawn with :func:`~medaudit.metrics.intervals.stratified_weights` (with
    replacement, within each stratum of :attr:`Clusters.strata_sizes`); this is the draw that
    :func:`~medaudit.metrics.resample.point_and_bootstrap` makes on a design built with
    :func:`on_clusters`, expanded to samples.

    Parameters
    ----------
    clusters : Clusters
    n_bootstrap : int
    rng : numpy.random.Generator
    chunk : int
        Resamples per yielded array.

    Yields
    ------
    ndarray of float32, shape (N, m)
        ``w[i, j]`` = how often the cluster of sample ``i`` was drawn in resample ``j``.
    """
    for w in stratified_weights(clusters.strata_sizes, n_bootstrap, rng, chunk):
        yield w[clusters.index]


# -- patient-level predictions ------------------------------------------------------------------


@dataclass(frozen=True)
class PatientLevel:
    """One row per patient, ready for :func:`~medaudit.metrics.compute_metrics`.

    Attributes
    ----------
    y_true : ndarray of int64, shape (P,)
    probs : ndarray of float64, shape (P, C')
    class_names : list of str, length C'
    task : {"binary", "multiclass"}
    patient_ids : ndarray of str, shape (P,)
        Hashed ids; ``""`` for an image whose patient is unknown (kept as its own patient).
    n_images : ndarray of int64, shape (P,)
    aggregate : {"max", "mean"}
    excluded : dict
        ``n_patients``, ``n_images`` and ``reason`` of patients left out (multiclass patients
        whose images disagree on the class); zeros and None when none was.
    """

    y_true: np.ndarray
    probs: np.ndarray
    class_names: list[str]
    task: str
    patient_ids: np.ndarray
    n_images: np.ndarray
    aggregate: str
    excluded: dict


def _group_reduce(values: np.ndarray, index: np.ndarray, k: int, how: str) -> np.ndarray:
    """Per-cluster max or mean of ``values`` (N, ...) over samples with cluster ``index`` (N,)."""
    if how == "mean":
        out = np.zeros((k,) + values.shape[1:])
        np.add.at(out, index, values)
        return out / np.bincount(index, minlength=k).reshape((k,) + (1,) * (values.ndim - 1))
    order = np.argsort(index, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(index[order]) != 0])
    return np.maximum.reduceat(values[order], starts, axis=0)


def patient_level(y_true, probs, clusters, class_names, negative_classes=None, *,
                  aggregate: str = "max") -> PatientLevel:
    """Aggregate image predictions to one prediction per patient.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
        True class index of each image.
    probs : array_like of float, shape (N, C)
        Probabilities of each image.
    clusters : array_like of str, shape (N,)
        Hashed patient id of each image; ``""`` = unknown (the image counts as its own patient).
    class_names : sequence of str, length C
    negative_classes : sequence of str, optional
        The "no disease" classes. Given: the disease-vs-healthy view (binary). None: the
        multiclass view.
    aggregate : {"max", "mean"}
        How a patient's images combine. Disease-vs-healthy: the patient's disease score
        ``p(disease) = 1 - sum p(negative classes)`` is the max (a finding on any image counts;
        the usual reading rule) or the mean over the images. Multiclass: only ``"mean"`` (the
        mean probability vector; a per-class max does not form a distribution).

    Returns
    -------
    PatientLevel
        Disease-vs-healthy: ``task="binary"``, ``class_names = ["no disease", "disease"]``,
        ``y_true`` 1 when *any* image of the patient is a disease image, ``probs`` ``[1 - s, s]``.
        Multiclass: the original classes; a patient whose images carry different classes has
        no single label, so it is left out and counted in ``excluded`` (a majority vote would
        pick a label the patient does not have, and ties have no answer).

    Raises
    ------
    MedauditError
        Bad shapes, unknown classes, an unknown ``aggregate``, ``"max"`` without negative
        classes, or no patient left.
    """
    if aggregate not in AGGREGATES:
        raise MedauditError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}", param="aggregate")
    names = [str(c) for c in class_names]
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] != len(names) or y.shape != (p.shape[0],):
        raise MedauditError(f"patient_level: y_true {y.shape} and probs {p.shape} do not match {len(names)} classes")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(names)):
        raise MedauditError(f"patient_level: y_true must hold class indices in [0, {len(names)})")
    ids = check_clusters(clusters, y.shape[0])
    if y.size == 0:
        raise MedauditError("patient_level: no images")
    cl = cluster_index(ids, np.zeros(y.shape[0], np.int64))
    k, idx = cl.n_clusters, cl.index
    n_images = np.bincount(idx, minlength=k)
    if negative_classes is not None:
        neg_idx = negative_indices(names, negative_classes)
        score = 1.0 - p[:, neg_idx].sum(axis=1)
        s = _group_reduce(score, idx, k, aggregate)
        label = np.zeros(k, dtype=np.int64)
        np.maximum.at(label, idx, (~np.isin(y, neg_idx)).astype(np.int64))
        return PatientLevel(label, np.column_stack([1.0 - s, s]), ["no disease", "disease"], "binary", cl.ids,
                            n_images, aggregate, {"n_patients": 0, "n_images": 0, "reason": None})
    if aggregate == "max":
        raise MedauditError("aggregate='max' needs the disease-vs-healthy view (pass negative_classes); the "
                            "multiclass view averages the probability vectors (aggregate='mean')", param="aggregate")
    lo, hi = np.full(k, len(names)), np.full(k, -1)
    np.minimum.at(lo, idx, y)
    np.maximum.at(hi, idx, y)
    keep = lo == hi
    if not keep.any():
        raise MedauditError("patient_level: every patient's images disagree on the class; no patient-level label")
    mean = _group_reduce(p, idx, k, "mean")
    excluded = {"n_patients": int((~keep).sum()), "n_images": int(n_images[~keep].sum()),
                "reason": "images of the patient carry different classes" if (~keep).any() else None}
    return PatientLevel(lo[keep].astype(np.int64), mean[keep], names, "multiclass", cl.ids[keep],
                        n_images[keep], aggregate, excluded)


def negative_indices(names: list[str], negative_classes) -> list[int]:
    """Indices of the "no disease" classes, checked as :func:`~medaudit.metrics.fn_risk` checks them.

    Parameters
    ----------
    names : list of str, length C
    negative_classes : sequence of str

    Returns
    -------
    list of int

    Raises
    ------
    MedauditError
        If none is given, one is not a class, or every class is negative.
    """
    negatives = [str(c) for c in negative_classes]
    unknown = [c for c in negatives if c not in names]
    if not negatives or unknown:
        raise MedauditError(f"negative classes {unknown or '[]'} are not among the class names {names}; pass "
                            "existing class names", param="negative_classes")
    if len(set(negatives)) == len(names):
        raise MedauditError("every class is a negative class, so there is no disease to detect",
                            param="negative_classes")
    return sorted({names.index(c) for c in negatives})
