"""DICOM datasets: a folder of ``.dcm`` files, labelled by class folders or by a CSV.

``--data`` forms::

    FOLDER                                   a folder holding .dcm files (found anywhere under it)
    dicom:FOLDER[?window=C,W][&frame=K][&labels=CSV]

Labels come from class folders, with the same layouts and rules as image folders
(:mod:`medaudit.data.folders`: ``train/val/test/<class>/`` or ``<class>/``), or from ``labels=CSV``
(relative to ``FOLDER`` or absolute): a header naming ``label`` and one key, ``path`` (relative to
``FOLDER``) or ``sop_instance_uid`` (``SOPInstanceUID`` also accepted), and an optional ``split``.
Every ``.dcm`` file under ``FOLDER`` must then be listed, and every row must match one file.

Pixels follow PS3.3 C.11 and are turned into the 8-bit images the rest of medaudit reads:

1. Modality LUT (C.11.1): ``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence
   (pydicom's ``apply_modality_lut``). ``BitsStored`` and ``PixelRepresentation`` are applied by
   pydicom's decoder (bits above ``HighBit`` are masked, signed values sign-extended).
2. VOI (C.11.2), the first that applies: the ``window=C,W`` option; the first VOI LUT Sequence item
   (scaled from its descriptor's bit depth to 0-255); the first ``WindowCenter``/``WindowWidth``
   value with ``VOILUTFunction`` (``LINEAR``, the default, by the C.11.2.1.2.1 formula;
   ``LINEAR_EXACT``; ``SIGMOID``); else each image's own min-max, as for 16-bit PNGs
   (:mod:`medaudit.data.images`).
3. ``MONOCHROME1`` is inverted after the VOI (its minimum is white).
4. Colour (``RGB``, ``YBR_FULL``/``YBR_FULL_422`` converted to RGB by pydicom) is kept as RGB, rescaled
   from ``BitsStored`` to 8 bits; windows do not apply to colour. ``PALETTE COLOR`` is refused.

Multi-frame files are refused unless ``frame=K`` (0-based) is chosen. Compressed transfer syntaxes
decode when pydicom has a decoder for them (RLE natively, JPEG baseline / JPEG 2000 through Pillow);
others are refused with the syntax's name. The recipe of each image (photometric, bits, VOI source) is
its "original mode", counted by ``medaudit data inspect``; the pixels it gives enter the content
hashes, so a different window is different data to the predictions cache.

Metadata (``Split.metadata``) comes from these tags only; no other tag is read, so patient names and
birth dates never enter medaudit:

============== ===================== ========================================
column         tag                   type
============== ===================== ========================================
patient_id     PatientID             salted hash (:mod:`medaudit.phi`)
sex            PatientSex            categorical
age            PatientAge            numeric, years ("065Y" -> 65, "006M" -> 0.5)
manufacturer   Manufacturer          categorical
model          ManufacturerModelName categorical
institution    InstitutionName       categorical
body_part      BodyPartExamined      categorical
view           ViewPosition          categorical
study_year     StudyDate             numeric (its year)
============== ===================== ========================================

A missing or empty tag is unknown ("" or NaN); an unreadable age or date is unknown too, with one
warning per split.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder, pixel_array

from medaudit.data import folders, manifest
from medaudit.data.base import Dataset, Split, order_splits, resolve_task, warn_missing_classes
from medaudit.data.images import MAX_PIXELS, is_image_file
from medaudit.errors import MedauditError, MedauditWarning
from medaudit.phi import hash_identifiers, load_salt

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
SPEC_PREFIX = "dicom:"
PATIENT_COLUMN = "patient_id"

#: metadata column -> the DICOM keyword it is read from (the only patient/study tags medaudit reads).
METADATA_TAGS = {
    "patient_id": "PatientID",
    "sex": "PatientSex",
    "age": "PatientAge",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "institution": "InstitutionName",
    "body_part": "BodyPartExamined",
    "view": "ViewPosition",
    "study_year": "StudyDate",
}
_NUMERIC = {"age", "study_year"}
# SpecificCharacterSet decodes the text tags; SOPInstanceUID keys CSV labels.
_HEADER_TAGS = ["SpecificCharacterSet", "SOPInstanceUID", *METADATA_TAGS.values()]
_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What decoding reads: the image pixel module, the modality and VOI LUT modules and the pixel data.
_PIXEL_TAGS = [
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope",
    "RescaleType", "ModalityLUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", *_PIXEL_DATA,
]
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_OPTIONS = ("window", "frame", "labels")


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` has a DICOM extension (``.dcm``, ``.dicom``) and is not hidden."""
    return path.suffix.lower() in DICOM_EXTENSIONS and not path.name.startswith(".")


