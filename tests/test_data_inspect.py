"""inspect_dataset: sizes/modes summary and the duplicate counting rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medaudit.data import Split, inspect_dataset, load_dataset
from medaudit.data.inspect import format_inspection
from medaudit.errors import MedauditError

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


def _npz_with_duplicates(path):
    """Hand-built duplicates: train has A A A B (2 extra), val has B C, test has A D D (1 extra)."""
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.integers(0, 256, (6, 6), dtype=np.uint8) for _ in range(4))
    np.savez(
        path,
        train_images=np.stack([a, a, a, b]), train_labels=np.array([0, 1, 0, 1]),
        val_images=np.stack([b, c]), val_labels=np.array([0, 1]),
        test_images=np.stack([a, d, d]), test_labels=np.array([0, 1, 1]),
    )  # fmt: skip


def test_duplicate_counting_rule(tmp_path):
    _npz_with_duplicates(tmp_path / "d.npz")
    s = inspect_dataset(load_dataset(str(tmp_path / "d.npz")))
    dup = s["duplicates"]
    assert dup["within"] == {"train": 2, "val": 0, "test": 1}
    assert dup["across"] == {"train/val": 1, "train/test": 1, "val/test": 0}
    assert dup["leakage"] is True
    assert dup["examples"] == [["train/3", "val/0"], ["train/0", "test/0"], ["train/0", "train/1"],
                               ["train/0", "train/2"], ["test/1", "test/2"]]  # fmt: skip
    assert s["splits"]["test"] == {
        "n": 3,
        "class_counts": {"0": 1, "1": 2},
        "image_sizes": {"n_distinct": 1, "width": {"min": 6, "max": 6}, "height": {"min": 6, "max": 6},
                        "most_common": {"size": [6, 6], "count": 3}},
        "modes": {"L": 3},
    }  # fmt: skip
    json.dumps(s)  # JSON-serialisable
    text = format_inspection(s)
    assert "train/val 1, train/test 1" in text
    # Leakage is part of the inspection report (stdout, like --json's "leakage"), not a warning on stderr.
    assert "WARNING: the same image occurs in more than one split (leakage); e.g. train/3 = val/0" in text


def test_mixed_modes_and_sizes_in_folder(tmp_path):
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000).save(root / "a" / "16bit.png")
    Image.fromarray(np.zeros((5, 5, 4), np.uint8), "RGBA").save(root / "a" / "alpha.png")
    Image.fromarray(np.full((5, 5, 3), 9, np.uint8)).save(root / "b" / "rgb.jpg")
    Image.fromarray(np.full((5, 5), 9, np.uint8)).save(root / "b" / "gray.png")
    s = inspect_dataset(load_dataset(str(root)))
    info = s["splits"]["all"]
    assert info["modes"]["RGBA"] == 1 and info["modes"]["RGB"] == 1 and info["modes"]["L"] == 1
    assert sum(info["modes"].values()) == 4
    assert info["image_sizes"]["n_distinct"] == 2 and info["image_sizes"]["width"] == {"min": 4, "max": 5}
    assert s["duplicates"]["within"] == {"all": 0} and s["duplicates"]["leakage"] is False


def test_inspect_reports_unreadable_file(tmp_path):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (4, 4), 1 if cls == "a" else 2).save(root / cls / "ok.png")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    with pytest.raises(MedauditError, match=r"b/bad\.png"):
        inspect_dataset(load_dataset(str(root)))


def test_near_duplicates_of_pixel_copies_are_counted_not_listed(tmp_path):
    _npz_with_duplicates(tmp_path / "d.npz")
    near = inspect_dataset(load_dataset(str(tmp_path / "d.npz")))["near_duplicates"]
    # Random 6x6 pictures are near-duplicates only of their own pixel copies: the same counts as
    # "duplicates" (train/val: B, train/test: A), none listed as a near-but-different example.
    assert {k: (v["n"], v["n_pixel_identical"]) for k, v in near["across"].items()} == {
        "train/val": (1, 1), "train/test": (1, 1), "val/test": (0, 0)}
    assert near["within"] == {"train": {"n_pairs": 3, "n_samples": 3}, "val": {"n_pairs": 0, "n_samples": 0},
                              "test": {"n_pairs": 1, "n_samples": 2}}  # A A A: 3 pairs; D D: 1
    assert near["examples"] == [] and near["leakage"] is True
    assert "all of them pixel-identical (listed under duplicates)" in format_inspection(
        inspect_dataset(load_dataset(str(tmp_path / "d.npz"))))


def _split(name, patients, start=0):
    n = len(patients)
    rng = np.random.default_rng(start)
    return Split(name=name, sample_ids=[f"{name}/{i}" for i in range(n)], labels=np.arange(n) % 2,
                 class_names=["a", "b"], array=rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
                 metadata={"patient": np.asarray(patients, dtype=str), "age": np.arange(n, dtype=np.float64)})


def test_patient_leakage_by_hand():
    from medaudit.data.inspect import patient_leakage

    splits = {"train": _split("train", ["p-1", "p-2", "p-2", "p-3", ""]),
              "val": _split("val", ["p-4", "", ""], 1),
              "test": _split("test", ["p-2", "p-2", "p-3", "p-5", "", "p-4"], 2)}
    out = patient_leakage(splits, "patient")
    assert out["n_per_split"] == {"train": 3, "val": 1, "test": 4}
    assert out["n_missing"] == {"train": 1, "val": 2, "test": 1}
    # Missing ids ("") are unknown, never one shared patient.
    assert out["across"] == {"train/val": {"n": 0, "n_samples": 0, "examples": []},
                             "train/test": {"n": 2, "n_samples": 3, "examples": ["p-2", "p-3"]},
                             "val/test": {"n": 1, "n_samples": 1, "examples": ["p-4"]}}
    assert out["leakage"] is True
    assert patient_leakage(splits, "patient", max_examples=1)["across"]["train/test"]["examples"] == ["p-2"]
    # A split without the column is not compared; no column at all is said, not guessed.
    splits["val"].metadata = None
    out = patient_leakage(splits, "patient")
    assert out["n_per_split"]["val"] is None and list(out["across"]) == ["train/test"]
    none = patient_leakage(splits, None)
    assert none["column"] is None and "no patient column" in none["reason"]


def test_patients_in_the_summary_and_the_text():
    from medaudit.data import Dataset
    from medaudit.phi import hash_identifiers

    ids = hash_identifiers(["MRN001", "MRN002", "MRN003"], b"a-test-salt-of-16+ chars")
    splits = {"train": _split("train", [ids[0], ids[1]]), "test": _split("test", [ids[1], ids[1], ids[2]], 1)}
    s = inspect_dataset(Dataset(spec="x", class_names=["a", "b"], task="binary", splits=splits,
                                patient_column="patient"))
    assert s["patients"]["across"]["train/test"] == {"n": 1, "n_samples": 2, "examples": [ids[1]]}
    json.dumps(s)
    text = format_inspection(s)
    assert "patients (column 'patient'): train 2, test 2" in text
    assert "WARNING: the same patient occurs in more than one split (patient leakage)" in text
    assert f"train/test: 1 patients (2 samples of the later split): {ids[1]}" in text
    assert "MRN" not in text


def test_per_split_demographics_count_groups_summarise_numbers_and_never_list_patients():
    from medaudit.data.inspect import split_demographics

    meta = {"sex": np.array(["F", "M", "", "F"]), "age": np.array([30.0, np.nan, 70.0, 50.0]),
            "patient_id": np.array(["p-1", "p-1", "p-2", ""])}
    d = split_demographics(meta, "patient_id")
    assert d["groups"] == {"sex": {"F": 2, "M": 1, "unknown": 1}}, "the patient column is counted, not listed"
    assert d["numeric"]["age"] == {"n_known": 3, "n_unknown": 1, "mean": 50.0, "median": 50.0, "min": 30.0,
                                   "max": 70.0}
    assert d["n_patients"] == 3  # p-1, p-2 and the image without an id (its own patient)
    assert split_demographics({"age": np.array([np.nan])}, None)["numeric"]["age"]["mean"] is None
