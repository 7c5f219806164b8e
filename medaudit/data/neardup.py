"""Near-duplicate images: the same picture re-encoded, resized or with changed brightness.

Pixel-identical copies are found by content hash (:func:`medaudit.data.inspect.find_duplicates`);
a copy saved again as JPEG, at another size or with another window/level has other pixels and
escapes them. Two images here are **near-duplicates** when

1. their 64-bit perceptual hashes (pHash, :func:`medaudit.data.images.perceptual_signature`,
   equal to ``imagehash.phash``) differ in at most :data:`MAX_DISTANCE` = 6 bits, and
2. their 16x16 grey thumbnails (from the same 32x32 resize) have a Pearson correlation of at
   least :data:`MIN_CORRELATION` = 0.99.

Why both, and these values (``python -m tests.test_data_neardup`` prints the distributions)
--------------------------------------------------------------------------------------------
Copies: every image of the demo generator (64/128/256 px) and of MedMNIST (28 px) re-encoded as
JPEG q=70, resized 0.5x/1.5x, brightened (+20, gain 0.8/1.2) or all at once stays within pHash
distance 4 in more than 98% of cases and within 6 in 100%, with thumbnail correlation >= 0.995
on the demo images; only halving an already 28-px image loses enough detail to fall below 0.99
(29-38% of those copies are missed, 4-11% after 0.75x + JPEG + brightness). Different images:
distances between different demo slices of one class (the hard case: one head template, one
lesion region) start at 4-6, and with 800 training images 6% of test images have one within 4
and 28% within 6; on PneumoniaMNIST 33 of 624 test chest X-rays are within 4 of some training
image (pixel correlation 0.77-0.89: alike, not copies). pHash alone cannot separate these, so it
is the index (fast candidate search) and the thumbnail correlation is the test: no pair of
different demo slices or PneumoniaMNIST images passes both, while BreastMNIST (BUSI, known to
hold re-saved copies) gives 46 test images near-duplicate to a training image, only 1 of them
pixel-identical. pHash distances between balanced hashes are even, so 6 and 7 are the same.

Not covered: shifts and crops. pHash moves 8-30 bits for a 2-4 px shift of a 64-px image, as
much as between different images, so shifted copies are not found. Flat images (no contrast)
have no defined correlation and are never near-duplicates here (pixel-identical ones are still
duplicates).

Cost
----
Candidates come from multi-index hashing: the 64 bits are cut into ``k + 1`` chunks, and two
hashes within distance ``k`` agree exactly on at least one chunk (pigeonhole), so each chunk is
an exact-match join (sort + ``searchsorted``), vectorised and processed in bounded blocks. Each
candidate pair is kept only for the first chunk it agrees on, so no pair is reported twice.
Within 50,000 random balanced hashes (32 bits set, as pHashes are) the search takes about 0.4 s
for distance <= 4 and 3 s for <= 6 on one CPU core; 100,000 take 1.3 s and 8 s. The hashes come
from the single decode pass (:meth:`medaudit.data.base.Split.perceptual_hashes`); the Lanczos
resize they need costs about 2 ms for a 512x512 image, next to 3-4 ms to decode its PNG.

Pairs that look alike by pHash can be many more than the pairs found (a 30,000-image synthetic
split of smooth gradients gives 47 M candidates, 2 M within distance 6 and 26,520 confirmed,
9 s), and the result is a pure function of the hashes and thumbnails, which the image hash
cache keeps. So the confirmed pairs of each (split, split) search are cached too
(:func:`cached_near_duplicate_pairs`), keyed by a sha256 of those arrays and the thresholds: a
second ``report`` over unchanged data searches nothing. A cached pair is only used after its
distance and correlation are recomputed from the current arrays and pass the thresholds, so a
damaged or edited cache can hide pairs (as an edited hash cache could), never invent one.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import numpy as np

from medaudit.data.base import Split
from medaudit.data.hashcache import cache_root, rehash_requested
from medaudit.errors import MedauditWarning
from medaudit.fileio import atomic_path

#: Largest pHash Hamming distance of a near-duplicate candidate (see the module docstring).
MAX_DISTANCE = 6
#: Smallest thumbnail correlation that confirms a candidate (see the module docstring).
MIN_CORRELATION = 0.99
_BLOCK = 1 << 19  # candidate pairs per vectorised block (~25 MB of int64 temporaries)
_CORR_BLOCK = 1 << 13  # pairs whose thumbnails are correlated at once (2 x 8192 x 256 float64 = 32 MB)
#: Bump when the pair search's result for the same inputs would change (the cached pairs' meaning).
PAIR_CACHE_FORMAT = 1
_PAIR_KEYS = ("key", "ia", "ib", "distance", "correlation")
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64.

    Parameters
    ----------
    x : ndarray of uint64, shape (...)

    Returns
    -------
    ndarray of int64, same shape
    """
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    return _POP8[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.int64)


