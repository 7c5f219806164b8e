"""Metadata in predictions (issue 18): the file carries it, exactly; align/subset keep it with its samples;
the checksum covers it; predict attaches the split's current metadata outside the cache; no raw patient id
reaches the .npz, the CSV or the cache."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from medaudit.data import load_dataset
from medaudit.errors import MedauditError
from medaudit.predictions import Predictions, PredictionsFileError, align

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


def make(n=5, seed=0, metadata=None, patient="patient"):
    rng = np.random.default_rng(seed)
    if metadata is None:
        metadata = {
            "patient": np.array([f"p-{k:016x}" for k in (1, 1, 2, 3, 3, 4, 5, 6)[:n]]),
            "age": np.array([45.0, np.nan, 61.5, 0.1, 1e-300, 7, 8, 9][:n]),
            "site": np.array(["São Paulo", "", "医院", "B", "B", "A", "A", "A"][:n]),
        }
    return Predictions(model_name="m", class_names=["a", "b", "c"], task="multiclass",
                       sample_ids=[f"s{i}" for i in range(n)], y_true=rng.integers(0, 3, n),
                       probs=rng.dirichlet(np.ones(3), size=n), provenance={"split": "test"}, metadata=metadata,
                       patient_column=patient)


def _same_metadata(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def test_round_trip_is_exact_and_readable_without_medaudit(tmp_path):
    p = make()
    path = p.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(str(f["header"]))
        assert header["metadata"] == {
            "columns": [{"name": "patient", "kind": "categorical", "array": "meta__0"},
                        {"name": "age", "kind": "numeric", "array": "meta__1"},
                        {"name": "site", "kind": "categorical", "array": "meta__2"}],
            "patient_column": "patient"}
        assert f["meta__1"].dtype == np.float64 and f["meta__2"].tolist()[2] == "医院"
    for checksum in (False, True):
        q = Predictions.load(p.save(tmp_path / f"q{checksum}.npz", checksum=checksum))
        assert _same_metadata(q.metadata, p.metadata) and q.patient_column == "patient"
        assert np.isnan(q.metadata["age"][1]) and q.metadata["age"][4] == 1e-300


def _legacy_checksum(header: str, arrays: dict) -> str:
    """The checksum as medaudit wrote it before metadata existed (header, then the three arrays)."""
    h = hashlib.sha256(header.encode())
    for name in ("sample_ids", "y_true", "probs"):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a)
    return f"sha256:{h.hexdigest()}"


def test_without_metadata_the_file_is_as_before(tmp_path):
    p = make(metadata={}, patient=None)
    assert p.metadata is None
    path = p.save(tmp_path / "p.npz", checksum=True)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["checksum", "header", "probs", "sample_ids", "y_true"]
        assert "metadata" not in json.loads(str(f["header"]))
        # existing cache entries keep verifying
        assert str(f["checksum"]) == _legacy_checksum(str(f["header"]), {k: f[k] for k in f.files})
    assert Predictions.load(path).metadata is None


def test_a_file_written_without_medaudit_and_without_metadata_loads(tmp_path):
    header = json.dumps({"format": "medaudit.predictions/2", "model_name": "x", "class_names": ["a", "b"],
                         "task": "binary"})
    np.savez(tmp_path / "old.npz", sample_ids=np.array(["s0", "s1"]), y_true=np.array([0, 1]),
             probs=np.array([[0.9, 0.1], [0.2, 0.8]]), header=np.array(header))
    q = Predictions.load(tmp_path / "old.npz")
    assert q.metadata is None and q.patient_column is None


def _rezip(src, dst, member, array):
    """Copy the .npz with one member's array replaced (a valid zip: only a checksum can tell)."""
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[member] = array
    np.savez(dst, **arrays)


@pytest.mark.parametrize("member, value", [("meta__1", np.array([45.0, np.nan, 61.5, 0.1, 2.0])),
                                           ("meta__0", np.array(["p-1", "p-1", "p-2", "p-3", "p-9"]))])
def test_the_checksum_covers_metadata(tmp_path, member, value):
    path = make().save(tmp_path / "p.npz", checksum=True)
    _rezip(path, tmp_path / "altered.npz", member, value)
    with pytest.raises(PredictionsFileError, match="do not match the checksum"):
        Predictions.load(tmp_path / "altered.npz")


