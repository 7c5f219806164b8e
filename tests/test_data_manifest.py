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


# -- metadata columns (issue 18) -------------------------------------------------------------------------------

SALT = b"medaudit-test-salt-0123456789"  # tests/conftest.py sets it as MEDAUDIT_SALT


def _hash(raw: str) -> str:
    """The patient hash computed here, independently of medaudit.phi: sha256(salt || 0 || id), 16 hex."""
    import hashlib

    return "p-" + hashlib.sha256(SALT + b"\0" + raw.encode()).hexdigest()[:16]


META = ("path,label,split,Patient_ID,Age,sex,site\n"
        "img/2.png,tumor,train,MRN-777,61.5,F,A\n"
        "img/0.png,normal,train,MRN-555,NA,,B\n"
        "img/1.png,tumor,train,MRN-555,45,M,A\n"
        "img/3.png,normal,test,MRN-777,,F,7\n")


def test_other_columns_are_typed_metadata_in_sample_order(images):
    ds = load_dataset(_csv(images, META))
    train, test = ds.split("train"), ds.split("test")
    assert train.sample_ids == ["img/0.png", "img/1.png", "img/2.png"]  # sorted; metadata follows the rows
    assert list(train.metadata) == ["Patient_ID", "Age", "sex", "site"]  # header order, names as written
    age = train.metadata["Age"]
    assert age.dtype == np.float64 and np.isnan(age[0]) and age[1:].tolist() == [45.0, 61.5]
    assert train.metadata["sex"].tolist() == ["", "M", "F"]  # "" = missing, never a guessed value
    # one kind per column over the whole file: 'site' is categorical in test too, where its only value is 7
    assert test.metadata["site"].dtype.kind == "U" and test.metadata["site"].tolist() == ["7"]
    assert test.metadata["Age"].dtype == np.float64 and np.isnan(test.metadata["Age"]).all()


def test_the_patient_column_is_hashed_at_load(images):
    ds = load_dataset(_csv(images, META))
    assert ds.patient_column == "Patient_ID"
    train = ds.split("train")
    assert train.metadata["Patient_ID"].tolist() == [_hash("MRN-555"), _hash("MRN-555"), _hash("MRN-777")]
    assert ds.split("test").metadata["Patient_ID"].tolist() == [_hash("MRN-777")]  # same patient, same hash
    held = np.concatenate([s.metadata["Patient_ID"] for s in ds.splits.values()]).tolist()
    assert not any("MRN" in v for v in held)
    # a subset (train/val carve) keeps the rows' metadata
    sub = train.subset([2, 0], "val")
    assert sub.metadata["Patient_ID"].tolist() == [_hash("MRN-777"), _hash("MRN-555")]


def test_a_numeric_patient_column_is_still_an_identifier(images):
    spec = _csv(images, "path,label,subject,age\nimg/0.png,a,17,40\nimg/1.png,b,,50\n")
    ds = load_dataset(spec, patient_col="Subject")
    assert ds.patient_column == "subject"
    assert ds.split("all").metadata["subject"].tolist() == [_hash("17"), ""]  # missing stays unknown
    assert ds.split("all").metadata["age"].dtype == np.float64


def test_without_metadata_columns_there_is_no_metadata(images):
    ds = load_dataset(_csv(images, "path,label\nimg/0.png,a\nimg/1.png,b\n"))
    assert ds.split("all").metadata is None and ds.patient_column is None
    ds = load_dataset(_csv(images, "path,label,age\nimg/0.png,a,3\nimg/1.png,b,4\n"))
    assert ds.patient_column is None and list(ds.split("all").metadata) == ["age"]


def test_a_patient_column_that_is_not_there_lists_the_columns(images):
    with pytest.raises(MedauditError, match=r"patient_col 'pid': .* has no such metadata column; its metadata "
                                            r"columns are: 'Patient_ID', 'Age', 'sex', 'site'") as err:
        load_dataset(_csv(images, META), patient_col="pid")
    assert err.value.param == "patient_col" and "\n" not in str(err.value)
    with pytest.raises(MedauditError, match="that is the manifest's label column") as err:
        load_dataset(_csv(images, META), patient_col="Label")
    assert err.value.param == "patient_col"


def test_a_patient_column_asked_of_data_without_metadata(tmp_path):
    for c in ("a", "b"):
        _img(tmp_path / "d" / c / "0.png", 1)
    with pytest.raises(MedauditError, match=r"patient_col 'patient_id': .* has no such column \(its metadata "
                                            r"columns: none\)") as err:
        load_dataset(str(tmp_path / "d"), patient_col="patient_id")
    assert err.value.param == "patient_col"


@pytest.mark.parametrize("column", ["name", "Patient Name", "birth_date", "DOB", "mrn", "ssn", "address", "phone"])
def test_identifying_columns_are_refused(images, column):
    spec = _csv(images, f"path,label,patient_id,{column}\nimg/0.png,a,1,X\nimg/1.png,b,2,Y\n")
    with pytest.raises(MedauditError, match=rf"remove column '{column}' from the manifest; medaudit never reads "
                                            "names, birth dates"):
        load_dataset(spec)


def test_a_second_patient_id_is_refused_unless_it_is_the_patient_column(images):
    spec = _csv(images, "path,label,patient_id,MRN\nimg/0.png,a,1,X\nimg/1.png,b,2,Y\n")
    with pytest.raises(MedauditError, match="remove column 'MRN'"):
        load_dataset(spec)  # patient_id is the patient column, so MRN would be carried in the clear
    with pytest.raises(MedauditError, match="remove column 'patient_id'"):
        load_dataset(spec, patient_col="mrn")
    spec = _csv(images, "path,label,MRN\nimg/0.png,a,X\nimg/1.png,b,Y\n")
    ds = load_dataset(spec, patient_col="mrn")
    assert ds.split("all").metadata["MRN"].tolist() == [_hash("X"), _hash("Y")]


@pytest.mark.parametrize("header, message", [
    ("path,label,age,Age", "column 'age' appears 2 times"),
    ("path,label,Label", "column 'label' appears 2 times"),
    ("path,label,,age", "column 3 has values but no name"),
])
def test_bad_metadata_headers(images, header, message):
    with pytest.raises(MedauditError, match=message):
        load_dataset(_csv(images, f"{header}\nimg/0.png,a,1,2\nimg/1.png,b,1,2\n"))


def test_an_empty_unnamed_column_is_ignored(images):
    # spreadsheets leave a trailing comma on some rows and not others
    ds = load_dataset(_csv(images, "path,label,age,\nimg/0.png,a,3,\nimg/1.png,b,4\n"))
    assert list(ds.split("all").metadata) == ["age"]