def _chunks(k: int) -> list[tuple[int, np.uint64]]:
    """(shift, mask) of ``k + 1`` contiguous bit chunks covering the 64 bits."""
    n = k + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, np.uint64((1 << w) - 1)))
        shift += w
    return out


def hamming_pairs(a: np.ndarray, b: np.ndarray | None = None, *, max_distance: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of 64-bit hashes within a Hamming distance, without comparing all pairs.

    Parameters
    ----------
    a : ndarray of uint64, shape (N,)
    b : ndarray of uint64, shape (M,), optional
        Without it, pairs within ``a`` (``i < j``).
    max_distance : int
        0 to 63.

    Returns
    -------
    ia : ndarray of int64, shape (P,)
        Indices into ``a``.
    ib : ndarray of int64, shape (P,)
        Indices into ``b`` (into ``a`` when ``b`` is None; then ``ia < ib``).
    distance : ndarray of int64, shape (P,)
        Each pair once, sorted by (ia, ib).
    """
    return _sorted_pairs(list(_hamming_blocks(a, b, max_distance)))


def _hamming_blocks(a: np.ndarray, b: np.ndarray | None, max_distance: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`hamming_pairs` one block of candidates at a time (each pair once, unsorted), so a
    caller that filters them further holds one block (< ``_BLOCK`` candidates), not all of them."""
    if not 0 <= max_distance < 64:
        raise ValueError("max_distance must be in 0..63")
    a = np.asarray(a, dtype=np.uint64)
    same = b is None
    b = a if same else np.asarray(b, dtype=np.uint64)
    chunks = _chunks(max_distance)
    for c, (shift, mask) in enumerate(chunks):
        ka = (a >> np.uint64(shift)) & mask
        order = np.argsort(ka, kind="stable")
        ka_sorted = ka[order]
        kb = (b >> np.uint64(shift)) & mask
        lo = np.searchsorted(ka_sorted, kb, side="left")
        counts = np.searchsorted(ka_sorted, kb, side="right") - lo
        # Blocks of b whose candidate lists together stay below _BLOCK pairs.
        ends = np.cumsum(counts)
        start = 0
        while start < len(b):
            stop = max(int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _BLOCK, side="right")),
                       start + 1)
            cnt = counts[start:stop]
            total = int(cnt.sum())
            if total:
                jb = np.repeat(np.arange(start, stop), cnt)
                first = np.repeat(np.cumsum(cnt) - cnt, cnt)
                ja = order[np.repeat(lo[start:stop], cnt) + np.arange(total) - first]
                xor = a[ja] ^ b[jb]
                keep = popcount64(xor) <= max_distance
                for s2, m2 in chunks[:c]:  # found already on an earlier chunk
                    keep &= ((xor >> np.uint64(s2)) & m2) != 0
                if same:
                    keep &= ja < jb
                yield ja[keep].astype(np.int64), jb[keep].astype(np.int64), popcount64(xor[keep]).astype(np.int64)
            start = stop


def _sorted_pairs(found: list[tuple[np.ndarray, ...]], dtypes: tuple = (np.int64,) * 3) -> tuple[np.ndarray, ...]:
    """Concatenate per-block pair arrays (ia, ib, ...) and sort them by (ia, ib); with no blocks,
    empty arrays of ``dtypes``."""
    if not found:
        return tuple(np.zeros(0, dtype=dt) for dt in dtypes)
    cols = [np.concatenate(x) for x in zip(*found)]
    order = np.lexsort((cols[1], cols[0]))
    return tuple(c[order] for c in cols)


