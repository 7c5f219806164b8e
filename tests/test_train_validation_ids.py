"""The validation record in the checkpoint (training["validation"]) and its torch-free reader medaudit.validation."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.checkpoint import load_checkpoint
from medaudit.train.loop import train
from medaudit.train.state import carve_val
from medaudit.validation import ids_fingerprint, recorded_validation
from tests.test_train_loop import cfg, load, quiet, write_npz


def _sha(ids):
    # The documented encoding, written out independently: sorted ids as a compact JSON array, UTF-8.
    return hashlib.sha256(json.dumps(sorted(ids), ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture(scope="module")
def carved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("carved")
    ds = load(write_npz(tmp / "noval.npz", n=(60, 0, 12), val=False))
    with pytest.warns(MedauditWarning, match="no 'val' split"):
        train(ds, cfg(epochs=1, val_fraction=0.2, seed=3), tmp / "m.pt", progress=False, log=quiet)
    return ds, load_checkpoint(tmp / "m.pt").meta


def test_a_carved_split_records_its_sample_ids(carved):
    ds, meta = carved
    block = meta["training"]["validation"]
    train_split = ds.split("train")
    # The carve, redone from its recorded fraction and seed, gives the recorded ids.
    _, va = carve_val(train_split.labels, 0.2, 3)
    expected = [str(train_split.sample_ids[i]) for i in va]
    assert block["source"] == "carved" and block["split"] == "train"
    assert block["fraction"] == 0.2 and block["seed"] == 3
    assert block["sample_ids"] == expected and block["n"] == 12 == meta["training"]["n_val"]
    assert block["fingerprint"] == _sha(expected)
    assert not set(expected) & {str(s) for s in ds.split("test").sample_ids}
    rec = recorded_validation(meta, "m.pt")
    assert rec["sample_ids"] == expected and rec["fingerprint"] == block["fingerprint"]
    # The per-class counts behind each val score's standard error (4 of each of 3 classes).
    assert meta["training"]["val_class_counts"] == {"classes": list(ds.class_names), "counts": [4, 4, 4],
                                                    "multilabel": False}


def test_a_real_val_split_is_named_and_fingerprinted(tmp_path):
    ds = load(write_npz(tmp_path / "t.npz", n=(40, 14, 12)))
    train(ds, cfg(epochs=1), tmp_path / "m.pt", progress=False, log=quiet)
    meta = load_checkpoint(tmp_path / "m.pt").meta
    block = meta["training"]["validation"]
    val_ids = [str(s) for s in ds.split("val").sample_ids]
    assert block == {"source": "val", "split": "val", "n": 14, "fingerprint": _sha(val_ids)}
    assert recorded_validation(meta) == {**block, "sample_ids": None}
    y = np.asarray(ds.split("val").labels).ravel()
    assert meta["training"]["val_class_counts"] == {"classes": list(ds.class_names),
                                                    "counts": [int((y == k).sum()) for k in range(3)],
                                                    "multilabel": False}


def test_fingerprint_is_order_free_and_unambiguous():
    assert ids_fingerprint(["b", "a"]) == ids_fingerprint(["a", "b"]) == _sha(["a", "b"])
    assert ids_fingerprint(["a,b"]) != ids_fingerprint(["a", "b"])
    assert ids_fingerprint(["a\nb"]) != ids_fingerprint(["a", "b"])
    assert ids_fingerprint(["é"]) == hashlib.sha256('["é"]'.encode()).hexdigest()


def test_no_record_is_none():
    assert recorded_validation({}) is None
    assert recorded_validation({"training": None}) is None
    assert recorded_validation({"training": {"source": "converted", "weights_file": "w.safetensors"}}) is None
    assert recorded_validation({"training": {"val_source": "val"}}) is None  # written before the record existed


def _corrupt(meta, change):
    m = copy.deepcopy(meta)
    change(m["training"]["validation"])
    return m


@pytest.mark.parametrize("change,why", [
    (lambda b: b.update(source="test"), r"source 'test' is not one of carved, val"),
    (lambda b: b.update(split=3), r"split 3 is not a split name"),
    (lambda b: b.update(n=True), r"n True is not a positive count"),
    (lambda b: b.update(n=0), r"n 0 is not a positive count"),
    (lambda b: b.update(fingerprint="abc"), r"fingerprint is not 64 lowercase hex digits"),
    (lambda b: b.pop("sample_ids"), r"a carved validation split without its sample_ids"),
    (lambda b: b.update(sample_ids=[1] * b["n"]), r"sample_ids is not a list of strings"),
    (lambda b: b.update(sample_ids=b["sample_ids"][:1] * b["n"]), r"sample_ids repeat"),
    (lambda b: b.update(n=b["n"] + 1), r"n is 13 but 12 sample_ids are listed"),
    (lambda b: b["sample_ids"].__setitem__(0, "train/999"), r"the fingerprint does not match the sample_ids"),
])
def test_a_malformed_record_is_a_one_line_error_naming_the_checkpoint(carved, change, why):
    _, meta = carved
    with pytest.raises(MedauditError, match=r"^checkpoint ckpt/m\.pt: its training\.validation record is malformed "
                                            rf"\({why}\)") as exc:
        recorded_validation(_corrupt(meta, change), "ckpt/m.pt")
    assert exc.value.param == "models" and "\n" not in str(exc.value)


def test_a_record_that_is_not_a_mapping_is_refused():
    with pytest.raises(MedauditError, match=r"^the checkpoint: its training.validation record is malformed \(a list"):
        recorded_validation({"training": {"validation": ["a"]}})


def test_the_reader_needs_no_model_framework():
    """The audit path reads the record, so its reader loads neither torch nor the training code."""
    code = ("import sys, medaudit.validation; "
            "print(sorted(m for m in ('torch', 'timm', 'medaudit.train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
