"""MedMNIST-layout ``.npz`` datasets.

Arrays ``{train,val,test}_images`` (uint8, (N, H, W), (N, H, W, 1) or (N, H, W, 3)) and
``{train,val,test}_labels`` ((N,), (N, 1) or (N, K) 0/1 multi-label). Loaded with
``allow_pickle=False``. Images stay uint8 (a (N, H, W, 1) array is viewed as
(N, H, W), no copy). Sample ids are ``"<split>/<index>"``.

Class names: the ``classes`` override, else the MedMNIST label map when the file stem is
a known dataset (``pneumoniamnist.npz``, ``breastmnist_64.npz``), else ``"0"``..``"C-1"``.
"""

from __future__ import annotations

import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medaudit.data import medmnist
from medaudit.data.base import Dataset, Split, order_splits, resolve_task, warn_missing_classes
from medaudit.errors import MedauditError, MedauditWarning

SPLITS = ("train", "val", "test")


def _check_magic(path: Path) -> None:
    """np.load reads anything that is neither a zip nor a .npy as a pickle and then refuses it as
    "pickled data": random bytes or a truncated download would be blamed on object arrays."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise MedauditError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise MedauditError(f"{path}: is empty (0 bytes); expected an .npz archive with *_images/*_labels")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        raise MedauditError(f"{path}: is not a valid .npz (zip) file; re-save it with np.savez")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    _check_magic(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise MedauditError(f"{path}: a single .npy array, not an .npz archive with *_images/*_labels")
            keys = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" in f.files]
            if not keys:
                raise MedauditError(
                    f"{path}: no arrays named train_images/train_labels, val_..., test_... "
                    f"(found: {', '.join(f.files) or 'none'})"
                )
            return {k: f[k] for k in keys}
    except MedauditError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise MedauditError(
                f"{path}: holds pickled (object) arrays, which medaudit never loads (unsafe); "
                "re-save with plain numeric arrays (np.savez with uint8 images and integer labels)"
            ) from None
        raise MedauditError(f"{path}: cannot read .npz ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # zipfile raises NotImplementedError/RuntimeError for damaged method/flag bytes, zlib.error for
        # a damaged member.
        raise MedauditError(f"{path}: not a readable .npz file ({exc})") from None


def _check_images(path: Path, split: str, images: np.ndarray) -> np.ndarray:
    where = f"{path}: {split}_images"
    if images.dtype != np.uint8:
        raise MedauditError(f"{where} has dtype {images.dtype}; expected uint8 pixel values 0-255")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise MedauditError(
            f"{where} has shape {images.shape}; expected (N, H, W) or (N, H, W, 3) 2D images "
            "(3D volumes and channel-first arrays are not supported)"
        )
    return images


def _check_labels(path: Path, split: str, labels: np.ndarray, n: int) -> np.ndarray:
    where = f"{path}: {split}_labels"
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise MedauditError(f"{where} has shape {labels.shape}; expected ({n},), ({n}, 1) or ({n}, K)")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.equal(np.mod(labels, 1), 0)):
            raise MedauditError(f"{where} has non-integer values (dtype {labels.dtype})")
    if labels.size and labels.min() < 0:
        raise MedauditError(f"{where}: label out of range (negative value {labels.min()})")
    if labels.ndim == 2:
        if labels.size and labels.max() > 1:
            raise MedauditError(f"{where}: multi-label values must be 0/1, found {labels.max()}")
        return labels.astype(np.int8)
    return labels.astype(np.int64)


def load_npz(
    path: Path,
    *,
    spec: str,
    classes: list[str] | None = None,
    task: str | None = None,
    known: str | None = None,
) -> Dataset:
    """Load a MedMNIST-layout ``.npz`` file.

    Parameters
    ----------
    path : Path
    spec : str
        The original ``--data`` value.
    classes : list of str, optional
        Class names in label order (overrides any known label map).
    task : str, optional
        Declared task.
    known : str, optional
        MedMNIST dataset name; default inferred from the file stem.
    """
    arrays = _read_arrays(path)
    known = known or medmnist.known_name_from_stem(path.stem)
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in SPLITS:
        has_img, has_lab = f"{s}_images" in arrays, f"{s}_labels" in arrays
        if has_img != has_lab:
            missing = f"{s}_labels" if has_img else f"{s}_images"
            raise MedauditError(f"{path}: has {s}_{'images' if has_img else 'labels'} but no {missing}")
        if has_img:
            images = _check_images(path, s, arrays[f"{s}_images"])
            if len(images) == 0:
                raise MedauditError(f"{path}: split '{s}' is empty (0 images); remove its arrays or add images")
            raw[s] = (images, _check_labels(path, s, arrays[f"{s}_labels"], len(images)))

    multilabel = {lab.ndim for _, lab in raw.values()}
    if len(multilabel) > 1:
        raise MedauditError(f"{path}: some splits have single-label and others multi-label labels")
    if multilabel == {2}:
        widths = {lab.shape[1] for _, lab in raw.values()}
        if len(widths) > 1:
            raise MedauditError(f"{path}: splits disagree on the number of labels ({sorted(widths)})")
        n_found = widths.pop()
    else:
        n_found = max(int(lab.max()) for _, lab in raw.values()) + 1

    if classes is not None:
        class_names = list(classes)
    elif known is not None:
        class_names = medmnist.class_names(known)
    else:
        class_names = [str(k) for k in range(n_found)]
    if n_found > len(class_names) or (multilabel == {2} and n_found != len(class_names)):
        raise MedauditError(
            f"{path}: label out of range: labels need {n_found} classes but {len(class_names)} class names are known "
            f"({', '.join(class_names)}); pass matching --classes"
        )

    splits = order_splits(
        {
            s: Split(name=s, sample_ids=[f"{s}/{i}" for i in range(len(img))], labels=lab,
                     class_names=class_names, array=img)
            for s, (img, lab) in raw.items()
        }
    )  # fmt: skip
    default_task = medmnist.task_of(known) if known and classes is None else None
    resolved = resolve_task(task, [s.labels for s in splits.values()], len(class_names), default_task, str(path))
    if known is not None and set(splits) == set(SPLITS):
        got = tuple(len(splits[s]) for s in SPLITS)
        if got != medmnist.N_SAMPLES[known]:
            warnings.warn(
                f"{path}: split sizes {got} differ from the official {known} sizes {medmnist.N_SAMPLES[known]}",
                MedauditWarning,
                stacklevel=3,
            )
    warn_missing_classes(splits)
    return Dataset(spec=spec, class_names=class_names, task=resolved, splits=splits)
