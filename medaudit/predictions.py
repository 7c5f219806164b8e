"""The Predictions type: the contract between inference and every analysis.

A predictions file is a NumPy ``.npz`` (no pickle) holding:

``sample_ids``  (N,) unicode  – relative path, or ``"<split>/<index>"`` for array data
``y_true``      (N,) int64 for binary/multiclass/ordinal, (N, K) int8 for multilabel
``probs``       (N, C) float64 – softmax probabilities (single-label) or sigmoid
                 per label (multilabel); float64 because float32 rounds every probability
                 above 1 - 6e-8 to 1.0, which ties a confident model's top scores and biases AUC
``header``      0-d unicode – JSON: format, model name, class names, task, provenance
``checksum``    0-d unicode, optional – ``sha256:<hex>`` of the header and every array
                 (written for predictions cache entries, see :func:`arrays_checksum`)
``meta__<k>``   (N,) float64 or unicode, optional – metadata column k = 0, 1, ... (patient, age,
                 site, ...); the header's ``metadata`` block names each, with its kind and array

It is readable without medaudit: ``np.load(path, allow_pickle=False)`` and
``json.loads(str(f["header"]))``. See ``docs/predictions-format.md``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path, require_regular_file
from medaudit.tasks import TASKS

FORMAT = "medaudit.predictions/2"
# Version 1 stored float32 probabilities; it is still read (its values cannot be un-rounded).
READABLE_FORMATS = ("medaudit.predictions/1", FORMAT)
ARRAYS = ("sample_ids", "y_true", "probs")
# Metadata arrays are numbered, not named after their columns: a column name is free text (spaces,
# slashes, any script) and would make an awkward zip member name.
META_PREFIX = "meta__"
META_KINDS = {"numeric": "f", "categorical": "U"}
REDO = "re-run `medaudit predict` to write it again"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_NPY_MAGIC = b"\x93NUMPY"


class PredictionsFileError(MedauditError):
    """A predictions file that cannot be used; ``reason`` says why, without the path or advice.

    Parameters
    ----------
    path : Path
    reason : str
    advice : str, optional
        What to do, appended to the message (default: re-run ``medaudit predict``).
    """

    def __init__(self, path: Path, reason: str, advice: str | None = REDO) -> None:
        super().__init__(f"{path}: {reason}" + (f"; {advice}" if advice else ""))
        self.path = path
        self.reason = reason


class ChecksumMissing(PredictionsFileError):
    """A file read with ``require_checksum=True`` that holds none (a cache entry of an older medaudit)."""


def arrays_checksum(header: str, arrays: dict[str, np.ndarray]) -> str:
    """``sha256:<hex>`` of a predictions file's content: the header text and each array's dtype, shape and bytes.

    The three prediction arrays come first, then every other array (metadata, ``meta__<k>``) in
    name order, so a file without metadata has the checksum it had before metadata existed.

    Hashed as stored, before any conversion on load, so a value changed in a validly re-zipped
    file is caught (the zip's own CRC is not: NumPy reads a member without reaching its end).

    Parameters
    ----------
    header : str
        The JSON header, as stored.
    arrays : dict of str to ndarray
        ``sample_ids`` (N,), ``y_true`` (N,) or (N, K), ``probs`` (N, C), and any ``meta__<k>`` (N,).

    Returns
    -------
    str
    """
    h = hashlib.sha256(header.encode("utf-8"))
    for name in (*ARRAYS, *sorted(set(arrays) - set(ARRAYS))):
        a = np.ascontiguousarray(arrays[name])
        # dtype and shape too: the same bytes read as another dtype or shape are other predictions
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a)
    return f"sha256:{h.hexdigest()}"


def probabilities_from_logits(logits: np.ndarray, task: str) -> np.ndarray:
    """The one logits → probabilities rule: softmax per row, or a sigmoid per label for multilabel.

    Computed and returned in float64: float32 rounds every probability above 1 - 6e-8 to
    exactly 1.0 (a quarter of a confident ResNet-18's PneumoniaMNIST test images), tying the
    top scores and biasing AUC.

    Parameters
    ----------
    logits : array_like of float, shape (N, C)
    task : {"binary", "multiclass", "multilabel", "ordinal"}

    Returns
    -------
    ndarray of float64, shape (N, C)
    """
    z = np.asarray(logits, dtype=np.float64)
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Predictions:
    """Outputs of one model on one split of one dataset.

    Parameters
    ----------
    model_name : str
        Display name of the model (unique within a report).
    class_names : list of str
        Names of the C classes (or K labels), in column order of ``probs``.
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    sample_ids : ndarray of str, shape (N,)
    y_true : ndarray, shape (N,) int or (N, K) 0/1 for multilabel
    probs : ndarray of float, shape (N, C)
    provenance : dict
        JSON-serialisable: checkpoint sha256, dataset fingerprint, split,
        preprocessing, versions, device, wall time.
    metadata : dict of str to ndarray, optional
        Per-sample columns from the data (``Split.metadata``), each shape (N,): float64 for numeric
        columns (NaN = missing), str for categorical ones ("" = missing). Integer arrays are taken as
        float64. None: the data had none (and every file written before metadata existed).
    patient_column : str, optional
        The metadata column of (hashed) patient ids.
    """

    model_name: str
    class_names: list[str]
    task: str
    sample_ids: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray
    provenance: dict = field(default_factory=dict)
    metadata: dict[str, np.ndarray] | None = None
    patient_column: str | None = None

    def __post_init__(self) -> None:
        self.sample_ids = np.asarray(self.sample_ids).astype(str)
        self.y_true = np.asarray(self.y_true)
        self.probs = np.asarray(self.probs, dtype=np.float64)
        self.class_names = [str(c) for c in self.class_names]
        self.metadata = self._typed_metadata()
        self.validate()
        self.y_true = self.y_true.astype(np.int8 if self.multilabel else np.int64, copy=False)

    # -- derived -----------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.sample_ids.shape[0])

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def y_pred(self) -> np.ndarray:
        """Argmax class (single-label) or ``probs >= 0.5`` per label (multilabel)."""
        if self.multilabel:
            return (self.probs >= 0.5).astype(np.int8)
        return self.probs.argmax(axis=1).astype(np.int64)

    @property
    def correct(self) -> np.ndarray:
        """Boolean (N,): prediction equals truth (all labels, for multilabel)."""
        if self.multilabel:
            return np.all(self.y_pred == self.y_true, axis=1)
        return self.y_pred == self.y_true

    # -- checks ------------------------------------------------------------
    def _typed_metadata(self) -> dict[str, np.ndarray] | None:
        """The metadata as float64 / str arrays (None when there are no columns)."""
        if not self.metadata:
            return None
        out = {}
        for name, values in self.metadata.items():
            a = np.asarray(values)
            if a.dtype.kind in "iuf":
                a = a.astype(np.float64, copy=False)
            elif a.dtype.kind != "U":  # object arrays would need pickle in the file
                raise MedauditError(f"predictions of model '{self.model_name}': metadata column {name!r} holds "
                                    f"{a.dtype} values; give numbers (float64) or text (str)")
            out[str(name)] = a
        return out

    def validate(self) -> None:
        n = self.sample_ids.shape[0]
        c = len(self.class_names)
        where = f"predictions of model '{self.model_name}'"
        if self.task not in TASKS:
            raise MedauditError(f"{where}: unknown task '{self.task}' (expected one of {', '.join(TASKS)})")
        if self.probs.ndim != 2 or self.probs.shape != (n, c):
            raise MedauditError(
                f"{where}: probabilities have shape {self.probs.shape}, expected ({n}, {c}) "
                f"for {n} samples and {c} classes; check that the model head matches the class names"
            )
        expected_y = (n, c) if self.multilabel else (n,)
        if self.y_true.shape != expected_y:
            raise MedauditError(f"{where}: y_true has shape {self.y_true.shape}, expected {expected_y}")
        if len(set(self.sample_ids.tolist())) != n:
            raise MedauditError(f"{where}: sample ids are not unique")
        bad = ~np.isfinite(self.probs).all(axis=1)
        if bad.any():
            ids = ", ".join(self.sample_ids[bad][:10])
            raise MedauditError(f"{where}: non-finite (NaN/inf) outputs for {int(bad.sum())} samples: {ids}")
        if n and not np.all(np.mod(self.y_true, 1) == 0):
            raise MedauditError(f"{where}: y_true holds non-integer labels; expected class indices (0/1 per label "
                                "for multilabel)")
        if n and self.multilabel and not np.isin(self.y_true, (0, 1)).all():
            raise MedauditError(f"{where}: multilabel y_true must be 0/1 per label")
        if n and (self.y_true.min() < 0 or (not self.multilabel and self.y_true.max() >= c)):
            raise MedauditError(f"{where}: labels out of range for {c} classes")
        for name, values in (self.metadata or {}).items():
            if not name or values.shape != (n,):
                raise MedauditError(f"{where}: metadata column {name!r} has shape {values.shape}, expected ({n},)"
                                    if name else f"{where}: a metadata column has no name")
        if self.patient_column is not None and (self.metadata is None or self.patient_column not in self.metadata
                                                or self.metadata[self.patient_column].dtype.kind != "U"):
            raise MedauditError(f"{where}: patient column {self.patient_column!r} is not a text metadata column")

    def subset(self, indices) -> Predictions:
        """The samples at ``indices``, in that order, with their labels, probabilities and metadata.

        Parameters
        ----------
        indices : array_like of int, shape (M,)

        Returns
        -------
        Predictions
            M samples; same model, classes, task and provenance.
        """
        idx = np.asarray(indices, dtype=np.int64)
        return Predictions(model_name=self.model_name, class_names=self.class_names, task=self.task,
                           sample_ids=self.sample_ids[idx], y_true=self.y_true[idx], probs=self.probs[idx],
                           provenance=self.provenance,
                           metadata={k: v[idx] for k, v in self.metadata.items()} if self.metadata else None,
                           patient_column=self.patient_column)

    # -- I/O ---------------------------------------------------------------
    def header(self) -> dict:
        """The JSON header; a ``metadata`` block only when there is metadata (older files stay as they were)."""
        out = {
            "format": FORMAT,
            "model_name": self.model_name,
            "class_names": self.class_names,
            "task": self.task,
            "n_samples": self.n_samples,
            "provenance": self.provenance,
        }
        if self.metadata:
            kinds = {v: k for k, v in META_KINDS.items()}
            out["metadata"] = {
                "columns": [{"name": name, "kind": kinds[values.dtype.kind], "array": f"{META_PREFIX}{k}"}
                            for k, (name, values) in enumerate(self.metadata.items())],
                "patient_column": self.patient_column,
            }
        return out

    def _metadata_arrays(self) -> dict[str, np.ndarray]:
        return {f"{META_PREFIX}{k}": v for k, v in enumerate((self.metadata or {}).values())}

    def save(self, path: str | os.PathLike, *, checksum: bool = False) -> Path:
        """Write atomically to ``path`` (``.npz``).

        Parameters
        ----------
        path : str or PathLike
        checksum : bool
            Also store :func:`arrays_checksum` (``checksum`` member), which :meth:`load` verifies.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps(self.header(), sort_keys=True)
        arrays = {"sample_ids": self.sample_ids, "y_true": self.y_true, "probs": self.probs, **self._metadata_arrays()}
        extra = {"checksum": np.array(arrays_checksum(header, arrays))} if checksum else {}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays, header=np.array(header), **extra)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, require_checksum: bool = False) -> Predictions:
        """Read a predictions file; every way it can be unusable is a one-line error naming it.

        Parameters
        ----------
        path : str or PathLike
            A regular file (FIFOs and devices are refused, not read).
        require_checksum : bool
            Refuse a file without a stored checksum. A stored one is verified either way.

        Returns
        -------
        Predictions

        Raises
        ------
        PredictionsFileError
            Empty, not a zip, truncated or damaged, pickled (object) arrays, missing arrays, a bad
            header, an unsupported format, a checksum mismatch, or arrays that do not make valid
            predictions (see :meth:`validate`).
        MedauditError
            Missing, or not a regular file.
        """
        path = require_regular_file(path)  # a FIFO would block the read forever
        header_text, arrays, stored = _read_npz(path)
        if stored is not None and stored != arrays_checksum(header_text, arrays):
            raise PredictionsFileError(path, "its contents do not match the checksum stored when it was written "
                                             "(altered or damaged since)")
        if stored is None and require_checksum:
            raise ChecksumMissing(path, "holds no checksum (written by an older medaudit)")
        try:
            header = json.loads(header_text)
        except json.JSONDecodeError as exc:
            raise PredictionsFileError(path, f"its header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise PredictionsFileError(path, "its header is not a JSON object")
        if header.get("format") not in READABLE_FORMATS:
            raise PredictionsFileError(
                path, f"predictions format '{header.get('format')}' is not supported (expected {FORMAT})",
                advice="re-run `medaudit predict`")
        missing = [k for k in ("model_name", "class_names", "task") if k not in header]
        if missing or not isinstance(header["class_names"], list) or not isinstance(header.get("provenance", {}),
                                                                                      dict):
            what = f"lacks {', '.join(missing)}" if missing else "has class_names or provenance of the wrong type"
            raise PredictionsFileError(path, f"its header {what}")
        metadata, patient = _metadata_from_header(path, header.get("metadata"), arrays)
        try:
            return cls(
                model_name=header["model_name"],
                class_names=header["class_names"],
                task=header["task"],
                provenance=header.get("provenance", {}),
                metadata=metadata,
                patient_column=patient,
                **arrays,
            )
        except MedauditError as exc:  # the file is at fault: name it
            raise PredictionsFileError(path, str(exc), advice=None) from None
        except (ValueError, TypeError) as exc:  # e.g. text where probabilities belong
            raise PredictionsFileError(path, f"its arrays have the wrong types ({exc})") from None

    def to_csv(self, path: str | os.PathLike) -> Path:
        """One row per sample: ``sample_id, y_true, y_pred, p_<class>...``, then the metadata columns.

        Multilabel: ``y_true_<label>`` and ``y_pred_<label>`` 0/1 columns instead. Metadata columns
        keep their names (``meta_<name>`` where a name is taken by a column before it); numbers are
        written exactly (``45``, ``61.5``), missing values as empty cells, patient ids as their hashes.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.multilabel:
            head = (["sample_id"] + [f"y_true_{c}" for c in self.class_names]
                    + [f"y_pred_{c}" for c in self.class_names] + [f"p_{c}" for c in self.class_names])
            rows = ([sid, *map(int, yt), *map(int, yp), *(f"{v:.6g}" for v in p)]
                    for sid, yt, yp, p in zip(self.sample_ids, self.y_true, self.y_pred, self.probs))
        else:
            names = self.class_names
            head = ["sample_id", "y_true", "y_pred"] + [f"p_{c}" for c in names]
            rows = ([sid, names[int(yt)], names[int(yp)], *(f"{v:.6g}" for v in p)]
                    for sid, yt, yp, p in zip(self.sample_ids, self.y_true, self.y_pred, self.probs))
        meta_cols = []
        for name, values in (self.metadata or {}).items():
            while name in head:
                name = f"meta_{name}"
            head.append(name)
            meta_cols.append([_csv_cell(v) for v in values.tolist()])
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(head)
            for i, row in enumerate(rows):
                w.writerow(row + [col[i] for col in meta_cols])
        return path


def _csv_cell(v: float | str) -> str:
    """A metadata value for the CSV: text as is, a number in its shortest exact form, NaN as empty."""
    if isinstance(v, str):
        return v
    if np.isnan(v):
        return ""
    text = repr(float(v))
    return text.removesuffix(".0")


def _metadata_from_header(path: Path, block: object, arrays: dict[str, np.ndarray]
                          ) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """(metadata columns, patient column) that the header's ``metadata`` block maps to arrays.

    Removes every ``meta__`` member from ``arrays``. A file without the block has none (None, None).
    """
    members = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith(META_PREFIX)]}
    if block is None:
        return None, None
    columns = block.get("columns") if isinstance(block, dict) else None
    if not isinstance(columns, list) or not all(
            isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("name", "kind", "array")) for c in columns):
        raise PredictionsFileError(path, "its header's metadata block is malformed (expected columns with name, "
                                         "kind and array)")
    out: dict[str, np.ndarray] = {}
    for c in columns:
        name, kind, member = c["name"], c["kind"], c["array"]
        if name in out:
            raise PredictionsFileError(path, f"its header lists metadata column {name!r} twice")
        if member not in members or kind not in META_KINDS:
            what = f"kind {kind!r}" if member in members else f"array {member!r}, which the file lacks"
            raise PredictionsFileError(path, f"its header gives metadata column {name!r} {what}")
        if members[member].dtype.kind != META_KINDS[kind]:
            raise PredictionsFileError(path, f"metadata column {name!r} is {kind} in the header but holds "
                                             f"{members[member].dtype} values")
        out[name] = members[member]
    patient = block.get("patient_column")
    if patient is not None and patient not in out:
        raise PredictionsFileError(path, f"its header names patient column {patient!r}, which is not a metadata "
                                         "column")
    return out or None, patient


def _read_npz(path: Path) -> tuple[str, dict[str, np.ndarray], str | None]:
    """(header text, the three arrays and any ``meta__`` ones, stored checksum or None) of a predictions ``.npz``,
    read without pickle."""
    # The file is opened here, not by np.load, so that it is closed also when the zip is refused.
    with open(path, "rb") as fh:
        _check_magic(path, fh.read(6))
        fh.seek(0)
        out = _read_members(path, fh)
    for k in ("header", "checksum"):
        if k in out and (out[k].ndim != 0 or out[k].dtype.kind != "U"):
            raise PredictionsFileError(path, f"its {k} is not a text value (0-d unicode array)")
    checksum = str(out.pop("checksum")) if "checksum" in out else None
    return str(out.pop("header")), out, checksum


def _check_magic(path: Path, magic: bytes) -> None:
    # Sniffed first: np.load treats any other bytes as a pickle and says "pickled data", which
    # would blame a truncated download or a random file on pickling.
    if not magic:
        raise PredictionsFileError(path, "is empty (0 bytes), not a predictions file")
    if magic == _NPY_MAGIC:
        raise PredictionsFileError(path, "is a single .npy array, not a .npz predictions file")
    if magic[:4] not in _ZIP_MAGIC:
        raise PredictionsFileError(path, "is not a valid .npz (zip) file")


def _read_members(path: Path, fh) -> dict[str, np.ndarray]:
    """The predictions members of the open ``.npz`` ``fh`` (arrays, ``header``, ``checksum`` and ``meta__`` ones if
    any)."""
    try:
        f = np.load(fh, allow_pickle=False)
    except zipfile.BadZipFile:
        # A zip whose end (its central directory) is missing: cut short by a crash or a partial copy.
        raise PredictionsFileError(path, "is truncated or damaged: its zip directory cannot be read") from None
    except (EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise PredictionsFileError(path, f"is truncated or damaged ({exc})") from None
    with f:
        missing = [k for k in (*ARRAYS, "header") if k not in f.files]
        if missing:
            raise PredictionsFileError(
                path, f"not a medaudit predictions file: it lacks {', '.join(missing)} (found: "
                      f"{', '.join(f.files) or 'no arrays'})", advice="write it with `medaudit predict`")
        out: dict[str, np.ndarray] = {}
        meta = [k for k in f.files if k.startswith(META_PREFIX)]
        for k in (*ARRAYS, "header", *(("checksum",) if "checksum" in f.files else ()), *meta):
            try:
                out[k] = f[k]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise PredictionsFileError(
                        path, f"holds pickled (object) arrays ('{k}'), which medaudit never loads (unsafe)",
                        advice="save plain arrays (unicode sample_ids, integer y_true, float probs)") from None
                raise PredictionsFileError(path, f"array '{k}' is damaged ({exc})") from None
            # zipfile raises NotImplementedError/RuntimeError for flag or method bytes it cannot honour
            # (a flipped bit reads as "encrypted" or "compression method 99")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
                raise PredictionsFileError(path, f"is damaged: array '{k}' cannot be read ({exc})") from None
            if not isinstance(out[k], np.ndarray):  # a member without .npy comes back as raw bytes
                raise PredictionsFileError(path, f"its member '{k}' is not a NumPy array")
    return out


def check_same_samples(preds: list[Predictions]) -> None:
    """Raise unless every Predictions covers exactly the same sample ids in the same order.

    Order differences are not tolerated silently: callers that need alignment should
    call :func:`align` first.
    """
    if not preds:
        return
    ref = preds[0]
    for p in preds[1:]:
        if p.class_names != ref.class_names:
            raise MedauditError(
                f"models '{ref.model_name}' and '{p.model_name}' have different class names "
                f"({ref.class_names} vs {p.class_names}); they cannot be compared"
            )
        a, b = set(ref.sample_ids.tolist()), set(p.sample_ids.tolist())
        if a != b:
            only_a, only_b = sorted(a - b), sorted(b - a)
            raise MedauditError(
                f"models '{ref.model_name}' and '{p.model_name}' were evaluated on different samples: "
                f"{len(only_a)} only in '{ref.model_name}' (e.g. {only_a[:3]}), "
                f"{len(only_b)} only in '{p.model_name}' (e.g. {only_b[:3]})"
            )


def align(preds: list[Predictions]) -> list[Predictions]:
    """Return the predictions reordered to the first one's sample order (after checking the sets).

    Each keeps its own metadata, reordered with its samples.
    """
    check_same_samples(preds)
    if not preds:
        return preds
    order = {sid: i for i, sid in enumerate(preds[0].sample_ids.tolist())}
    out = [preds[0]]
    for p in preds[1:]:
        out.append(p.subset(np.argsort([order[s] for s in p.sample_ids.tolist()], kind="stable")))
    for p in out[1:]:
        if not np.array_equal(p.y_true, out[0].y_true):
            raise MedauditError(
                f"models '{out[0].model_name}' and '{p.model_name}' disagree on the true labels of the same samples"
            )
    return out
