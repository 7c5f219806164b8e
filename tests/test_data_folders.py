"""Image-folder datasets: layouts, split aliases, class union, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medaudit.data import load_dataset
from medaudit.errors import MedauditError, MedauditWarning


def _img(path, value=0, size=(8, 8), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(size[::-1] + ((3,) if mode == "RGB" else ()), value, np.uint8)
    Image.fromarray(arr, mode).save(path)


def _tree(root, layout):
    """layout: {split: {class: n}}; pixel value encodes (split, class, i) so images differ."""
    for si, (split, classes) in enumerate(layout.items()):
        for ci, (cls, n) in enumerate(classes.items()):
            for i in range(n):
                _img(root / split / cls / f"{i}.png", 10 + 60 * si + 15 * ci + i)


def test_kaggle_split_names_normalised(tmp_path):
    _tree(tmp_path, {"Training": {"b": 2, "a": 3}, "Testing": {"a": 1, "b": 2}, "Validation": {"a": 1, "b": 1}})
    ds = load_dataset(str(tmp_path))
    assert list(ds.splits) == ["train", "val", "test"]
    assert ds.class_names == ["a", "b"] and ds.task == "binary"
    tr = ds.split("train")
    assert len(tr) == 5 and tr.class_counts() == {"a": 3, "b": 2}
    assert tr.sample_ids[0] == "Training/a/0.png"
    assert tr.labels.dtype == np.int64 and tr.labels.tolist() == [0, 0, 0, 1, 1]
    assert tr.array is None
    im = tr.load_image(0)
    assert im.mode == "L" and im.size == (8, 8)
    assert ds.split("Testing") is ds.split("test")
    with pytest.raises(MedauditError, match="available splits: train, val, test"):
        ds.split("holdout")


def test_single_folder_is_split_all_and_nested_files(tmp_path):
    _img(tmp_path / "cat" / "p1" / "x.png", 1)
    _img(tmp_path / "cat" / "y.png", 2)
    _img(tmp_path / "dog" / "z.jpg", 3, mode="RGB")
    _img(tmp_path / "mouse" / "w.png", 4)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    ds = load_dataset(str(tmp_path))
    assert list(ds.splits) == ["all"] and ds.task == "multiclass"
    assert ds.split("all").sample_ids == ["cat/p1/x.png", "cat/y.png", "dog/z.jpg", "mouse/w.png"]


def test_missing_class_in_split_warns_and_union_sorted(tmp_path):
    _tree(tmp_path, {"train": {"x": 1, "y": 1, "z": 1}, "test": {"x": 1, "z": 1}})
    with pytest.warns(MedauditWarning, match=r"split 'test' has no samples of class\(es\) 'y'"):
        ds = load_dataset(str(tmp_path))
    assert ds.class_names == ["x", "y", "z"]
    assert ds.split("test").labels.tolist() == [0, 2]


def test_classes_override_sets_order(tmp_path):
    _tree(tmp_path, {"train": {"a": 1, "b": 2}})
    ds = load_dataset(str(tmp_path), classes=["b", "a"])
    assert ds.class_names == ["b", "a"] and ds.split("train").labels.tolist() == [1, 0, 0]
    with pytest.raises(MedauditError, match=r"class folder\(s\) b are not in --classes"):
        load_dataset(str(tmp_path), classes=["a", "c"])


def test_ordinal_only_when_declared(tmp_path):
    _tree(tmp_path, {"train": {"0": 1, "1": 1, "2": 1}})
    assert load_dataset(str(tmp_path)).task == "multiclass"
    assert load_dataset(str(tmp_path), task="ordinal").task == "ordinal"
    with pytest.raises(MedauditError, match="'binary' needs exactly 2 classes"):
        load_dataset(str(tmp_path), task="binary")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda r: None, "no such file or folder"),
        (lambda r: r.mkdir(), "no sub-folders"),
        (lambda r: (r / "train").mkdir(parents=True), "no class sub-folders"),
        (lambda r: (r / "train" / "a").mkdir(parents=True), r"a: class folder holds no images"),
        (lambda r: (_tree(r, {"train": {"a": 1, "b": 1}}), (r / "notes").mkdir()), "mixes split folders"),
        (lambda r: _tree(r, {"train": {"a": 1}}), "at least 2"),
        (lambda r: _tree(r, {"train": {"a": 1, "b": 1}, "Train": {"a": 1, "b": 1}}), "both name the split 'train'"),
    ],
)
def test_bad_folders(tmp_path, build, message):
    root = tmp_path / "d"
    build(root)
    with pytest.raises(MedauditError, match=message):
        load_dataset(str(root))


def test_corrupt_image_fails_at_load_and_verify(tmp_path):
    _tree(tmp_path, {"train": {"a": 2, "b": 1}})
    (tmp_path / "train" / "b" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = load_dataset(str(tmp_path))  # decoding is lazy
    assert ds.split("train").load_image(0).size == (8, 8)
    with pytest.raises(MedauditError, match=r"train/b/0\.png"):
        ds.split("train").load_image(2)
    with pytest.raises(MedauditError, match=r"train/b/0\.png"):
        ds.split("train").verify()
    with pytest.raises(MedauditError, match=r"train/b/0\.png"):
        ds.fingerprint()


def test_fingerprint_stable_and_content_sensitive(tmp_path):
    _tree(tmp_path / "one", {"train": {"a": 2, "b": 2}})
    _tree(tmp_path / "two", {"train": {"a": 2, "b": 2}})
    fp = load_dataset(str(tmp_path / "one")).fingerprint()
    assert len(fp) == 64 and fp == load_dataset(str(tmp_path / "one")).fingerprint()
    assert fp == load_dataset(str(tmp_path / "two")).fingerprint()  # same content, same ids
    _img(tmp_path / "two" / "train" / "a" / "0.png", 200)
    assert load_dataset(str(tmp_path / "two")).fingerprint() != fp
    assert load_dataset(str(tmp_path / "one"), task="multiclass").fingerprint() != fp


@pytest.mark.parametrize("link", ["file", "class_dir"])
def test_symlinks_pointing_outside_the_root_are_refused(tmp_path, link):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("L", (8, 8)).save(outside / "secret.png")
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / cls / "x.png")
    if link == "file":
        (root / "a" / "y.png").symlink_to(outside / "secret.png")
    else:
        (root / "c").symlink_to(outside, target_is_directory=True)
    with pytest.raises(MedauditError, match="symlink pointing outside the data folder"):
        load_dataset(str(root))


def test_symlinks_inside_the_root_are_followed(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / cls / "x.png")
    (root / "a" / "y.png").symlink_to(root / "b" / "x.png")
    assert len(load_dataset(str(root)).split("all")) == 3


def test_empty_class_names_are_refused_not_dropped(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / cls / "x.png")
    with pytest.raises(MedauditError, match="empty class name") as err:
        load_dataset(str(root), classes=["a", "", "b"])
    assert err.value.param == "classes"


def test_walk_skips_hidden_and_dangling_and_does_not_descend_linked_folders(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _img(root / "a" / "p1" / "deep" / "x.png", 1)
    _img(root / "a" / ".cache" / "hidden.png", 2)  # inside a hidden folder: not a sample
    _img(root / "a" / ".hidden.png", 3)
    _img(root / "b" / "y.png", 4)
    (root / "a" / "gone.png").symlink_to(root / "nowhere.png")  # dangling: skipped
    (root / "b" / "linked").symlink_to(root / "a" / "p1", target_is_directory=True)  # not descended into
    monkeypatch.chdir(root)
    for spec in (str(root), "."):  # ids are relative to the root however it is spelled
        split = load_dataset(spec).split("all")
        assert split.sample_ids == ["a/p1/deep/x.png", "b/y.png"]
        assert [p.name for p in split.paths] == ["x.png", "y.png"] and all(p.is_file() for p in split.paths)


def test_nested_link_pointing_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    _img(outside / "secret.png")
    root = tmp_path / "data"
    _img(root / "a" / "x.png")
    _img(root / "b" / "x.png", 1)
    (root / "a" / "p1").mkdir()
    (root / "a" / "p1" / "y.png").symlink_to(outside / "secret.png")
    with pytest.raises(MedauditError, match="symlink pointing outside the data folder"):
        load_dataset(str(root))
