"""Data sources behind ``--data SPEC``: one interface for image folders, ``.npz``, MedMNIST and CSV.

``SPEC`` is one of:

* a folder: ``root/{train,val,test}/<class>/*`` (also ``Training``/``Testing``) or
  ``root/<class>/*`` (one split ``all``) — :mod:`medaudit.data.folders`;
* a ``.npz`` file in the MedMNIST layout — :mod:`medaudit.data.npz`;
* ``medmnist:NAME`` or ``medmnist:NAME@SIZE`` — :mod:`medaudit.data.medmnist`;
* a ``.csv`` manifest ``path,label[,split]`` — :mod:`medaudit.data.manifest`.

Every loader returns a :class:`Dataset` of :class:`Split` objects. Splits may carry per-sample
``metadata`` (a CSV manifest's other columns); ``Dataset.patient_column`` names the column of
patient ids, which loaders hash as they read them (:mod:`medaudit.phi`).
"""

from __future__ import annotations

from pathlib import Path

from medaudit.data.base import Dataset, Split
from medaudit.data.demo import make_demo_dataset
from medaudit.data.inspect import inspect_dataset
from medaudit.errors import MedauditError
from medaudit.fileio import require_regular_file
from medaudit.tasks import TASKS, check_task

__all__ = ["Dataset", "Split", "TASKS", "load_dataset", "make_demo_dataset", "inspect_dataset"]


def load_dataset(spec: str, *, classes: list[str] | None = None, task: str | None = None,
                 patient_col: str | None = None) -> Dataset:
    """Load the dataset named by ``spec`` (see the module docstring).

    Parameters
    ----------
    spec : str
        Folder, ``.npz`` file, ``.csv`` manifest, or ``medmnist:NAME[@SIZE]``.
    classes : list of str, optional
        Class names in label order (overrides folder names / label maps).
    task : {"binary", "multiclass", "multilabel", "ordinal"}, optional
        Declared task; detected from labels when omitted (``ordinal`` is never detected).
    patient_col : str, optional
        The metadata column of patient ids (case-insensitive), hashed on load; default
        ``patient_id`` when the data has one. Only sources with metadata (CSV manifests) have one.

    Raises
    ------
    MedauditError
        Any bad input: missing path, empty split, unreadable layout, bad labels, a ``patient_col``
        the data does not have (``param="patient_col"``), ...
    """
    if classes is not None:
        classes = [c.strip() for c in classes]
        if not all(classes):
            raise MedauditError(f"an empty class name in {','.join(classes)!r}; give every class a name",
                                param="classes")
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise MedauditError(f"{','.join(classes)}: give at least 2 distinct class names", param="classes")
    if task is not None:
        check_task(task, str(spec), param="task")
    if patient_col is not None and not patient_col.strip():
        raise MedauditError("patient_col is empty; name the column of patient ids", param="patient_col")
    ds = _load(str(spec), classes, task, patient_col)
    if patient_col is not None and (ds.patient_column or "").lower() != patient_col.strip().lower():
        # a source that reads no patient column (folders, .npz, MedMNIST)
        columns = sorted({c for s in ds.splits.values() for c in (s.metadata or {})})
        have = ", ".join(repr(c) for c in columns) if columns else "none"
        raise MedauditError(f"patient_col '{patient_col}': {spec} has no such column (its metadata columns: {have})",
                            param="patient_col")
    return ds


def _load(spec: str, classes: list[str] | None, task: str | None, patient_col: str | None) -> Dataset:
    from medaudit.data import dicom, folders, manifest, medmnist, npz

    if spec.lower().startswith("medmnist:"):
        name, size = medmnist.parse_spec(spec)
        path = medmnist.fetch(name, size)
        return npz.load_npz(path, spec=spec, classes=classes, task=task, known=name)
    if dicom.claims(spec):  # dicom:FOLDER[?options] or a folder holding .dcm files
        return dicom.load_dicom(spec, classes=classes, task=task)
    path = Path(spec).expanduser()
    if not path.exists():
        raise MedauditError(f"{spec}: no such file or folder", param="data")
    if path.is_dir():
        return folders.load_folder(path.absolute(), spec=spec, classes=classes, task=task)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv"):
        require_regular_file(path, param="data")
    if suffix == ".npz":
        return npz.load_npz(path, spec=spec, classes=classes, task=task)
    if suffix == ".csv":
        return manifest.load_manifest(path.absolute(), spec=spec, classes=classes, task=task,
                                      patient_col=patient_col)
    raise MedauditError(
        f"--data {spec}: unsupported file type '{suffix}'; use an image folder, a .npz, a .csv manifest "
        "or medmnist:NAME"
    )
