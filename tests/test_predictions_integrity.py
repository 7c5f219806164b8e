"""Damaged, foreign and altered predictions files: one-line errors that name the file (issue 19)."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.predictions import ChecksumMissing, Predictions, PredictionsFileError


def _preds(name="m"):
    return Predictions(name, ["a", "b"], "binary", ["s0", "s1", "s2"], np.array([0, 1, 1]),
                       np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]))


def _members(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _same(a: Predictions, b: Predictions) -> bool:
    return (a.header() == b.header() and a.sample_ids.tolist() == b.sample_ids.tolist()
            and np.array_equal(a.y_true, b.y_true) and np.array_equal(a.probs, b.probs))


def _damage(kind, good: bytes) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "random":
        return np.random.default_rng(0).bytes(300)
    if kind == "text":
        return b"probs,y_true\n0.2,1\n"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,reason", [
    ("empty", "is empty (0 bytes)"),
    ("truncated", "is truncated or damaged"),
    ("random", "is not a valid .npz (zip) file"),
    ("text", "is not a valid .npz (zip) file"),
])
def test_a_damaged_file_is_one_error_naming_it_and_what_to_do(tmp_path, kind, reason):
    good = _preds().save(tmp_path / "good.npz").read_bytes()
    bad = tmp_path / f"{kind}.npz"
    bad.write_bytes(_damage(kind, good))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(PredictionsFileError) as err:
            Predictions.load(bad)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]  # the file was closed
    msg = str(err.value)
    assert msg.startswith(f"{bad}: {reason}") and msg.endswith("re-run `medaudit predict` to write it again")
    assert "pickle" not in msg  # np.load alone calls any non-zip bytes "pickled data"
    assert "\n" not in msg


def test_real_object_arrays_stay_refused_as_pickled(tmp_path):
    path = tmp_path / "obj.npz"
    header = json.dumps(_preds().header())
    np.savez(path, sample_ids=np.array(["s0", "s1", "s2"], dtype=object), y_true=np.array([0, 1, 1]),
             probs=_preds().probs, header=np.array(header))
    with pytest.raises(PredictionsFileError, match=r"holds pickled \(object\) arrays \('sample_ids'\)"):
        Predictions.load(path)


def test_a_single_npy_array_is_named_as_such(tmp_path):
    path = tmp_path / "probs.npz"
    with open(path, "wb") as fh:
        np.save(fh, _preds().probs)
    with pytest.raises(PredictionsFileError, match=r"a single \.npy array, not a \.npz"):
        Predictions.load(path)


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "p.npz"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(MedauditError, match="not a regular file"):
        Predictions.load(fifo)
    with pytest.raises(MedauditError, match="no such file"):
        Predictions.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("edit,reason", [
    (lambda m: m.pop("probs"), "it lacks probs"),
    (lambda m: m.update(header=np.array("{not json")), "header is not valid JSON"),
    (lambda m: m.update(header=np.array("[1, 2]")), "header is not a JSON object"),
    (lambda m: m.update(header=np.array(json.dumps({"format": "medaudit.predictions/2"}))),
     "header lacks model_name, class_names, task"),
    (lambda m: m.update(header=np.array(json.dumps({"format": "other/9"}))), "format 'other/9' is not supported"),
    (lambda m: m.update(header=np.zeros(3)), "header is not a text value"),
    (lambda m: m.update(probs=np.array([["x", "y"]] * 3)), "arrays have the wrong types"),
    (lambda m: m.update(probs=m["probs"][:2]), "probabilities have shape (2, 2), expected (3, 2)"),
])
def test_a_foreign_or_inconsistent_file_names_the_file(tmp_path, edit, reason):
    path = _preds().save(tmp_path / "p.npz")
    members = _members(path)
    edit(members)
    np.savez(path, **members)
    with pytest.raises(PredictionsFileError) as err:
        Predictions.load(path)
    assert str(err.value).startswith(f"{path}: ") and reason in str(err.value)


def test_every_truncation_and_byte_flip_is_either_caught_or_harmless(tmp_path):
    """No damage escapes as another exception (BadZipFile, EOFError, zlib.error, NotImplementedError...);
    with a checksum, whatever still loads is exactly what was written."""
    original = _preds()
    good = original.save(tmp_path / "good.npz", checksum=True).read_bytes()
    path = tmp_path / "x.npz"
    cases = [good[:n] for n in range(len(good))]
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 0x80 if i % 2 else 0x01  # a high and a low bit, alternately
        cases.append(bytes(flipped))
    outcomes = {"loaded": 0, "refused": 0}
    for data in cases:
        path.write_bytes(data)
        try:
            back = Predictions.load(path, require_checksum=True)
        except PredictionsFileError:
            outcomes["refused"] += 1
            continue
        assert _same(back, original)
        outcomes["loaded"] += 1
    assert outcomes["refused"] > len(good)  # at least every truncation (the flips hit ignored bytes too)


def test_the_checksum_catches_a_validly_rezipped_change(tmp_path):
    path = _preds().save(tmp_path / "p.npz", checksum=True)
    assert _same(Predictions.load(path, require_checksum=True), _preds())
    edits = [
        ("probs", lambda a: np.nextafter(a[0, 0], 1.0)),  # one probability, by one ulp
        ("y_true", lambda a: 1 - a[0]),
        ("sample_ids", lambda a: "s9"),
    ]
    for name, change in edits:
        members = _members(path)
        arr = members[name].copy()
        arr.flat[0] = change(arr)
        members[name] = arr
        altered = tmp_path / f"altered_{name}.npz"
        np.savez_compressed(altered, **members)  # a valid zip with the old checksum
        with zipfile.ZipFile(altered) as z:
            assert z.testzip() is None
        with pytest.raises(PredictionsFileError, match="do not match the checksum"):
            Predictions.load(altered)
    members = _members(path)
    header = json.loads(str(members["header"]))
    header["class_names"] = header["class_names"][::-1]  # swaps what every column means
    members["header"] = np.array(json.dumps(header, sort_keys=True))
    np.savez(tmp_path / "relabelled.npz", **members)
    with pytest.raises(PredictionsFileError, match="do not match the checksum"):
        Predictions.load(tmp_path / "relabelled.npz")
    members = _members(path)
    members["probs"] = members["probs"].astype(np.float32)  # same values, other bytes
    np.savez(tmp_path / "float32.npz", **members)
    with pytest.raises(PredictionsFileError, match="do not match the checksum"):
        Predictions.load(tmp_path / "float32.npz")


def test_the_checksum_is_sha256_of_the_header_and_the_arrays_as_stored(tmp_path):
    """Recomputed here from the documented recipe, not taken from the code under test."""
    path = _preds().save(tmp_path / "p.npz", checksum=True)
    m = _members(path)
    h = hashlib.sha256(str(m["header"]).encode())
    for name in ("sample_ids", "y_true", "probs"):
        a = m[name]
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode() + a.tobytes())
    assert str(m["checksum"]) == "sha256:" + h.hexdigest()


def test_the_public_file_is_unchanged_and_files_without_a_checksum_still_load(tmp_path):
    path = _preds().save(tmp_path / "p.npz")
    assert set(_members(path)) == {"sample_ids", "y_true", "probs", "header"}  # docs/predictions-format.md
    # A file made by hand from the documented format (no medaudit, no checksum) is read.
    m = _members(path)
    np.savez(tmp_path / "by_hand.npz", **m)
    assert _same(Predictions.load(tmp_path / "by_hand.npz"), _preds())
    with pytest.raises(ChecksumMissing, match="holds no checksum"):
        Predictions.load(tmp_path / "by_hand.npz", require_checksum=True)
