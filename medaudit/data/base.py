"""The data types every source produces: :class:`Split` and :class:`Dataset`.

A split holds its samples either as files (paths decoded lazily by
:func:`medaudit.data.images.decode_image`) or as an in-memory uint8 array (``.npz``).
Both expose the same interface; ``split.array`` is the fast path for arrays.

Content hashes (duplicates, fingerprints) are sha256 over the *decoded, normalised*
pixels plus mode and size (see :mod:`medaudit.data.images`), not over file bytes, so the
same picture saved twice with different metadata or compression counts as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medaudit.data.hashcache import HashCache
from medaudit.data.images import array_hash, array_perceptual_signatures, decode_image
from medaudit.data.scan import ScanPlan, scan_files
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.tasks import check_task

SPLIT_ORDER = ("train", "val", "test", "all")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def normalise_split_name(name: str) -> str | None:
    """Map ``Training``/``validation``/``TEST``... to ``train``/``val``/``test``; None if not a split name."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def _sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(eq=False)
class Split:
    """One split of a dataset (``train``, ``val``, ``test`` or ``all``).

    Parameters
    ----------
    name : str
    sample_ids : list of str, length N
        Relative posix path for files, ``"<split>/<index>"`` for array data. Unique.
    labels : ndarray, shape (N,) int64 or (N, K) int8 (multilabel)
    class_names : list of str
    paths : list of Path, optional
        Absolute file paths (file-backed splits).
    array : ndarray of uint8, shape (N, H, W) or (N, H, W, 3), optional
        Pixel data (array-backed splits); never copied or converted to float.
    metadata : dict of str to ndarray, optional
        Per-sample context (patient, sex, age, site, scanner, ...), one array of length N per
        column: float64 for numeric columns (NaN = missing), str for categorical ones ("" =
        missing, shown as "unknown"). Identifier columns hold salted hashes
        (:func:`medaudit.phi.hash_identifiers`), never the raw values.
    """

    name: str
    sample_ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    paths: list[Path] | None = None
    array: np.ndarray | None = None
    metadata: dict[str, np.ndarray] | None = None
    _scan: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.paths is None) == (self.array is None):
            raise ValueError("a Split needs exactly one of paths or array")
        n = len(self.sample_ids)
        if n == 0:
            raise MedauditError(f"split '{self.name}' is empty; add images or remove the split")
        if len(self.labels) != n or (self.paths is not None and len(self.paths) != n):
            raise ValueError("sample_ids, labels and paths must have the same length")
        if self.array is not None and len(self.array) != n:
            raise ValueError("array and sample_ids must have the same length")
        if len(set(self.sample_ids)) != n:
            dup = next(s for s, c in Counter(self.sample_ids).items() if c > 1)
            raise MedauditError(f"split '{self.name}': sample '{dup}' is listed more than once")
        for col, values in (self.metadata or {}).items():
            if len(values) != n or np.asarray(values).dtype.kind not in "fU":
                raise ValueError(f"metadata column {col!r}: need {n} float64 or str values")

    def __len__(self) -> int:
        return len(self.sample_ids)

    def subset(self, indices, name: str) -> Split:
        """The samples at ``indices`` (in that order) as a split of their own named ``name``.

        Array-backed splits copy only the chosen rows; file-backed ones share the paths.
        """
        idx = np.asarray(indices, dtype=np.int64)
        return Split(name=name, sample_ids=[self.sample_ids[i] for i in idx], labels=self.labels[idx],
                     class_names=list(self.class_names),
                     paths=[self.paths[i] for i in idx] if self.paths is not None else None,
                     array=self.array[idx] if self.array is not None else None,
                     metadata={k: v[idx] for k, v in self.metadata.items()} if self.metadata else None)

    def __repr__(self) -> str:
        kind = "array" if self.array is not None else "files"
        return f"Split(name={self.name!r}, n={len(self)}, {kind})"

    # -- pixels ------------------------------------------------------------
    def load_image(self, i: int, *, draft_min_side: int | None = None) -> Image.Image:
        """Decoded, fully loaded image ``i`` in mode ``"L"`` or ``"RGB"``.

        ``draft_min_side``: a JPEG file may be decoded at a reduced DCT scale keeping both sides
        ``>=`` it (:func:`medaudit.data.images.decode_image`; the recipe's ``jpeg_draft``).

        Raises
        ------
        MedauditError
            The file is missing, unreadable, truncated or a decompression bomb.
        """
        if self.array is not None:
            return Image.fromarray(self.array[i])
        if draft_min_side is None:  # the hook's plain call: subclasses may override _decode(i) alone
            return self._decode(i)[0]
        return self._decode(i, draft_min_side=draft_min_side)[0]

    def _decode(self, i: int, draft_min_side: int | None = None) -> tuple[Image.Image, str]:
        """(normalised image, original mode) of file ``i``; the one decoder hook (DICOM splits override it)."""
        return decode_image(self.paths[i], display=self._display(i), draft_min_side=draft_min_side)

    def _display(self, i: int) -> str:
        return str(self.paths[i]) if self.paths is not None else self.sample_ids[i]

    def _ensure_scan(self) -> dict:
        """Decode every sample once: content hashes, sizes, original modes, failures (cached)."""
        if self._scan is not None:
            return self._scan
        n = len(self)
        if self.array is not None:
            # Arrays need no decoding, so their perceptual hashes wait for perceptual_hashes():
            # content hashes (fingerprints) stay a fast sha256 pass.
            _, h, w = self.array.shape[:3]
            mode = "L" if self.array.ndim == 3 else "RGB"
            self._scan = {
                "hashes": [array_hash(img) for img in self.array],
                "phashes": None,
                "thumbs": None,
                "sizes": Counter({(w, h): n}),
                "modes": Counter({mode: n}),
                "errors": [],
            }
            return self._scan
        # The perceptual hash and thumbnail (near-duplicates) come from this same pass: a second
        # decode of every image would double the cost of ``report``. Files unchanged since an
        # earlier run are not decoded at all (the persistent hash cache); the others are decoded
        # by worker processes when there are many. Results stream in one image at a time, so
        # memory is the (N, 256) thumbnails and N hashes, never the pixels of a split.
        return self.complete_scan(self._plan_scan())

    def _plan_scan(self) -> ScanPlan:
        """Stat every file against the persistent hash cache: a plan holding the hits, listing the misses."""
        tag = self._hash_cache_tag()
        plan = ScanPlan(len(self), HashCache.open(self.paths, split=self.name, tag=tag) if tag is not None else None)
        for i in range(len(self)):
            if plan.cache is None or not plan.take_cached(i):
                plan.misses.append(i)
                # Without a hash cache (DICOM) every run must scan anyway: scanning first may find the pass cached.
                plan.n_unknown += plan.cache is not None and not plan.cache.knows(i)
        return plan

    def complete_scan(self, plan: ScanPlan) -> dict:
        """Finish the scan from ``plan``: decode the misses nobody recorded (a pass records those it
        decoded), write the hash cache, keep and return the scan."""
        left = [i for i in plan.misses if not plan.done[i]]
        for i, result in zip(left, scan_files(self, left)):
            plan.record(i, result)
        if plan.cache is not None:
            plan.cache.save()
        self._scan = plan.result()
        return self._scan

    def fused_scan_plan(self, *, cold_only: bool = True) -> ScanPlan | None:
        """The scan to do inside a pass that decodes every file anyway (inference), or None.

        Offered to a file-backed split not yet scanned whose hash cache misses some files;
        with ``cold_only`` (a caller that would look the pass up in a cache), only when more
        than half of the files were never hashed at their path (a new folder). Files that were
        (changed, touched or just written: :mod:`medaudit.data.hashcache`) are hashed first:
        that is cheap, and the fingerprint it gives may find the pass already cached. A copied
        or moved folder is the case this gets wrong: it is predicted again, not looked up.
        The pass records each miss's decode
        (:meth:`ScanPlan.record`, :func:`medaudit.data.scan.scan_decoded`) and hands the plan back to
        :meth:`complete_scan`, so the image is decoded once, not once to hash and again to predict.
        When no plan is offered, a file split is scanned now (its files are stat'ed once either way).
        """
        if self.array is not None or self._scan is not None:
            return None
        plan = self._plan_scan()
        if not plan.misses or (cold_only and 2 * plan.n_unknown <= len(self)):
            self.complete_scan(plan)
            return None
        return plan

    def _hash_cache_tag(self) -> str | None:
        """Which decoder's results the persistent hash cache may hold for this split, or None (no cache).

        Only the plain image decoder qualifies: a subclass that overrides :meth:`_decode` (DICOM,
        corrupted views) returns other pixels for the same file, so it gets no cache unless it
        overrides this with a tag naming everything its pixels depend on.
        """
        return "pixels" if type(self)._decode is Split._decode else None

    def verify(self) -> None:
        """Decode every image; raise one MedauditError naming the unreadable files (if any)."""
        errors = self._ensure_scan()["errors"]
        if errors:
            more = f" (and {len(errors) - 1} more unreadable images in split '{self.name}')" if len(errors) > 1 else ""
            raise MedauditError(errors[0] + more)

    def content_hashes(self) -> list[str]:
        """Per-sample sha256 of the decoded, normalised pixels (+ mode and size); cached.

        Raises MedauditError when an image cannot be decoded (see :meth:`verify`).
        """
        self.verify()
        return list(self._scan["hashes"])

    def perceptual_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample 64-bit pHash and 16x16 grey thumbnail (near-duplicates); cached.

        Files: computed in the same decode pass as :meth:`content_hashes`
        (:func:`medaudit.data.images.perceptual_signature`); arrays: on first call, batched.

        Returns
        -------
        phashes : ndarray of uint64, shape (N,)
        thumbnails : ndarray of uint8, shape (N, 256)
            Row-major 16x16 thumbnails.

        Raises MedauditError when an image cannot be decoded (see :meth:`verify`).
        """
        self.verify()
        if self._scan["phashes"] is None:
            self._scan["phashes"], self._scan["thumbs"] = array_perceptual_signatures(self.array)
        return self._scan["phashes"].copy(), self._scan["thumbs"].copy()

    def image_stats(self) -> tuple[Counter, Counter]:
        """(Counter of (width, height), Counter of original modes) over all samples."""
        self.verify()
        return self._scan["sizes"], self._scan["modes"]

    # -- labels ------------------------------------------------------------
    def class_counts(self) -> dict[str, int]:
        """Samples per class name (multilabel: positives per label), every class listed."""
        if self.labels.ndim == 2:
            counts = self.labels.astype(np.int64).sum(axis=0)
        else:
            counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(counts[k]) for k, c in enumerate(self.class_names)}

    def fingerprint(self) -> str:
        """sha256 hex over sample ids, labels and content hashes (decodes every image once)."""
        return _sha256_json(
            {"ids": self.sample_ids, "labels": self.labels.astype(np.int64).tolist(), "hashes": self.content_hashes()}
        )


@dataclass(eq=False)
class Dataset:
    """A labelled image dataset: class names, task and named splits.

    Parameters
    ----------
    spec : str
        The ``--data`` value it was loaded from.
    class_names : list of str
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    splits : dict of str to Split
        Keys among ``train``, ``val``, ``test`` or the single ``all``.
    patient_column : str, optional
        The metadata column holding (hashed) patient ids, when the data has one.
    """

    spec: str
    class_names: list[str]
    task: str
    splits: dict[str, Split]
    patient_column: str | None = None

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Dataset(spec={self.spec!r}, task={self.task!r}, classes={self.class_names}, {parts})"

    def split(self, name: str) -> Split:
        """The split called ``name`` (aliases such as ``Testing`` accepted)."""
        key = normalise_split_name(name) or name
        if key not in self.splits:
            raise MedauditError(
                f"split '{name}' not found in {self.spec}; available splits: {', '.join(self.splits)}"
            )
        return self.splits[key]

    def fingerprint(self) -> str:
        """Stable sha256 hex over class names, task and every split's fingerprint."""
        return _sha256_json(
            {
                "class_names": self.class_names,
                "task": self.task,
                "splits": {k: s.fingerprint() for k, s in self.splits.items()},
            }
        )


