"""DICOM decode speed: medaudit's loader vs plain pydicom on the same generated files.

Generates ``--n`` 12-bit MONOCHROME2 files (``--size`` px square, a CT-like rescale and a
window in the header; ``--rle`` stores them RLE-compressed) in a temporary folder, then times,
in interleaved rounds (A B, B A, ...) so load drift hits both alike:

* ``pydicom``: ``pydicom.dcmread(path).pixel_array`` (decode only: raw stored values, no LUTs);
* ``pydicom+window``: the same, then ``apply_modality_lut`` + ``apply_voi_lut`` + 8-bit cast
  (what a notebook would do to get the same picture);
* ``medaudit``: :func:`medaudit.data.dicom.decode_dicom` (reads only the pixel/LUT tags, modality
  LUT, window, 8-bit ``PIL`` image), i.e. what ``Split.load_image`` and the hashing pass run.

Prints images/s per variant (median over rounds) and medaudit's ratio to each baseline.

    .venv/bin/python benchmarks/dicom_decode.py
    .venv/bin/python benchmarks/dicom_decode.py --n 100 --size 1024 --rle
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402

from medaudit.data.dicom import decode_dicom  # noqa: E402


def make_files(folder: Path, n: int, size: int, rle: bool) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, -1024, 40, 400
        ds.PatientID = f"bench-{i}"
        ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
        if rle:
            ds.compress(RLELossless)
        path = folder / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def plain(paths):
    for p in paths:
        pydicom.dcmread(p).pixel_array  # noqa: B018


def plain_window(paths):
    for p in paths:
        ds = pydicom.dcmread(p)
        x = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
        np.clip(x, 0, 255).astype(np.uint8)


def medaudit(paths):
    for p in paths:
        decode_dicom(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rle", action="store_true", help="RLE Lossless files instead of uncompressed")
    args = ap.parse_args()
    print("machine:", machine_info(), "pydicom", pydicom.__version__)
    variants = {"pydicom": plain, "pydicom+window": plain_window, "medaudit": medaudit}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.n, args.size, args.rle)
        for fn in variants.values():  # warm the page cache and imports
            fn(paths[:5])
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                variants[name](paths)
                times[name].append(time.perf_counter() - t0)
    rate = {k: args.n / statistics.median(v) for k, v in times.items()}
    kind = "RLE" if args.rle else "uncompressed"
    print(f"{args.n} files, {args.size}x{args.size} 12-bit {kind}, {args.rounds} interleaved rounds (median):")
    for k, v in rate.items():
        print(f"  {k:15s} {v:8.1f} img/s")
    print(f"  medaudit / pydicom          {rate['medaudit'] / rate['pydicom']:.2f}x")
    print(f"  medaudit / pydicom+window   {rate['medaudit'] / rate['pydicom+window']:.2f}x")


if __name__ == "__main__":
    main()