@pytest.mark.parametrize("change, message", [
    (lambda h, a: a.pop("meta__2"), "array 'meta__2', which the file lacks"),
    (lambda h, a: h["metadata"]["columns"][1].update(kind="categorical"), "is categorical in the header but holds"),
    (lambda h, a: h["metadata"]["columns"][1].update(kind="date"), "kind 'date'"),
    (lambda h, a: h["metadata"].update(patient_column="mrn"), "patient column 'mrn', which is not"),
    (lambda h, a: h["metadata"].update(columns="age"), "metadata block is malformed"),
    (lambda h, a: a.update(meta__1=np.arange(4.0)), r"'age' has shape \(4,\), expected \(5,\)"),
])
def test_a_damaged_metadata_block_is_a_one_line_error(tmp_path, change, message):
    path = make().save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays.pop("header")))
    change(header, arrays)
    np.savez(tmp_path / "bad.npz", header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(PredictionsFileError, match=message) as err:
        Predictions.load(tmp_path / "bad.npz")
    assert "\n" not in str(err.value)


def test_metadata_that_cannot_be_stored_is_refused():
    with pytest.raises(MedauditError, match="holds object values"):
        make(metadata={"x": np.array([None, "a", "b", "c", "d"], dtype=object)}, patient=None)
    with pytest.raises(MedauditError, match=r"has shape \(4,\), expected \(5,\)"):
        make(metadata={"x": np.arange(4.0)}, patient=None)
    with pytest.raises(MedauditError, match="patient column 'age' is not a text metadata column"):
        make(patient="age")
    with pytest.raises(MedauditError, match="patient column 'pid'"):
        make(patient="pid")
    ints = make(metadata={"n": np.arange(5)}, patient=None)
    assert ints.metadata["n"].dtype == np.float64  # integers are numbers: stored as float64


def test_align_and_subset_keep_metadata_with_its_samples():
    a = make()
    perm = np.array([3, 0, 4, 1, 2])
    b = a.subset(perm)
    assert b.sample_ids.tolist() == ["s3", "s0", "s4", "s1", "s2"]
    assert b.metadata["site"].tolist() == [a.metadata["site"][i] for i in perm]
    b.model_name = "b"
    out = align([a, b])
    assert out[1].sample_ids.tolist() == a.sample_ids.tolist()
    assert _same_metadata(out[1].metadata, a.metadata) and out[1].patient_column == "patient"
    assert np.array_equal(out[1].probs, a.probs)


def test_csv_carries_the_metadata_columns(tmp_path):
    p = make(metadata={"age": np.array([45.0, np.nan, 61.5, 0.1, 120.0]),
                       "y_true": np.array(["x", "", "y", "z", "w"])}, patient=None)
    rows = list(csv.reader(open(p.to_csv(tmp_path / "p.csv"), encoding="utf-8")))
    assert rows[0] == ["sample_id", "y_true", "y_pred", "p_a", "p_b", "p_c", "age", "meta_y_true"]
    assert [r[6] for r in rows[1:]] == ["45", "", "61.5", "0.1", "120"]  # exact, missing left empty
    assert [r[7] for r in rows[1:]] == ["x", "", "y", "z", "w"]
    assert [float(r[6]) for r in rows[1:] if r[6]] == [45.0, 61.5, 0.1, 120.0]


def test_multilabel_csv_carries_metadata(tmp_path):
    p = Predictions(model_name="m", class_names=["x", "y"], task="multilabel", sample_ids=["a", "b"],
                    y_true=np.array([[1, 0], [1, 1]]), probs=np.array([[0.9, 0.2], [0.4, 0.7]]),
                    metadata={"sex": np.array(["F", "M"])})
    rows = list(csv.reader(open(p.to_csv(tmp_path / "m.csv"))))
    assert rows[0][-1] == "sex" and [r[-1] for r in rows[1:]] == ["F", "M"]


# -- from a manifest through predict -----------------------------------------------------------------------------

RAW_IDS = ("MRN-0001", "MRN-0002", "MRN-0003")


def _manifest(root, ages):
    rng = np.random.default_rng(0)
    lines = ["path,label,patient_id,age,sex"]
    for i in range(9):
        f = root / "img" / f"{i}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(f)
        lines.append(f"img/{i}.png,{'abc'[i % 3]},{RAW_IDS[i // 3]},{ages[i]},{'FM'[i % 2]}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    return str(root / "m.csv")


def _member_bytes(path) -> bytes:
    """Every member of the zip, decompressed (the .npz is compressed, so its raw bytes prove nothing)."""
    with zipfile.ZipFile(path) as z:
        return b"".join(z.read(n) for n in z.namelist())


def _raw_ids_absent(blob: bytes) -> bool:
    forms = [r.encode(enc) for r in RAW_IDS for enc in ("utf-8", "utf-32-le")]  # unicode arrays are UTF-32
    return not any(f in blob for f in forms)


def test_predict_carries_the_manifests_metadata_and_no_raw_id(tiny_checkpoint, tmp_path):
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import predict_cached, run_inference

    ages = [30, 41, "", 52, 63, 70, 18, 25, 99]
    ds = load_dataset(_manifest(tmp_path, ages), classes=["a", "b", "c"])
    split = ds.split("all")
    loaded = load_checkpoint(tiny_checkpoint)
    cache = tmp_path / "cache"
    preds, cached = predict_cached(loaded, split, split_name="all", dataset_spec="m.csv", cache_dir=cache,
                                   device="cpu", patient_column=ds.patient_column)
    assert not cached and preds.patient_column == "patient_id"
    assert _same_metadata(preds.metadata, split.metadata)
    assert preds.metadata["age"].tolist()[:2] == [30.0, 41.0] and np.isnan(preds.metadata["age"][2])

    npz = preds.save(tmp_path / "out.npz")
    text = preds.to_csv(tmp_path / "out.csv").read_text(encoding="utf-8")
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1
    for blob in (_member_bytes(npz), text.encode(), _member_bytes(entries[0])):
        assert _raw_ids_absent(blob)
    assert split.metadata["patient_id"][0] in text  # the CSV holds the hash
    # the cache entry is the inference result only: no metadata, not even the hashes
    with np.load(entries[0], allow_pickle=False) as f:
        assert not any(k.startswith("meta__") for k in f.files) and "metadata" not in str(f["header"])
    assert not Predictions.load(entries[0]).metadata

    # a subset pass (cam --ids) gets the metadata of its samples, in its order
    sub = run_inference(loaded, split, split_name="all", split_fingerprint=None, dataset_spec="m.csv", device="cpu",
                        sample_ids=["img/5.png", "img/1.png"], patient_column="patient_id")
    assert sub.metadata["sex"].tolist() == ["M", "M"] and sub.metadata["age"].tolist() == [70.0, 41.0]


def test_a_cache_hit_gets_the_splits_current_metadata(tiny_checkpoint, tmp_path, monkeypatch):
    import medaudit.predict as pr
    from medaudit.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    calls = []
    orig = pr.run_inference
    monkeypatch.setattr(pr, "run_inference", lambda *a, **k: calls.append(1) or orig(*a, **k))
    cache = tmp_path / "cache"
    ds1 = load_dataset(_manifest(tmp_path, [30, 41, "", 52, 63, 70, 18, 25, 99]), classes=["a", "b", "c"])
    p1, c1 = pr.predict_cached(loaded, ds1.split("all"), split_name="all", dataset_spec="m.csv", cache_dir=cache,
                               device="cpu", patient_column=ds1.patient_column)
    ds2 = load_dataset(_manifest(tmp_path, [31, 42, 43, 52, 63, 70, 18, 25, ""]), classes=["a", "b", "c"])
    p2, c2 = pr.predict_cached(loaded, ds2.split("all"), split_name="all", dataset_spec="m.csv", cache_dir=cache,
                               device="cpu", patient_column=ds2.patient_column)
    assert (c1, c2) == (False, True) and len(calls) == 1  # metadata is not part of the cache key
    assert len(list(cache.glob("*.npz"))) == 1
    assert np.array_equal(p1.probs, p2.probs)
    assert p2.metadata["age"][:3].tolist() == [31.0, 42.0, 43.0] and np.isnan(p2.metadata["age"][8])
    assert p2.patient_column == "patient_id"
    # without a patient column named, none is recorded; the columns still come with the samples
    p3, c3 = pr.predict_cached(loaded, ds2.split("all"), split_name="all", dataset_spec="m.csv", cache_dir=cache,
                               device="cpu")
    assert c3 and p3.patient_column is None and "patient_id" in p3.metadata


def test_medaudit_predict_writes_the_metadata_and_the_patient_column(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from medaudit.cli import main

    spec = _manifest(tmp_path, [30, 41, "", 52, 63, 70, 18, 25, 99])
    out, out_csv = tmp_path / "p.npz", tmp_path / "p.csv"
    res = CliRunner().invoke(main, ["predict", "--model", str(tiny_checkpoint), "--data", spec, "--split", "all",
                                    "--classes", "a,b,c", "--device", "cpu", "-o", str(out), "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    p = Predictions.load(out)
    assert p.patient_column == "patient_id" and list(p.metadata) == ["patient_id", "age", "sex"]
    assert _raw_ids_absent(_member_bytes(out)) and _raw_ids_absent(out_csv.read_bytes())
