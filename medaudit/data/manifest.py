"""CSV manifests: columns ``path,label[,split]`` (header required, names case-insensitive).

* ``path`` is relative to the CSV's folder; absolute paths, ``..`` escapes and symlinks
  resolving outside that folder are refused (a manifest must not read arbitrary files).
* ``label`` is a class name. With ``classes`` it may also be an integer index into them.
  Without ``classes``, the class list is the sorted set of labels, numerically sorted when
  every label is an integer (``"2"`` before ``"10"``).
* ``split`` (optional) uses the same aliases as folders (``Training`` → ``train``);
  without it every row belongs to the split ``all``. Sample ids are the normalised paths.

Every other column is **metadata**, kept with the samples through to the predictions file
(``Split.metadata``), under its name as written (names are unique case-insensitively):

* a column whose every value present parses as a finite float is numeric (float64, NaN =
  missing), any other is categorical (str, "" = missing); empty, ``NA``, ``N/A``, ``NaN`` and
  ``null`` are missing (:func:`medaudit.metadata.parse_column`);
* the **patient column** (``patient_col``, default ``patient_id`` when there is one) is hashed as
  soon as it is read (:func:`medaudit.phi.hash_identifiers`): raw patient ids never leave this
  module. A patient may have images in several classes or in one; images of one patient in two
  splits are leakage, which the audit reports (this loader only carries the ids);
* any other column that identifies a person (``name``, ``patient_name``, ``birth_date``, ``dob``,
  ``mrn``, ``ssn``, ``address``, ``phone``, ``email``, a second patient id, ...:
  :data:`medaudit.metadata.IDENTIFIER_NAMES`) is **refused** with an error, not dropped: a
  manifest that holds names or birth dates should not be passed around, so the fix belongs in the
  file. To use such a column as the patient id, name it as the patient column;
* a column without a name is ignored when it is empty throughout (a trailing comma), else refused.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np

from medaudit.data.base import Dataset, Split, normalise_split_name, order_splits, resolve_task, warn_missing_classes
from medaudit.errors import MedauditError
from medaudit.metadata import is_identifier_name, parse_column, resolve_column
from medaudit.phi import hash_identifiers, load_salt

RESERVED = ("path", "label", "split")
DEFAULT_PATIENT_COLUMN = "patient_id"


def row_label_and_split(row: list[str], col: dict[str, int], where: str) -> tuple[str, str]:
    """A manifest row's label and normalised split ("all" without a split column); one-line errors.

    Shared by the CSV manifests and the DICOM label CSVs, which follow the same rules.
    """
    label = row[col["label"]].strip()
    if not label:
        raise MedauditError(f"{where}: empty label")
    split = "all"
    if "split" in col:
        split = normalise_split_name(row[col["split"]]) or ""
        if not split:
            raise MedauditError(f"{where}: split '{row[col['split']]}' is not train/val/test")
    return label, split


def _safe_relative(root: Path, raw: str, where: str) -> tuple[str, Path]:
    """(normalised posix id, absolute path) for a manifest path, refusing escapes."""
    text = raw.strip().replace("\\", "/")
    if not text:
        raise MedauditError(f"{where}: empty path")
    rel = PurePosixPath(text)
    if rel.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise MedauditError(f"{where}: absolute path '{raw}' not allowed; use a path relative to the CSV's folder")
    if ".." in rel.parts:
        raise MedauditError(f"{where}: path '{raw}' uses '..'; keep images inside the CSV's folder")
    full = root / Path(*rel.parts)
    if not full.resolve().is_relative_to(root.resolve()):
        raise MedauditError(f"{where}: '{raw}' is a symlink pointing outside the CSV's folder; copy the image instead")
    if not full.is_file():
        raise MedauditError(f"{where}: image '{raw}' not found (looked for {full})")
    return PurePosixPath(*[p for p in rel.parts if p != "."]).as_posix(), full


def _class_names(labels: list[str], classes: list[str] | None, csv_path: Path) -> tuple[list[str], dict[str, int]]:
    if classes is not None:
        index = {c: k for k, c in enumerate(classes)}
        for k in range(len(classes)):
            index.setdefault(str(k), k)  # integer labels index into --classes
        return list(classes), index
    distinct = set(labels)
    if all(x.lstrip("-").isdigit() for x in distinct):
        names = [str(v) for v in sorted({int(x) for x in distinct})]
        if int(names[0]) < 0:
            raise MedauditError(f"{csv_path}: label out of range (negative label {names[0]})")
        return names, {x: names.index(str(int(x))) for x in distinct}
    names = sorted(distinct)
    return names, {c: k for k, c in enumerate(names)}


def _columns(header: list[str], rows: list[tuple[int, list[str]]], path: Path,
             patient_col: str | None) -> tuple[dict[str, int], dict[str, int], str | None]:
    """(``path``/``label``/``split`` → index, metadata name → index, patient column or None), all checked."""
    lower = [h.lower() for h in header]
    for name in dict.fromkeys(n for n in lower if n):
        if lower.count(name) > 1:
            raise MedauditError(f"{path}: column '{name}' appears {lower.count(name)} times in the header; "
                                "give every column its own name")
    if "path" not in lower or "label" not in lower:
        raise MedauditError(f"{path}: header must name columns 'path' and 'label' (optional 'split'); found {header}")
    for i, name in enumerate(header):
        if not name and any(i < len(r) and r[i].strip() for _, r in rows):
            raise MedauditError(f"{path}: column {i + 1} has values but no name in the header; name it or remove it")
    col = {name: lower.index(name) for name in RESERVED if name in lower}
    meta = {name: i for i, name in enumerate(header) if name and lower[i] not in RESERVED}
    if patient_col is None:
        patient = next((n for n in meta if n.lower() == DEFAULT_PATIENT_COLUMN), None)
    elif patient_col.strip().lower() in RESERVED:
        raise MedauditError(f"patient_col '{patient_col}': that is the manifest's {patient_col.strip().lower()} "
                            "column, not a patient id", param="patient_col")
    else:
        patient = resolve_column(meta, patient_col, param="patient_col", where=str(path))
    for name in meta:
        if name != patient and is_identifier_name(name):
            raise MedauditError(f"{path}: remove column '{name}' from the manifest; medaudit never reads names, birth "
                                "dates or other identifiers (a patient id column is read as the patient column, "
                                "hashed: name it with patient_col)")
    return col, meta, patient


def load_manifest(path: Path, *, spec: str, classes: list[str] | None = None, task: str | None = None,
                  patient_col: str | None = None) -> Dataset:
    """Load a CSV manifest (see the module docstring).

    Parameters
    ----------
    path : Path
        The ``.csv`` file.
    spec : str
        The original ``--data`` value.
    classes : list of str, optional
        Class names in label order; labels must be among them (or integer indices).
    task : str, optional
        Declared task.
    patient_col : str, optional
        The column of patient ids (case-insensitive); default ``patient_id`` when the manifest has
        one. Its values are hashed on load.

    Returns
    -------
    Dataset
        Splits carry ``metadata`` (one array of length N per column, None without metadata columns),
        ``patient_column`` names the hashed column.

    Raises
    ------
    MedauditError
        Bad header (duplicate, unnamed or identifying columns; ``patient_col`` not a column, with
        ``param="patient_col"``), bad rows, paths or labels.
    """
    root = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [(n, r) for n, r in enumerate(reader, start=2) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedauditError(f"{path}: cannot read CSV manifest ({exc})") from None
    col, meta, patient = _columns(header, rows, path, patient_col)
    width = 1 + max(i for i, name in enumerate(header) if name)  # unnamed empty columns may be absent

    entries: list[tuple[str, str, Path, str]] = []  # split, id, file, label
    raw_meta: dict[str, list[str]] = {name: [] for name in meta}
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) < width:
            raise MedauditError(f"{where}: expected {width} columns, found {len(row)}")
        label, split = row_label_and_split(row, col, where)
        sid, full = _safe_relative(root, row[col["path"]], where)
        entries.append((split, sid, full, label))
        for name, i in meta.items():
            raw_meta[name].append(row[i])
    if not entries:
        raise MedauditError(f"{path}: manifest has no rows")
    # Typed over the whole file, so that a column has one kind in every split; the patient ids are
    # replaced by their hashes here, and the raw ones go out of scope with raw_meta.
    columns = {name: hash_identifiers(values, load_salt()) if name == patient else parse_column(values)
               for name, values in raw_meta.items()}
    del raw_meta

    class_names, index = _class_names([e[3] for e in entries], classes, path)
    for _split, sid, _, label in entries:
        if label not in index:
            raise MedauditError(
                f"{path}: label out of range: '{label}' (sample {sid}) is not one of {', '.join(class_names)}"
            )
    splits: dict[str, Split] = {}
    for name in dict.fromkeys(e[0] for e in entries):
        idx = np.array(sorted((k for k, e in enumerate(entries) if e[0] == name), key=lambda k: entries[k][1]),
                       dtype=np.int64)
        splits[name] = Split(
            name=name,
            sample_ids=[entries[k][1] for k in idx],
            labels=np.array([index[entries[k][3]] for k in idx], dtype=np.int64),
            class_names=class_names,
            paths=[entries[k][2] for k in idx],
            metadata={c: v[idx] for c, v in columns.items()} if columns else None,
        )
    splits = order_splits(splits)
    resolved = resolve_task(task, [s.labels for s in splits.values()], len(class_names), None, str(path))
    warn_missing_classes(splits)
    return Dataset(spec=spec, class_names=class_names, task=resolved, splits=splits, patient_column=patient)
