"""Synthetic demo data: layout, determinism, lesion regions, safety of the output folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medaudit.data import load_dataset, make_demo_dataset
from medaudit.data.demo import (
    AGE,
    DEMO_CLASSES,
    DEMO_SITES,
    FEMALE,
    LESION_REGIONS,
    MANIFEST,
    MANIFEST_COLUMNS,
    SLICES_PER_PATIENT,
    draw_patient,
    render_slice,
)
from medaudit.errors import MedauditError


def test_layout_counts_and_determinism(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_train=3, n_val=1, n_test=2, size=32, seed=7)
    b = make_demo_dataset(tmp_path / "b", n_train=5, n_val=1, n_test=2, size=32, seed=7)
    ds = load_dataset(str(a))
    assert ds.class_names == list(DEMO_CLASSES) and ds.task == "multiclass"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 12, "val": 4, "test": 8}
    assert ds.split("test").class_counts() == dict.fromkeys(DEMO_CLASSES, 2)
    im = ds.split("train").load_image(0)
    assert (im.mode, im.size) == ("L", (32, 32))
    # test images depend only on (seed, split, class, index): more train images leave test unchanged
    for sid in ds.split("test").sample_ids:
        assert (a / sid).read_bytes() == (b / sid).read_bytes()
    assert ds.split("test").fingerprint() == load_dataset(str(b)).split("test").fingerprint()
    c = make_demo_dataset(tmp_path / "c", n_train=3, n_val=1, n_test=2, size=32, seed=8)
    assert load_dataset(str(c)).fingerprint() != ds.fingerprint()


def test_docstring_regions_match_code():
    import medaudit.data.demo as demo

    for cls, box in LESION_REGIONS.items():
        assert f"``{cls}``".ljust(16) + str(tuple(box)) in demo.__doc__, cls


def test_lesions_inside_documented_regions_and_visible():
    size = 64
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    for ci, cls in enumerate(DEMO_CLASSES):
        for i in range(15):
            img, mask = render_slice(np.random.default_rng([3, ci, i]), cls, size)
            assert img.dtype == np.uint8 and img.shape == (size, size)
            if cls == "notumor":
                assert not mask.any()
                continue
            x0, y0, x1, y1 = LESION_REGIONS[cls]
            box = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
            assert mask.sum() >= 10 and not (mask & ~box).any(), (cls, i)
            # visible: lesion pixels differ from the surrounding box by a clear margin (grey levels)
            core = mask if cls != "glioma" else mask & (img > np.median(img[mask]))
            assert abs(float(img[core].mean()) - float(np.median(img[box & ~mask]))) > 30, (cls, i)


def test_output_folder_rules(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_train=1, n_val=1, n_test=1, size=16)
    stamp = (root / "train" / "glioma" / "glioma_000.png").stat().st_mtime_ns
    assert make_demo_dataset(root, n_train=1, n_val=1, n_test=1, size=16) == root  # same params: reused
    assert (root / "train" / "glioma" / "glioma_000.png").stat().st_mtime_ns == stamp
    make_demo_dataset(root, n_train=2, n_val=1, n_test=1, size=16)  # new params: rewritten
    assert len(load_dataset(str(root)).split("train")) == 8
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "precious.txt").write_text("x")
    with pytest.raises(MedauditError, match="not empty"):
        make_demo_dataset(tmp_path / "user")
    with pytest.raises(MedauditError, match="at least 1 image"):
        make_demo_dataset(tmp_path / "e", n_test=0)


def test_a_small_cnn_learns_the_demo_data(tmp_path):
    """The demo data carries learnable class evidence (chance is 0.25): a tiny ResNet trained for a
    few seconds classifies the validation slices of site A (clear lesions) with accuracy >= 0.8.
    Site B's faint lesions are the planted problem, so the claim is about site A."""
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import run_inference
    from medaudit.train.config import TrainConfig
    from medaudit.train.loop import train

    root = make_demo_dataset(tmp_path / "d", n_train=15, n_val=10, n_test=1, size=48)
    ds = load_dataset(str(root / MANIFEST))
    cfg = TrainConfig(arch="test_resnet", img_size=48, epochs=12, batch_size=16, lr=1e-2, device="cpu", seed=0,
                      augment="basic")
    res = train(ds, cfg, tmp_path / "m.pt", progress=False, log=lambda s: None)
    assert res.history[0]["val_acc"] < 0.5, res.history
    val = ds.split("val")
    p = run_inference(load_checkpoint(tmp_path / "m.pt"), val, split_name="val", split_fingerprint=None,
                      dataset_spec="demo", device="cpu")
    right = p.probs.argmax(1) == p.y_true
    site = val.metadata["site"]
    acc = {s: float(right[site == s].mean()) for s in DEMO_SITES}
    assert acc["A"] >= 0.8, (acc, [h["val_acc"] for h in res.history])