DICOM_FILES = (is_dicom_file, "DICOM file", ".dcm")


def _visible_names(root: Path):
    """(folder, file name) strings of every file under ``root``, hidden files and folders skipped, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield dirpath, f


def _visible_files(root: Path):
    for dirpath, f in _visible_names(root):
        yield Path(dirpath) / f


def claims(spec: str) -> bool:
    """Whether ``--data spec`` is DICOM: a ``dicom:`` spec, or a folder holding at least one ``.dcm`` file."""
    if spec.lower().startswith(SPEC_PREFIX):
        return True
    path = Path(spec).expanduser()
    # Names, not Path objects: every --data folder is asked this first (50k files: 0.5 s of pathlib).
    return path.is_dir() and any(os.path.splitext(f)[1].lower() in DICOM_EXTENSIONS for _, f in _visible_names(path))


# -- options ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DicomOptions:
    """How pixels are turned into images (see the module docstring).

    Attributes
    ----------
    window : (float, float), optional
        ``(center, width)`` of a linear window overriding the files' VOI; width >= 1.
    frame : int, optional
        0-based frame of multi-frame files (they are refused without one); single-frame files give their one.
    """

    window: tuple[float, float] | None = None
    frame: int | None = None

    def recipe(self) -> dict:
        """The pixel recipe as plain data (for records and messages)."""
        return {
            "modality_lut": "RescaleSlope/RescaleIntercept or Modality LUT Sequence (PS3.3 C.11.1)",
            "voi": (f"window center {self.window[0]:g}, width {self.window[1]:g} (linear, PS3.3 C.11.2.1.2.1)"
                    if self.window else "VOI LUT Sequence, else WindowCenter/WindowWidth with VOILUTFunction, "
                                        "else each image's min-max"),
            "monochrome1": "inverted after the VOI",
            "frame": self.frame,
            "output": "8-bit L (RGB for colour)",
        }


def parse_spec(spec: str) -> tuple[Path, DicomOptions, Path | None]:
    """``(folder, options, labels CSV or None)`` of a DICOM ``--data`` spec.

    Raises
    ------
    MedauditError
        An unknown option, a malformed value, or a missing folder / CSV (``param="data"``).
    """
    text = spec[len(SPEC_PREFIX):] if spec.lower().startswith(SPEC_PREFIX) else spec
    folder, _, query = text.partition("?")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise MedauditError(f"{spec}: {folder or '(empty)'} is not a folder of DICOM files", param="data")
    values: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if key not in _OPTIONS or not eq:
            raise MedauditError(f"{spec}: unknown DICOM option {part!r}; use {', '.join(k + '=' for k in _OPTIONS)}",
                                param="data")
        values[key] = value.strip()
    window = frame = labels = None
    if "window" in values:
        try:
            c, w = (float(v) for v in values["window"].split(","))
        except ValueError:
            raise MedauditError(f"{spec}: window={values['window']!r}; give the center and width, e.g. window=40,400",
                                param="data") from None
        if not (np.isfinite(c) and np.isfinite(w) and w >= 1):
            raise MedauditError(f"{spec}: window width {w:g} must be a finite number >= 1 (PS3.3 C.11.2.1.2)",
                                param="data")
        window = (c, w)
    if "frame" in values:
        if not values["frame"].isdigit():
            raise MedauditError(f"{spec}: frame={values['frame']!r}; give a 0-based frame number", param="data")
        frame = int(values["frame"])
    if "labels" in values:
        labels = Path(values["labels"]).expanduser()
        labels = labels if labels.is_absolute() else root / labels
        if not labels.is_file():
            raise MedauditError(f"{spec}: labels file {labels} not found", param="data")
    return root.absolute(), DicomOptions(window=window, frame=frame), labels


# -- pixels ----------------------------------------------------------------------------------------------------------
def window_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear window onto 0-255.

    Parameters
    ----------
    x : ndarray, any shape
        Modality-LUT output.
    center, width : float
        Window; ``width >= 1``.

    Returns
    -------
    ndarray of float64, shape of ``x``, in [0, 255]
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    if width == 1:  # a threshold: the formula's ramp has zero length
        return np.where(x <= lo, 0.0, 255.0)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))


def _window_exact(x: np.ndarray, center: float, width: float) -> np.ndarray:
    # PS3.3 C.11.2.1.3.2 LINEAR_EXACT
    return np.clip((x - center) / width * 255.0, 0.0, 255.0)


def _window_sigmoid(x: np.ndarray, center: float, width: float) -> np.ndarray:
    # PS3.3 C.11.2.1.3.1 SIGMOID
    return 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))


_WINDOW_FUNCTIONS = {"LINEAR": window_linear, "LINEAR_EXACT": _window_exact, "SIGMOID": _window_sigmoid}


def _first(value) -> float:
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _to_u8(y: np.ndarray) -> np.ndarray:
    return np.rint(y).astype(np.uint8)


def _gray(arr: np.ndarray, ds: pydicom.Dataset, options: DicomOptions, name: str) -> tuple[np.ndarray, str]:
    """Modality LUT, VOI and MONOCHROME1 inversion: (uint8 array, where the VOI came from).

    Integer pixels (all but float pixel data) go through a table over the stored range: the same
    element-wise functions applied to each distinct value once, then indexed (8x faster at 512 px).
    """
    if arr.dtype.kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < 1 << 17:
            idx = arr - lo if arr.dtype.kind == "u" else arr.astype(np.int64) - lo
            values = np.arange(lo, hi + 1).astype(arr.dtype)
            def present() -> np.ndarray:  # the values min-max looks at (only that branch pays the count)
                return np.bincount(idx.ravel(), minlength=len(values)) > 0

            table, source = _gray_values(values, ds, options, name, present)
            return table[idx], source
    return _gray_values(arr, ds, options, name, None)


def _gray_values(arr: np.ndarray, ds: pydicom.Dataset, options: DicomOptions, name: str,
                 present: Callable[[], np.ndarray] | None) -> tuple[np.ndarray, str]:
    x = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if not np.isfinite(x).all():
        raise MedauditError(f"{name}: pixel values are NaN or infinite after the modality LUT")
    if options.window is not None:
        y, source = window_linear(x, *options.window), "window option"
    elif ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        # the LUT is indexed by the (integral) modality output
        y = apply_voi(np.rint(x).astype(np.int64), ds, index=0).astype(np.float64) * (255.0 / (2**bits - 1))
        source = "VOI LUT"
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if function not in _WINDOW_FUNCTIONS:
            raise MedauditError(f"{name}: VOILUTFunction {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID; "
                                "choose a window with dicom:FOLDER?window=C,W")
        if not (np.isfinite(center) and np.isfinite(width)) or width < (1 if function == "LINEAR" else 1e-12):
            raise MedauditError(f"{name}: WindowWidth {width:g} is not a valid width (PS3.3 C.11.2.1.2); choose a "
                                "window with dicom:FOLDER?window=C,W")
        y, source = _WINDOW_FUNCTIONS[function](x, center, width), "WindowCenter/Width"
    else:
        shown = x if present is None else x[present()]
        lo, hi = float(shown.min()), float(shown.max())
        y = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)  # as 16-bit PNGs (data.images)
        source = "min-max"
    out = _to_u8(y)
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        out = 255 - out
    return out, source


def _read_pixels(path: Path, name: str) -> pydicom.Dataset:
    """The file meta, :data:`_PIXEL_TAGS` and the pixel data only (no patient or study tag is parsed)."""
    try:
        ds = pydicom.dcmread(path, specific_tags=_PIXEL_TAGS)
    except FileNotFoundError:
        raise MedauditError(f"{name}: DICOM file not found") from None
    except InvalidDicomError:
        raise MedauditError(f"{name}: not a DICOM file (no DICM header); fix or remove the file") from None
    except Exception as exc:  # pydicom raises many types on damaged files; each is one bad file
        raise MedauditError(f"{name}: cannot read DICOM file ({type(exc).__name__}: {exc})") from None
    return ds


def decode_dicom(path: str | os.PathLike, options: DicomOptions | None = None, *, display: str | None = None,
                 max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str]:
    """Decode one DICOM file into the image medaudit audits (see the module docstring for the recipe).

    Parameters
    ----------
    path : path-like
    options : DicomOptions, optional
        Window and frame choices (default: the file's own VOI, single-frame only).
    display : str, optional
        Name used in error messages (default: ``path``).
    max_pixels : int
        Refuse frames with more pixels than this (as :func:`medaudit.data.images.decode_image`).

    Returns
    -------
    image : PIL.Image.Image
        Mode ``"L"`` (monochrome), shape (rows, columns), or ``"RGB"`` (colour).
    recipe : str
        What was done, e.g. ``"DICOM MONOCHROME1 12-bit, WindowCenter/Width"``.

    Raises
    ------
    MedauditError
        Not DICOM, no pixel data, unsupported transfer syntax or photometric interpretation, a
        multi-frame file without a frame, or pixel data that does not decode; the message names the file.
    """
    options = options or DicomOptions()
    name = display or str(path)
    ds = _read_pixels(Path(path), name)
    if not any(k in ds for k in _PIXEL_DATA):
        raise MedauditError(f"{name}: DICOM file holds no pixel data (a report, presentation state or other "
                            "non-image object); remove it from the dataset")
    syntax = getattr(ds, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    syntax_name = f"{syntax.name} ({syntax})" if syntax else "(none recorded)"
    if syntax is not None and not syntax.is_transfer_syntax:
        raise MedauditError(f"{name}: unsupported transfer syntax {syntax}; convert the file to an uncompressed "
                            "syntax (e.g. dcmdjpeg or gdcmconv --raw)")
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            hint = f"; install one of: {', '.join(decoder.missing_dependencies)}" if decoder is not None else ""
            raise MedauditError(f"{name}: pixel data compressed as {syntax_name}, which no installed decoder "
                                f"reads{hint}; or decompress it (dcmdjpeg, gdcmconv --raw)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        raise MedauditError(f"{name}: photometric interpretation {photometric or '(missing)'!r} is not supported "
                            "(MONOCHROME1/2, RGB and YBR are)")
    try:
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.get("BitsStored") or ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MedauditError(f"{name}: incomplete image pixel module ({exc})") from None
    if rows * cols > max_pixels:
        raise MedauditError(f"{name}: image is {cols}x{rows} = {rows * cols} pixels, above the limit of "
                            f"{max_pixels}; downscale it before auditing")
    if options.frame is None and frames > 1:
        raise MedauditError(f"{name}: a multi-frame DICOM ({frames} frames); choose one with "
                            "--data 'dicom:FOLDER?frame=K' (0-based)")
    if options.frame is not None and frames > 1 and options.frame >= frames:  # single-frame files have only theirs
        raise MedauditError(f"{name}: frame {options.frame} chosen but the file has {frames} frame(s)")
    try:
        arr = pixel_array(ds, index=options.frame if frames > 1 else None)
    except Exception as exc:  # decoders raise anything from ValueError to RuntimeError on bad data
        raise MedauditError(f"{name}: cannot decode DICOM pixel data ({syntax_name}): {exc}") from None
    frame_note = f", frame {options.frame}" if frames > 1 else ""
    if photometric.startswith("MONOCHROME"):
        try:
            out, source = _gray(arr, ds, options, name)
        except (AttributeError, IndexError, KeyError, NotImplementedError, TypeError, ValueError) as exc:
            raise MedauditError(f"{name}: cannot apply its modality or VOI LUT ({exc})") from None
        return Image.fromarray(out, "L"), f"DICOM {photometric} {bits}-bit{frame_note}, {source}"
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise MedauditError(f"{name}: colour pixel data of shape {arr.shape}; expected (rows, columns, 3)")
    rgb = arr if arr.dtype == np.uint8 and bits == 8 else _to_u8(arr.astype(np.float64) * (255.0 / (2**bits - 1)))
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB"), f"DICOM {photometric} {bits}-bit{frame_note}"


@dataclass(eq=False, repr=False)
class DicomSplit(Split):
    """A split of DICOM files: :meth:`load_image` and the content hashes decode with :func:`decode_dicom`.

    Parameters
    ----------
    options : DicomOptions
        The window and frame every file of the split is decoded with.
    (the other parameters are :class:`~medaudit.data.base.Split`'s; ``paths`` is required)
    """

    options: DicomOptions = field(default_factory=DicomOptions)

    def _decode(self, i: int, draft_min_side: int | None = None) -> tuple[Image.Image, str]:
        # draft_min_side is a JPEG-file shortcut (PIL's DCT scaling): DICOM pixel data always decodes in full.
        return decode_dicom(self.paths[i], self.options, display=self._display(i))

    def pixel_recipe(self) -> dict:
        """How stored values became the pixels every model saw (recorded in the snapshot's dataset block)."""
        return {"format": "DICOM", **self.options.recipe()}

    def subset(self, indices, name: str) -> DicomSplit:
        """:meth:`Split.subset`, still decoding DICOM with the same options."""
        plain = super().subset(indices, name)
        return DicomSplit(**{f.name: getattr(plain, f.name) for f in fields(Split) if f.init}, options=self.options)


# -- metadata --------------------------------------------------------------------------------------------------------
def parse_age(text: str) -> float:
    """A DICOM Age String (``nnnD``, ``nnnW``, ``nnnM``, ``nnnY``) in years; NaN when empty or malformed."""
    text = text.strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] in _AGE_UNITS:
        return int(text[:3]) * _AGE_UNITS[text[3]]
    return float("nan")


def _year(text: str) -> float:
    text = text.strip()
    return float(text[:4]) if len(text) == 8 and text.isdigit() and 1800 <= int(text[:4]) <= 2200 else float("nan")


def _read_header(path: Path, name: str) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        raise MedauditError(f"{name}: not a DICOM file (no DICM header); fix or remove the file") from None
    except Exception as exc:  # any damage is this one file's
        raise MedauditError(f"{name}: cannot read DICOM file ({type(exc).__name__}: {exc})") from None


def read_metadata(paths: list[Path], split: str = "") -> tuple[dict[str, np.ndarray], list[str]]:
    """The metadata columns of ``paths`` and their SOPInstanceUIDs, reading only :data:`METADATA_TAGS`.

    Parameters
    ----------
    paths : list of Path, length N
    split : str
        For the warning about unreadable ages or dates.

    Returns
    -------
    metadata : dict of str to ndarray, each shape (N,)
        float64 (NaN = unknown) for ``age`` and ``study_year``; str ("" = unknown) otherwise;
        ``patient_id`` holds salted hashes.
    sop_uids : list of str, length N
    """
    raw: dict[str, list[str]] = {col: [] for col in METADATA_TAGS}
    uids: list[str] = []
    with warnings.catch_warnings():
        # pydicom warns per malformed value ("Invalid value for VR AS"); they are counted as unknown below
        warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
        for path in paths:
            ds = _read_header(path, str(path))
            for col, keyword in METADATA_TAGS.items():
                value = ds.get(keyword)
                raw[col].append("" if value is None else str(value).strip())
            uids.append(str(ds.get("SOPInstanceUID") or "").strip())
    salt = load_salt() if any(raw["patient_id"]) else b""
    meta: dict[str, np.ndarray] = {}
    bad: Counter = Counter()
    for col, values in raw.items():
        if col == PATIENT_COLUMN:
            meta[col] = hash_identifiers(values, salt) if salt else np.full(len(values), "", dtype=str)
        elif col in _NUMERIC:
            parse = parse_age if col == "age" else _year
            nums = np.array([parse(v) for v in values], dtype=np.float64)
            bad[METADATA_TAGS[col]] = sum(bool(v) for v in values) - int(np.isfinite(nums).sum())
            meta[col] = nums
        else:
            meta[col] = np.asarray(values, dtype=str)
    bad = +bad
    if bad:
        what = ", ".join(f"{n} {tag}" for tag, n in sorted(bad.items()))
        warnings.warn(f"split '{split}': unreadable {what} value(s) counted as unknown", MedauditWarning, stacklevel=3)
    return meta, uids


# -- loading ---------------------------------------------------------------------------------------------------------
def _refuse_images(root: Path) -> None:
    images = [p for p in _visible_files(root) if is_image_file(p)]
    if images:
        raise MedauditError(f"{root}: holds both DICOM files and {len(images)} other image(s) (e.g. "
                            f"{images[0].relative_to(root)}); audit one kind at a time", param="data")


def _dicom_split(options: DicomOptions):
    def make(**kwargs) -> DicomSplit:
        metadata, _ = read_metadata(kwargs["paths"], kwargs["name"])
        return DicomSplit(**kwargs, metadata=metadata, options=options)
    return make


def _load_csv_labels(root: Path, csv_path: Path, options: DicomOptions, *, spec: str, classes: list[str] | None,
                     task: str | None) -> Dataset:
    """Labels (and splits) from a CSV keyed by ``path`` or ``sop_instance_uid``; every file must be listed."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = [(n, r) for n, r in enumerate(reader, start=2) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedauditError(f"{csv_path}: cannot read the labels CSV ({exc})", param="data") from None
    header = ["sop_instance_uid" if h == "sopinstanceuid" else h for h in header]
    keys = [k for k in ("path", "sop_instance_uid") if k in header]
    if "label" not in header or len(keys) != 1:
        raise MedauditError(f"{csv_path}: header must name 'label' and one of 'path' or 'sop_instance_uid' "
                            f"(optional 'split'); found {header}", param="data")
    key = keys[0]
    files = [p for p in _visible_files(root) if is_dicom_file(p)]
    if not files:
        raise MedauditError(f"{root}: no DICOM (.dcm) files found", param="data")
    by_key: dict[str, Path] = {}
    if key == "sop_instance_uid":
        for p in files:
            uid = str(_read_header(p, str(p)).get("SOPInstanceUID") or "").strip()
            if not uid:
                raise MedauditError(f"{p}: no SOPInstanceUID, so the labels CSV cannot name it; key the CSV by path")
            if uid in by_key:
                raise MedauditError(f"{p} and {by_key[uid]} share the SOPInstanceUID {uid}; remove the copy")
            by_key[uid] = p
    col = {name: header.index(name) for name in (key, "label", "split") if name in header}
    entries: list[tuple[str, str, Path, str]] = []  # split, sample id, file, label
    seen: set[Path] = set()
    for line, row in rows:
        where = f"{csv_path}:{line}"
        if len(row) < len(header):
            raise MedauditError(f"{where}: expected {len(header)} columns, found {len(row)}")
        label, split = manifest.row_label_and_split(row, col, where)  # the manifest's rules
        if key == "path":
            _sid, full = manifest._safe_relative(root, row[col["path"]], where)  # the manifest's path rules
            if not is_dicom_file(full):
                raise MedauditError(f"{where}: '{row[col['path']]}' is not a .dcm file")
        else:
            full = by_key.get(row[col[key]].strip())
            if full is None:
                raise MedauditError(f"{where}: no DICOM file under {root} has SOPInstanceUID {row[col[key]].strip()}")
        full = full.absolute()
        if full in seen:
            raise MedauditError(f"{where}: {full.relative_to(root)} is listed more than once")
        seen.add(full)
        entries.append((split, full.relative_to(root).as_posix(), full, label))
    if not entries:
        raise MedauditError(f"{csv_path}: the labels CSV has no rows", param="data")
    unlisted = [p for p in files if p.absolute() not in seen]
    if unlisted:
        raise MedauditError(f"{root}: {len(unlisted)} DICOM file(s) have no row in {csv_path.name} (e.g. "
                            f"{unlisted[0].relative_to(root)}); label them or move them out", param="data")
    class_names, index = manifest._class_names([e[3] for e in entries], classes, csv_path)
    for _split, sid, _full, label in entries:
        if label not in index:
            raise MedauditError(f"{csv_path}: label '{label}' (sample {sid}) is not one of {', '.join(class_names)}")
    make = _dicom_split(options)
    splits: dict[str, Split] = {}
    for name in dict.fromkeys(e[0] for e in entries):
        rows_s = sorted((e for e in entries if e[0] == name), key=lambda e: e[1])
        splits[name] = make(name=name, sample_ids=[e[1] for e in rows_s],
                            labels=np.array([index[e[3]] for e in rows_s], dtype=np.int64),
                            class_names=class_names, paths=[e[2] for e in rows_s])
    splits = order_splits(splits)
    resolved = resolve_task(task, [s.labels for s in splits.values()], len(class_names), None, str(csv_path))
    warn_missing_classes(splits)
    return Dataset(spec=spec, class_names=class_names, task=resolved, splits=splits)


def load_dicom(spec: str, *, classes: list[str] | None = None, task: str | None = None) -> Dataset:
    """Load a DICOM dataset (see the module docstring for the spec, labels, pixels and metadata).

    Parameters
    ----------
    spec : str
        ``FOLDER`` or ``dicom:FOLDER[?window=C,W][&frame=K][&labels=CSV]``.
    classes : list of str, optional
        Class names in label order.
    task : str, optional
        Declared task.

    Returns
    -------
    Dataset
        Splits are :class:`DicomSplit`; ``patient_column`` is ``"patient_id"`` when any file has a PatientID.

    Raises
    ------
    MedauditError
        A bad spec or layout, a file that is not DICOM, or labels that do not match the files.
    """
    root, options, labels = parse_spec(spec)
    _refuse_images(root)
    if labels is not None:
        ds = _load_csv_labels(root, labels, options, spec=spec, classes=classes, task=task)
    else:
        ds = folders.load_folder(root, spec=spec, classes=classes, task=task, kind=DICOM_FILES,
                                 make_split=_dicom_split(options))
    if any(s.metadata[PATIENT_COLUMN].any() for s in ds.splits.values()):
        ds.patient_column = PATIENT_COLUMN
    return ds
