"""Real MedMNIST copies in ../shared/data (skipped when absent): sizes and known duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from medaudit.data import inspect_dataset, load_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present"),
]


def test_pneumoniamnist_counts_and_duplicates():
    ds = load_dataset(str(DATA / "pneumoniamnist.npz"))
    assert ds.class_names == ["normal", "pneumonia"] and ds.task == "binary"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 4708, "val": 524, "test": 624}
    assert ds.split("test").class_counts() == {"normal": 234, "pneumonia": 390}
    dup = inspect_dataset(ds)["duplicates"]
    assert dup["within"] == {"train": 18, "val": 0, "test": 3}
    assert dup["across"] == {"train/val": 8, "train/test": 0, "val/test": 0}
    assert dup["leakage"] is True


def test_breastmnist_flat_labels_and_train_test_copy():
    ds = load_dataset(str(DATA / "breastmnist.npz"))
    assert ds.class_names == ["malignant", "normal_benign"]
    assert ds.split("train").class_counts() == {"malignant": 147, "normal_benign": 399}
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 546, "val": 78, "test": 156}
    dup = inspect_dataset(ds)["duplicates"]
    assert dup["across"] == {"train/val": 0, "train/test": 1, "val/test": 0}
    assert sum(dup["within"].values()) == 0 and dup["leakage"] is True
    assert len(ds.fingerprint()) == 64 and ds.fingerprint() == load_dataset(str(DATA / "breastmnist.npz")).fingerprint()
