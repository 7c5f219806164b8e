"""Image-folder datasets.

Two layouts are accepted::

    root/train/<class>/*.png   root/val/<class>/...   root/test/<class>/...
    root/<class>/*.png                                  (one split called "all")

Split folder names are case-insensitive and may use the Kaggle spelling
(``Training``/``Testing``, ``validation``). Images may sit in nested folders inside a
class folder (e.g. per patient). Hidden files/folders are ignored; other non-image files
are ignored with a warning. The class list is the sorted union over splits (or the
``classes`` override, whose order sets the label indices).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from medaudit.data.base import Dataset, Split, normalise_split_name, order_splits, resolve_task, warn_missing_classes
from medaudit.data.images import is_image_file
from medaudit.errors import MedauditError, MedauditWarning


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _refuse_escape(path: Path, root: Path) -> None:
    """A symlink resolving outside the dataset folder is refused, as in CSV manifests: a dataset must
    not read arbitrary files. Only a symlink can escape (``rglob`` does not descend into linked
    folders), so plain files cost one ``lstat``."""
    if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        raise MedauditError(
            f"{path}: a symlink pointing outside the data folder {root} ({path.resolve()}); copy the image(s) "
            "into the folder instead"
        )


#: Which files a folder dataset holds: a test, their name, their extensions (messages only).
IMAGES = (is_image_file, "image", ".png/.jpg/...")


def _scan_class_dirs(split_dir: Path, root: Path, kind=IMAGES) -> dict[str, list[tuple[Path, str]]]:
    """class name -> (file, sample id) of each file of ``kind`` under ``split_dir/<class>/`` (recursive),
    sorted by id; the id is the file's posix path relative to ``root``."""
    accept, noun, exts = kind
    class_dirs = _visible_dirs(split_dir)
    if not class_dirs:
        raise MedauditError(f"{split_dir}: no class sub-folders found; expected one folder per class holding images")
    stray = [p for p in split_dir.iterdir() if p.is_file() and accept(p)]
    if stray:
        warnings.warn(
            f"{split_dir}: {len(stray)} {noun}(s) directly in the split folder have no class folder and are ignored",
            MedauditWarning,
            stacklevel=4,
        )
    out: dict[str, list[tuple[Path, str]]] = {}
    for cdir in class_dirs:
        _refuse_escape(cdir, root)
        files, other = [], 0
        prefix = cdir.relative_to(root).as_posix() + "/"
        for rel, path in sorted(_visible_files(str(cdir), "", root)):
            p = Path(path)
            if accept(p):
                files.append((p, prefix + rel))
            else:
                other += 1
        if not files:
            raise MedauditError(f"{cdir}: class folder holds no {noun}s ({exts}); add {noun}s or remove it")
        if other:
            warnings.warn(f"{cdir}: ignored {other} non-{noun} file(s)", MedauditWarning, stacklevel=4)
        out[cdir.name] = files
    return out


def _visible_files(folder: str, rel: str, root: Path) -> Iterator[tuple[str, str]]:
    """(path relative to the walk's start, path) of every regular file (or link to one) under ``folder``,
    hidden files and folders skipped; ``rel`` is ``folder``'s own relative path (``""`` at the start).

    ``os.scandir`` entries know their type from the directory listing, so a plain file costs no
    ``stat`` (pathlib's ``rglob`` + ``is_file`` + ``relative_to`` took 4 s for 50k files); a link is
    checked by :func:`_refuse_escape`. Linked folders are not descended into (as ``rglob``).
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _visible_files(entry.path, rel + entry.name + "/", root)
            elif entry.is_file():  # follows a link: a link to a file counts, a dangling one does not
                if entry.is_symlink():
                    _refuse_escape(Path(entry.path), root)
                yield rel + entry.name, entry.path


def _detect_layout(root: Path) -> dict[str, Path]:
    """Split name -> folder; ``{"all": root}`` for a single folder of class folders."""
    subdirs = _visible_dirs(root)
    if not subdirs:
        raise MedauditError(f"{root}: no sub-folders; expected split folders (train/val/test) or class folders")
    named = {p: normalise_split_name(p.name) for p in subdirs}
    split_dirs = {p: s for p, s in named.items() if s is not None}
    if not split_dirs:
        return {"all": root}
    others = [p.name for p, s in named.items() if s is None]
    if others:
        raise MedauditError(
            f"{root}: mixes split folders ({', '.join(p.name for p in split_dirs)}) with other folders "
            f"({', '.join(others)}); put class folders inside train/val/test or remove the extras"
        )
    out: dict[str, Path] = {}
    for p, s in split_dirs.items():
        if s in out:
            raise MedauditError(f"{root}: folders '{out[s].name}' and '{p.name}' both name the split '{s}'; keep one")
        out[s] = p
    return out


def load_folder(root: Path, *, spec: str, classes: list[str] | None = None, task: str | None = None,
                kind=IMAGES, make_split: Callable[..., Split] = Split) -> Dataset:
    """Load an image-folder dataset (see the module docstring for the layouts).

    Parameters
    ----------
    root : Path
        Existing directory.
    spec : str
        The original ``--data`` value (kept on the Dataset).
    classes : list of str, optional
        Class names in label order; must include every class folder.
    task : str, optional
        Declared task (``ordinal`` is only ever declared).
    kind : (callable, str, str)
        Which files are samples (:data:`IMAGES`; the DICOM loader passes its own).
    make_split : callable
        Builds each split from the :class:`Split` keyword arguments (the DICOM loader's reads tags).
    """
    layout = _detect_layout(root)
    per_split = {name: _scan_class_dirs(path, root, kind) for name, path in layout.items()}
    found = sorted(set().union(*per_split.values()))
    if classes is not None:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise MedauditError(
                f"{root}: class folder(s) {', '.join(unknown)} are not in --classes ({', '.join(classes)})"
            )
        class_names = list(classes)
    else:
        class_names = found
    index = {c: k for k, c in enumerate(class_names)}

    splits: dict[str, Split] = {}
    for name, by_class in per_split.items():
        paths = [p for c in sorted(by_class) for p, _ in by_class[c]]
        labels = np.array([index[c] for c in sorted(by_class) for _ in by_class[c]], dtype=np.int64)
        ids = [i for c in sorted(by_class) for _, i in by_class[c]]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        splits[name] = make_split(
            name=name,
            sample_ids=[ids[i] for i in order],
            labels=labels[order],
            class_names=class_names,
            paths=[paths[i] for i in order],
        )
    splits = order_splits(splits)
    resolved = resolve_task(task, [s.labels for s in splits.values()], len(class_names), None, str(root))
    warn_missing_classes(splits)
    return Dataset(spec=spec, class_names=class_names, task=resolved, splits=splits)
