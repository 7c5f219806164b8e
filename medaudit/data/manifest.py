"""CSV manifests: columns ``path,label[,split]`` (header required, names case-insensitive).

* ``path`` is relative to the CSV's folder; absolute paths, ``..`` escapes and symlinks
  resolving outside that folder are refused (a manifest must not read arbitrary files).
* ``label`` is a class name. With ``classes`` it may also be an integer index into them.
  Without ``classes``, the class list is the sorted set of labels, numerically sorted when
  every label is an integer (``"2"`` before ``"10"``).
* ``split`` (optional) uses the same aliases as folders (``Training`` → ``train``);
  without it every row belongs to the split ``all``. Sample ids are the normalised paths.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import numpy as np

from medaudit.data.base import Dataset, Split, normalise_split_name, order_splits, resolve_task, warn_missing_classes
from medaudit.errors import MedauditError


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


def load_manifest(path: Path, *, spec: str, classes: list[str] | None = None, task: str | None = None) -> Dataset:
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
    """
    root = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = [(n, r) for n, r in enumerate(reader, start=2) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedauditError(f"{path}: cannot read CSV manifest ({exc})") from None
    if "path" not in header or "label" not in header:
        raise MedauditError(f"{path}: header must name columns 'path' and 'label' (optional 'split'); found {header}")
    col = {name: header.index(name) for name in ("path", "label", "split") if name in header}

    entries: list[tuple[str, str, Path, str]] = []  # split, id, file, label
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) < len(header):
            raise MedauditError(f"{where}: expected {len(header)} columns, found {len(row)}")
        label = row[col["label"]].strip()
        if not label:
            raise MedauditError(f"{where}: empty label")
        split = "all"
        if "split" in col:
            split = normalise_split_name(row[col["split"]]) or ""
            if not split:
                raise MedauditError(f"{where}: split '{row[col['split']]}' is not train/val/test")
        sid, full = _safe_relative(root, row[col["path"]], where)
        entries.append((split, sid, full, label))
    if not entries:
        raise MedauditError(f"{path}: manifest has no rows")

    class_names, index = _class_names([e[3] for e in entries], classes, path)
    for _split, sid, _, label in entries:
        if label not in index:
            raise MedauditError(
                f"{path}: label out of range: '{label}' (sample {sid}) is not one of {', '.join(class_names)}"
            )
    splits: dict[str, Split] = {}
    for name in dict.fromkeys(e[0] for e in entries):
        rows_s = sorted((e for e in entries if e[0] == name), key=lambda e: e[1])
        splits[name] = Split(
            name=name,
            sample_ids=[e[1] for e in rows_s],
            labels=np.array([index[e[3]] for e in rows_s], dtype=np.int64),
            class_names=class_names,
            paths=[e[2] for e in rows_s],
        )
    splits = order_splits(splits)
    resolved = resolve_task(task, [s.labels for s in splits.values()], len(class_names), None, str(path))
    warn_missing_classes(splits)
    return Dataset(spec=spec, class_names=class_names, task=resolved, splits=splits)
