"""inspect_dataset: sizes/modes summary and the duplicate counting rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medaudit.data import inspect_dataset, load_dataset
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