def thumbnail_correlation(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Pearson correlation of paired thumbnails; NaN where either is flat (no contrast).

    Parameters
    ----------
    ta, tb : ndarray of uint8, shape (P, D)

    Returns
    -------
    ndarray of float64, shape (P,)
    """
    # From raw sums, no centred copies. With uint8 inputs and D <= 256 every product (<= 255^2)
    # and every partial sum (< 2^24) is an integer float32 holds exactly, and the float64 terms
    # S_x S_y / D below are exact too, so only the final sqrt/divide round.
    d = ta.shape[1]
    ft = np.float32 if d <= 256 else np.float64
    x, y = ta.astype(ft), tb.astype(ft)

    def dot(u, v):
        return np.einsum("ij,ij->i", u, v).astype(np.float64)

    sx, sy = x.sum(axis=1, dtype=np.float64), y.sum(axis=1, dtype=np.float64)
    vx = dot(x, x) - sx * sx / d
    vy = dot(y, y) - sy * sy / d
    num = dot(x, y) - sx * sy / d
    den = np.sqrt(np.maximum(vx, 0.0) * np.maximum(vy, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def near_duplicate_pairs(hashes_a, thumbs_a, hashes_b=None, thumbs_b=None, *, max_distance: int = MAX_DISTANCE,
                         min_correlation: float = MIN_CORRELATION) -> dict[str, np.ndarray]:
    """Confirmed near-duplicate pairs between two sets of images (or within one).

    Parameters
    ----------
    hashes_a : ndarray of uint64, shape (N,)
    thumbs_a : ndarray of uint8, shape (N, D)
    hashes_b : ndarray of uint64, shape (M,), optional
        Without it (and ``thumbs_b``), pairs within ``a`` (``ia < ib``).
    thumbs_b : ndarray of uint8, shape (M, D), optional
    max_distance : int
    min_correlation : float

    Returns
    -------
    dict
        ``ia``, ``ib`` (int64), ``distance`` (int64) and ``correlation`` (float64), all shape (P,).
    """
    same = hashes_b is None
    tb = thumbs_a if same else thumbs_b
    # Confirmed block by block: on clustered data the pHash candidates within max_distance
    # outnumber the confirmed pairs ~100:1 (50k synthetic PNGs: 2.0 M vs 26.5 k), and holding
    # them all was +150 MB of peak memory.
    confirmed = []
    for ia, ib, d in _hamming_blocks(hashes_a, None if same else hashes_b, max_distance):
        r = np.concatenate([thumbnail_correlation(thumbs_a[ia[s:s + _CORR_BLOCK]], tb[ib[s:s + _CORR_BLOCK]])
                            for s in range(0, len(ia), _CORR_BLOCK)]) if len(ia) else np.zeros(0)
        keep = r >= min_correlation  # NaN (flat) is never kept
        confirmed.append((ia[keep], ib[keep], d[keep], r[keep]))
    ia, ib, d, r = _sorted_pairs(confirmed, dtypes=(np.int64, np.int64, np.int64, np.float64))
    return {"ia": ia, "ib": ib, "distance": d, "correlation": r}


def _pair_cache_file(arrays: list[np.ndarray], max_distance: int, min_correlation: float) -> tuple[Path, str]:
    h = hashlib.sha256(f"neardup:{PAIR_CACHE_FORMAT}:{max_distance}:{float(min_correlation)!r}:".encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}:{a.shape}:".encode())
        h.update(a.tobytes())
    key = h.hexdigest()
    return cache_root() / "neardup" / f"{key[:32]}.npz", key


def _read_pairs(file: Path, key: str, ha, ta, hb, tb, same: bool, max_distance: int,
                min_correlation: float) -> dict[str, np.ndarray] | None:
    """The cached pairs in ``file`` after checking each against the arrays, or None (absent or unusable)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ia, ib = arrays["ia"], arrays["ib"]
        if set(arrays) != set(_PAIR_KEYS) or bytes(arrays["key"]).decode() != key:
            raise ValueError("members or key differ")
        if ia.dtype != np.int64 or ib.dtype != np.int64 or ia.ndim != 1 or ia.shape != ib.shape:
            raise ValueError("index arrays of the wrong kind")
        if len(ia) and (ia.min() < 0 or ib.min() < 0 or ia.max() >= len(ha) or ib.max() >= len(hb)):
            raise ValueError("an index out of range")
        if (np.diff(ia * len(hb) + ib) <= 0).any() or (same and (ia >= ib).any()):
            raise ValueError("pairs not in order or repeated")
        d = popcount64(ha[ia] ^ hb[ib])
        r = thumbnail_correlation(ta[ia], tb[ib]) if len(ia) else np.zeros(0)
        if (d > max_distance).any() or not (r >= min_correlation).all():
            raise ValueError("a pair that does not pass the thresholds")
    except Exception as exc:  # any damage: zip/npy errors, missing members, wrong kinds, failed checks
        warnings.warn(f"near-duplicate cache {file} is unusable ({type(exc).__name__}: {exc}); searching again "
                      "and rewriting it", MedauditWarning, stacklevel=4)
        return None
    return {"ia": ia, "ib": ib, "distance": d, "correlation": r}


def cached_near_duplicate_pairs(hashes_a, thumbs_a, hashes_b=None, thumbs_b=None, *,
                                max_distance: int = MAX_DISTANCE,
                                min_correlation: float = MIN_CORRELATION) -> dict[str, np.ndarray]:
    """:func:`near_duplicate_pairs`, kept in ``$MEDAUDIT_CACHE/neardup`` (module docstring, "Cost").

    Not read under ``--rehash`` (:func:`medaudit.data.hashcache.rehash`); a cache folder that
    cannot be written only warns.
    """
    same = hashes_b is None
    ha, ta = np.asarray(hashes_a, dtype=np.uint64), np.asarray(thumbs_a)
    hb, tb = (ha, ta) if same else (np.asarray(hashes_b, dtype=np.uint64), np.asarray(thumbs_b))
    file, key = _pair_cache_file([ha, ta] if same else [ha, ta, hb, tb], max_distance, min_correlation)
    if not rehash_requested():
        found = _read_pairs(file, key, ha, ta, hb, tb, same, max_distance, min_correlation)
        if found is not None:
            return found
    pairs = near_duplicate_pairs(ha, ta, None if same else hb, None if same else tb,
                                 max_distance=max_distance, min_correlation=min_correlation)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, key=np.frombuffer(key.encode(), dtype=np.uint8), **pairs)
    except OSError as exc:
        warnings.warn(f"could not write the near-duplicate cache {file} ({exc.strerror or exc}); the next run "
                      "will search again", MedauditWarning, stacklevel=2)
    return pairs


