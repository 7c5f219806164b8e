"""MedMNIST-layout .npz files: shapes, label maps, fast hashing, bad input."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from medaudit.data import load_dataset
from medaudit.errors import MedauditError, MedauditWarning

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


def _save(path, n=(6, 2, 3), labels_shape="flat", k=2, channels=None, seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in zip(("train", "val", "test"), n):
        shape = (m, 8, 8) + ((channels,) if channels else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        lab = np.arange(m) % k
        if labels_shape == "column":
            lab = lab[:, None]
        elif labels_shape == "multi":
            lab = (rng.random((m, k)) < 0.5).astype(np.uint8)
            lab[0] = 1  # every label has a positive
        arrays[f"{split}_labels"] = lab
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_basic_npz_column_labels_and_ids(tmp_path):
    p = _save(tmp_path / "toy.npz", labels_shape="column", k=3)
    ds = load_dataset(str(p))
    assert ds.class_names == ["0", "1", "2"] and ds.task == "multiclass"
    te = ds.split("test")
    assert te.sample_ids == ["test/0", "test/1", "test/2"]
    assert te.labels.shape == (3,) and te.labels.dtype == np.int64
    assert te.array.dtype == np.uint8 and te.array.shape == (3, 8, 8)
    np.testing.assert_array_equal(np.asarray(te.load_image(1)), te.array[1])
    assert te.class_counts() == {"0": 1, "1": 1, "2": 1}


def test_known_stem_gets_label_map_and_single_channel_is_squeezed(tmp_path):
    p = _save(tmp_path / "breastmnist_64.npz", channels=1)
    with pytest.warns(MedauditWarning, match="differ from the official breastmnist sizes"):
        ds = load_dataset(str(p))
    assert ds.class_names == ["malignant", "normal_benign"] and ds.task == "binary"
    assert ds.split("train").array.shape == (6, 8, 8)
    assert not ds.split("train").array.flags.owndata  # a view of the loaded uint8 array, no copy
    assert load_dataset(str(p), classes=["m", "b"]).class_names == ["m", "b"]


def test_rgb_and_multilabel(tmp_path):
    p = _save(tmp_path / "ml.npz", labels_shape="multi", k=4, channels=3)
    ds = load_dataset(str(p))
    assert ds.task == "multilabel" and ds.class_names == ["0", "1", "2", "3"]
    tr = ds.split("train")
    assert tr.labels.dtype == np.int8 and tr.labels.shape == (6, 4)
    assert tr.class_counts() == {str(j): int(tr.labels[:, j].sum()) for j in range(4)}
    assert tr.load_image(0).mode == "RGB"
    with pytest.raises(MedauditError, match="does not fit"):
        load_dataset(str(p), task="multiclass")


def test_hashing_5000_images_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5000, 28, 28), dtype=np.uint8)
    imgs[10] = imgs[3]
    np.savez(tmp_path / "big.npz", test_images=imgs, test_labels=np.arange(5000) % 2)
    split = load_dataset(str(tmp_path / "big.npz")).split("test")
    t0 = time.perf_counter()
    hashes = split.content_hashes()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed
    assert hashes[10] == hashes[3] and len(set(hashes)) == 4999


def test_pickled_npz_refused(tmp_path):
    np.savez(tmp_path / "p.npz", train_images=np.array([object()], dtype=object), train_labels=np.array([0]))
    with pytest.raises(MedauditError, match="pickled"):
        load_dataset(str(tmp_path / "p.npz"))


def test_garbage_empty_and_truncated_npz_are_not_called_pickled(tmp_path):
    good = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(good, train_images=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8),
                        train_labels=np.arange(8) % 2)
    data = good.read_bytes()
    cases = {"garbage.npz": (b"\x00garbage" * 50, "not a valid .npz (zip) file"),
             "empty.npz": (b"", "is empty (0 bytes)"),
             "truncated.npz": (data[: len(data) // 2], "not a readable .npz file")}
    for name, (content, fragment) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(MedauditError, match=re.escape(fragment)) as exc:
            load_dataset(str(tmp_path / name))
        assert "pickled" not in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"train_labels": np.array([0, 1, 5, 0, 1, 0])}, None),  # 6 classes inferred -> fine
        ({"train_labels": np.array([0, 1, -1, 0, 1, 0])}, "label out of range"),
        ({"train_images": np.zeros((6, 8, 8), np.float32)}, "expected uint8"),
        ({"train_images": np.zeros((6, 4, 8, 8), np.uint8)}, "3D volumes"),
        ({"train_images": np.zeros((0, 8, 8), np.uint8), "train_labels": np.zeros(0)}, "split 'train' is empty"),
        ({"train_labels": np.array([0, 1, 0])}, r"expected \(6,\)"),
    ],
)
def test_bad_arrays(tmp_path, extra, message):
    p = _save(tmp_path / "x.npz", **extra)
    if message is None:
        assert load_dataset(str(p)).class_names == [str(k) for k in range(6)]
        return
    with pytest.raises(MedauditError, match=message):
        load_dataset(str(p))


def test_label_out_of_range_for_known_map_and_missing_arrays(tmp_path):
    p = _save(tmp_path / "pneumoniamnist.npz", k=3)
    with pytest.raises(MedauditError, match="label out of range"):
        load_dataset(str(p))
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(MedauditError, match="no arrays named train_images"):
        load_dataset(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "half.npz", train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(MedauditError, match="no train_labels"):
        load_dataset(str(tmp_path / "half.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(MedauditError, match="junk.npz"):
        load_dataset(str(tmp_path / "junk.npz"))