# -- patients, sites, sex and age (issue 18) ------------------------------------------------------


def _manifest(root):
    import csv

    with open(root / MANIFEST, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_manifest_loads_with_typed_metadata_and_hashed_patients(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_train=6, n_val=3, n_test=5, size=16, seed=1)
    rows = _manifest(root)
    assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == 4 * (6 + 3 + 5)
    ds = load_dataset(str(root / MANIFEST))
    folder = load_dataset(str(root))
    assert ds.patient_column == "patient_id" and ds.class_names == folder.class_names
    for name, split in ds.splits.items():  # the same samples, labels and images as the folder layout
        assert split.sample_ids == folder.split(name).sample_ids
        assert np.array_equal(split.labels, folder.split(name).labels)
        md = split.metadata
        assert set(md) == {"patient_id", "sex", "age", "site"}
        assert md["age"].dtype == np.float64 and np.all((md["age"] >= 18) & (md["age"] <= 90))
        assert np.array_equal(md["age"], np.round(md["age"]))  # whole years
        assert md["sex"].dtype.kind == "U" and set(md["sex"]) <= {"F", "M"}
        assert md["site"].dtype.kind == "U" and set(md["site"]) <= set(DEMO_SITES)
        # raw ids never leave the loader: only salted hashes
        assert all(p.startswith("p-") and len(p) == 18 for p in md["patient_id"])
        assert not any(r["patient_id"] in set(md["patient_id"]) for r in rows)
    assert ds.fingerprint() == folder.fingerprint()


def test_each_patient_has_several_slices_of_one_class_in_one_split(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_train=20, n_val=8, n_test=10, size=16)
    rows = _manifest(root)
    by_patient: dict[str, list[dict]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    lo, hi = SLICES_PER_PATIENT
    # the last patient of a (split, class) may lose slices to the fixed count per class; no other
    last = {(r["split"], r["label"]): r["patient_id"] for r in rows}
    for pid, slices in by_patient.items():
        assert len({(r["split"], r["label"], r["sex"], r["age"], r["site"]) for r in slices}) == 1, pid
        n = len(slices)
        assert lo <= n <= hi or (pid in last.values() and n < lo), (pid, n)
    sizes = [len(s) for s in by_patient.values()]
    assert np.mean(sizes) >= 2.5 and len(set(sizes)) > 1
    # no leakage by default, and the audit's check agrees
    from medaudit.data.inspect import patient_leakage

    ds = load_dataset(str(root / MANIFEST))
    assert patient_leakage(ds.splits, ds.patient_column)["leakage"] is False
    # sites: a quarter of training patients, half of the test patients are site B (blocks of 4)
    share = {s: np.mean([v[0]["site"] == "B" for v in by_patient.values() if v[0]["split"] == s])
             for s in ("train", "test")}
    assert 0.15 <= share["train"] <= 0.35 and 0.4 <= share["test"] <= 0.6, share


def test_planted_leakage_reuses_training_patients_in_test(tmp_path):
    from medaudit.data.inspect import patient_leakage

    root = make_demo_dataset(tmp_path / "d", n_train=6, n_val=2, n_test=6, size=16, leak_patients=1)
    ds = load_dataset(str(root / MANIFEST))
    leak = patient_leakage(ds.splits, ds.patient_column)
    assert leak["leakage"] is True and leak["across"]["train/test"]["n"] == 4  # one patient per class
    assert leak["across"]["train/val"]["n"] == 0 and leak["across"]["val/test"]["n"] == 0
    rows = {(r["split"], r["patient_id"]): r for r in _manifest(root)}
    for (split, pid), r in rows.items():
        if split == "test" and ("train", pid) in rows:  # the same person: same sex, age and site
            t = rows[("train", pid)]
            assert (r["sex"], r["age"], r["site"], r["label"]) == (t["sex"], t["age"], t["site"], t["label"])
    # the leaked test slices are new images of that patient, not copies of training files
    train_bytes = {p.read_bytes() for p in (root / "train").rglob("*.png")}
    assert not any(p.read_bytes() in train_bytes for p in (root / "test").rglob("*.png"))
    with pytest.raises(MedauditError, match="leak_patients"):
        make_demo_dataset(tmp_path / "e", leak_patients=-1)


def test_slices_of_one_patient_are_correlated(tmp_path):
    """Slices share the patient's head and lesion: closer to each other than to other patients' slices."""
    root = make_demo_dataset(tmp_path / "d", n_train=1, n_val=1, n_test=30, size=32)
    rows = [r for r in _manifest(root) if r["split"] == "test" and r["label"] == "meningioma"]
    x = np.stack([np.asarray(Image.open(root / r["path"]), np.float64).ravel() for r in rows])
    pid = np.array([r["patient_id"] for r in rows])
    d = ((x[:, None, :] - x[None, :, :]) ** 2).mean(-1)  # mean squared difference of each pair
    same = pid[:, None] == pid[None, :]
    off = ~np.eye(len(rows), dtype=bool)
    within, between = d[same & off], d[~same]
    assert within.mean() < 0.7 * between.mean(), (within.mean(), between.mean())


def _lesion_cnr(site: str, n: int = 40, size: int = 64) -> np.ndarray:
    """Contrast-to-noise of each rendered lesion: (lesion mean - surrounding brain median) / noise sd."""
    from scipy import ndimage

    out = []
    for i in range(n):
        cls = ("meningioma", "pituitary", "glioma")[i % 3]
        rng = np.random.default_rng([11, i])
        img, mask = render_slice(rng, cls, size, patient=draw_patient(rng, cls, site))
        img = img.astype(np.float64)
        core = ndimage.binary_erosion(mask, iterations=1) if cls != "glioma" else mask & (img > np.median(img[mask]))
        ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask, iterations=1)
        # noise sd from the background air (constant before noise, far from the head)
        air = img[:4, :4].ravel().tolist() + img[:4, -4:].ravel().tolist()
        out.append((img[core].mean() - np.median(img[ring])) / max(np.std(air), 1.0))
    return np.asarray(out)


def test_site_b_lesions_are_fainter_and_noisier():
    """The planted acquisition difference: site B's lesion contrast-to-noise is far below site A's."""
    cnr_a, cnr_b = _lesion_cnr("A"), _lesion_cnr("B")
    assert np.median(cnr_b) < 0.35 * np.median(cnr_a), (np.median(cnr_a), np.median(cnr_b))
    assert np.median(cnr_b) > 0.5  # fainter, not gone: still disease to find
    # the Mann-Whitney test agrees that the difference is not chance
    from scipy.stats import mannwhitneyu

    assert mannwhitneyu(cnr_a, cnr_b, alternative="greater").pvalue < 1e-6


def test_patient_draws_have_plausible_sex_and_age():
    n = 2000
    for cls in DEMO_CLASSES:
        ps = [draw_patient(np.random.default_rng([5, k]), cls) for k in range(n)]
        female = sum(p.sex == "F" for p in ps)
        ages = np.array([p.age for p in ps])
        from scipy.stats import binomtest

        assert binomtest(female, n, FEMALE[cls]).pvalue > 1e-3, (cls, female)
        assert ages.min() >= 18 and ages.max() <= 90
        mean, sd = AGE[cls]
        assert abs(ages.mean() - mean) < 4 * sd / np.sqrt(n) + 1.0, (cls, ages.mean())
    assert FEMALE["meningioma"] > FEMALE["glioma"]  # meningioma is more common in women


def test_same_arguments_give_identical_files_and_a_larger_test_only_adds_images(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_train=2, n_val=1, n_test=4, size=16, seed=3)
    b = make_demo_dataset(tmp_path / "b", n_train=2, n_val=1, n_test=4, size=16, seed=3)
    c = make_demo_dataset(tmp_path / "c", n_train=2, n_val=1, n_test=9, size=16, seed=3)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    rows_a, rows_c = _manifest(a), {r["path"]: r for r in _manifest(c)}
    for r in rows_a:  # image index i of a split and class keeps its pixels, patient and metadata
        assert (a / r["path"]).read_bytes() == (c / r["path"]).read_bytes()
        assert r == rows_c[r["path"]]