def order_splits(splits: dict[str, Split]) -> dict[str, Split]:
    """Return ``splits`` in the canonical order train, val, test, all."""
    return {k: splits[k] for k in sorted(splits, key=SPLIT_ORDER.index)}


def resolve_task(requested: str | None, labels: list[np.ndarray], n_classes: int, default: str | None, where: str) -> str:
    """Detect (or check a declared) task from label shapes and the number of classes.

    ``ordinal`` is never detected, only declared (``task=`` or a known dataset's metadata).
    """
    multilabel = labels[0].ndim == 2
    if requested is not None:
        check_task(requested, where)
    if n_classes < 2:
        raise MedauditError(f"{where}: found {n_classes} class(es); a classifier audit needs at least 2")
    task = requested or default or ("multilabel" if multilabel else "binary" if n_classes == 2 else "multiclass")
    if multilabel != (task == "multilabel"):
        shape = "(N, K) multi-label" if multilabel else "(N,) single-label"
        raise MedauditError(f"{where}: task '{task}' does not fit its {shape} labels")
    if task == "binary" and n_classes != 2:
        raise MedauditError(f"{where}: task 'binary' needs exactly 2 classes, found {n_classes}")
    return task


def warn_missing_classes(splits: dict[str, Split]) -> None:
    """MedauditWarning for each class (label) with no samples (positives) in a split."""
    for name, split in splits.items():
        empty = [c for c, n in split.class_counts().items() if n == 0]
        if empty:
            warnings.warn(
                f"split '{name}' has no samples of class(es) {', '.join(repr(c) for c in empty)}; "
                "their per-class metrics will be undefined there",
                MedauditWarning,
                stacklevel=3,
            )
