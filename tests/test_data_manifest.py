"""CSV manifests: paths relative to the CSV, labels, splits, path escapes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from medaudit.data import load_dataset
from medaudit.errors import MedauditError

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)


def _csv(root, text):
    (root / "m.csv").write_text(text)
    return str(root / "m.csv")


@pytest.fixture
def images(tmp_path):
    for i in range(4):
        _img(tmp_path / "img" / f"{i}.png", 10 * i)
    return tmp_path


def test_names_and_splits(images):
    spec = _csv(images, "Path,Label,Split\nimg/0.png,normal,Training\n./img/1.png,tumor,train\nimg/2.png,tumor,Test\n")
    ds = load_dataset(spec)
    assert list(ds.splits) == ["train", "test"] and ds.class_names == ["normal", "tumor"]
    assert ds.split("train").sample_ids == ["img/0.png", "img/1.png"]
    assert ds.split("train").labels.tolist() == [0, 1]
    assert np.asarray(ds.split("test").load_image(0))[0, 0] == 20


def test_integer_labels_with_and_without_classes(images):
    spec = _csv(images, "path,label\nimg/0.png,10\nimg/1.png,2\nimg/2.png,2\n")
    ds = load_dataset(spec)
    assert list(ds.splits) == ["all"] and ds.class_names == ["2", "10"]  # numeric order
    assert ds.split("all").labels.tolist() == [1, 0, 0]
    spec = _csv(images, "path,label\nimg/0.png,1\nimg/1.png,0\nimg/2.png,benign\n")
    ds = load_dataset(spec, classes=["benign", "malignant"])
    assert ds.split("all").labels.tolist() == [1, 0, 0]
    spec = _csv(images, "path,label\nimg/0.png,2\nimg/1.png,0\n")
    with pytest.raises(MedauditError, match=r"label out of range: '2'"):
        load_dataset(spec, classes=["a", "b"])


@pytest.mark.parametrize(
    "row, message",
    [
        ("/etc/passwd,a", "absolute path"),
        ("../outside.png,a", "uses '..'"),
        ("img/../../outside.png,a", "uses '..'"),
        ("img/9.png,a", "not found"),
        ("img/0.png,a,holdout", "not train/val/test"),
        ("img/0.png,", "empty label"),
        ("img/1.png,a\nimg/1.png,a", "listed more than once"),
    ],
)
def test_bad_rows(images, row, message):
    header = "path,label,split" if row.count(",") == 2 and "\n" not in row else "path,label"
    spec = _csv(images, f"{header}\nimg/3.png,b{',train' if 'split' in header else ''}\n{row}\n")
    with pytest.raises(MedauditError, match=message):
        load_dataset(spec)


def test_symlink_outside_refused(tmp_path):
    inner = tmp_path / "data"
    _img(inner / "a.png", 1)
    _img(tmp_path / "secret.png", 2)
    os.symlink(tmp_path / "secret.png", inner / "link.png")
    spec = _csv(inner, "path,label\na.png,x\nlink.png,y\n")
    with pytest.raises(MedauditError, match="symlink pointing outside"):
        load_dataset(spec)


def test_bad_header_and_empty(images):
    with pytest.raises(MedauditError, match="header must name columns 'path' and 'label'"):
        load_dataset(_csv(images, "file,class\nimg/0.png,a\n"))
    with pytest.raises(MedauditError, match="no rows"):
        load_dataset(_csv(images, "path,label\n"))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_a_fifo_given_as_data_is_refused_instead_of_hanging(tmp_path, suffix):
    import os

    from medaudit.data import load_dataset

    fifo = tmp_path / f"labels{suffix}"
    os.mkfifo(fifo)
    with pytest.raises(MedauditError, match="not a regular file"):
        load_dataset(str(fifo))