def _thumbnail_uri(thumb: np.ndarray) -> str:
    """A 16x16 grey thumbnail as a PNG data URI (a few hundred bytes), so the report can show the
    pair without the images."""
    import base64
    import io

    from PIL import Image

    side = int(round(np.sqrt(thumb.size)))
    buf = io.BytesIO()
    Image.fromarray(np.asarray(thumb, np.uint8).reshape(side, side), "L").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _example(split_a: str, id_a: str, split_b: str, id_b: str, d: int, r: float, thumb_a=None, thumb_b=None) -> dict:
    out = {"split_a": split_a, "a": id_a, "split_b": split_b, "b": id_b, "distance": int(d),
           "correlation": round(float(r), 4)}
    if thumb_a is not None and thumb_b is not None:
        out["thumbnails"] = [_thumbnail_uri(thumb_a), _thumbnail_uri(thumb_b)]
    return out


def find_near_duplicates(splits: dict[str, Split], *, max_examples: int = 20, max_distance: int = MAX_DISTANCE,
                         min_correlation: float = MIN_CORRELATION) -> dict:
    """Near-duplicate images within and across splits (rule and thresholds: module docstring).

    Parameters
    ----------
    splits : dict of str to Split
        In canonical order (train, val, test, all).
    max_examples : int
        Most example pairs listed in total and per split pair.
    max_distance, min_correlation
        The two thresholds (defaults :data:`MAX_DISTANCE`, :data:`MIN_CORRELATION`).

    Returns
    -------
    dict
        JSON-serialisable:

        * ``method``, ``max_distance``, ``min_correlation``;
        * ``within[split]``: ``{"n_pairs", "n_samples"}``, near-duplicate pairs inside the split and
          the samples in at least one (pixel-identical copies included);
        * ``across["a/b"]``: ``{"n", "n_pixel_identical", "examples"}`` for each earlier split ``a``
          and later split ``b``: ``n`` samples of ``b`` with a near-duplicate in ``a`` (as
          ``duplicates.across``, which counts the ``n_pixel_identical`` of them, flat images
          excepted), and up to
          ``max_examples`` pairs that are *not* pixel-identical (those are listed under
          ``duplicates``), closest first, one per sample of ``b``;
        * ``leakage``: true when any split pair has ``n > 0``;
        * ``examples``: up to ``max_examples`` pairs, across splits first, then within: each
          ``{"split_a", "a", "split_b", "b", "distance", "correlation"}`` (sample ids, so a report
          can draw both thumbnails).
    """
    sig = {name: s.perceptual_hashes() for name, s in splits.items()}
    content = {name: np.asarray(s.content_hashes()) for name, s in splits.items()}
    ids = {name: s.sample_ids for name, s in splits.items()}
    kw = {"max_distance": max_distance, "min_correlation": min_correlation}

    within: dict[str, dict] = {}
    within_examples: list[dict] = []
    for name, (h, t) in sig.items():
        p = cached_near_duplicate_pairs(h, t, **kw)
        within[name] = {"n_pairs": len(p["ia"]), "n_samples": len(np.union1d(p["ia"], p["ib"]))}
        differ = content[name][p["ia"]] != content[name][p["ib"]]
        order = np.lexsort((-p["correlation"], p["distance"]))
        within_examples += [_example(name, ids[name][p["ia"][i]], name, ids[name][p["ib"][i]],
                                     p["distance"][i], p["correlation"][i], t[p["ia"][i]], t[p["ib"][i]])
                            for i in order[differ[order]][:max_examples]]  # thumbnails drawn for these only

    across: dict[str, dict] = {}
    across_examples: list[dict] = []
    for a, b in combinations(list(splits), 2):
        p = cached_near_duplicate_pairs(*sig[a], *sig[b], **kw)
        identical = content[a][p["ia"]] == content[b][p["ib"]]
        samples = np.unique(p["ib"])
        n_identical = len(np.unique(p["ib"][identical]))
        # One example per sample of b, its closest partner in a; samples with a pixel-identical
        # partner are left to ``duplicates``.
        order = np.lexsort((-p["correlation"], p["distance"], p["ib"]))
        ib_sorted = p["ib"][order]
        best = order[np.r_[True, ib_sorted[1:] != ib_sorted[:-1]]] if len(order) else order
        copied = set(p["ib"][identical].tolist())
        best = [i for i in best if int(p["ib"][i]) not in copied]
        best.sort(key=lambda i: (int(p["distance"][i]), -float(p["correlation"][i]), int(p["ib"][i])))
        examples = [_example(a, ids[a][p["ia"][i]], b, ids[b][p["ib"][i]], p["distance"][i], p["correlation"][i],
                             sig[a][1][p["ia"][i]], sig[b][1][p["ib"][i]])
                    for i in best[:max_examples]]
        across[f"{a}/{b}"] = {"n": len(samples), "n_pixel_identical": n_identical, "examples": examples}
        across_examples += examples
    return {
        "method": f"pHash (64-bit DCT) Hamming distance <= {max_distance}, confirmed by a correlation >= "
                  f"{min_correlation} of 16x16 grey thumbnails",
        "max_distance": max_distance,
        "min_correlation": min_correlation,
        "within": within,
        "across": across,
        "leakage": any(v["n"] for v in across.values()),
        "examples": (across_examples + within_examples)[:max_examples],
    }
