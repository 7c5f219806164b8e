"""Decode once: a never-hashed folder is hashed by the inference pass that decodes it anyway."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import medaudit.data.base as base
import medaudit.predict as predict_mod
from medaudit.data import load_dataset
from medaudit.data.hashcache import rehash
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import load_checkpoint
from medaudit.models.preprocess import Recipe, iter_batches
from medaudit.predict import predict_cached
from tests.test_data_hashcache import _age


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp_path / "cache"))


def _folder(root, n_per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(n_per_class):
                side = int(rng.integers(14, 30))
                Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(d / f"{k}.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB").save(root / "test" / "a" / "rgb.png")
    _age(root)
    return root


def _split(root):
    return load_dataset(str(root)).split("test")


@pytest.fixture
def plans(monkeypatch):
    """The scan plan each inference pass was given (None: the split was scanned first)."""
    seen = []
    real = predict_mod.run_inference

    def spy(*args, scan_plan=None, **kw):
        seen.append(scan_plan)
        return real(*args, scan_plan=scan_plan, **kw)

    monkeypatch.setattr(predict_mod, "run_inference", spy)
    return seen


def test_a_new_folder_is_decoded_once_and_scans_as_a_separate_pass_would(tmp_path, tiny_checkpoint, count_decodes):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    split = _split(root)
    preds, cached = predict_cached(loaded, split, split_name="test", dataset_spec=str(root), device="cpu")
    assert not cached
    assert sorted(count_decodes) == sorted(str(p) for p in split.paths)  # each file once: hashing rode the pass
    # The same hashes, pHashes, thumbnails, sizes and modes as a scan of its own (cache distrusted).
    with rehash():
        fresh = _split(root)
        fresh_scan = fresh._ensure_scan()
    assert split.content_hashes() == fresh_scan["hashes"]
    np.testing.assert_array_equal(split.perceptual_hashes()[0], fresh_scan["phashes"])
    np.testing.assert_array_equal(split.perceptual_hashes()[1], fresh_scan["thumbs"])
    assert split.image_stats() == (fresh_scan["sizes"], fresh_scan["modes"])
    assert preds.provenance["dataset_fingerprint"] == fresh.fingerprint()


def test_the_fused_pass_predicts_what_a_scan_first_pass_predicts(tmp_path, tiny_checkpoint, monkeypatch, plans):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    fused, _ = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu",
                              use_cache=False)
    assert plans[0] is not None, "the first pass over a new folder hashes as it predicts"
    monkeypatch.setattr(base.Split, "fused_scan_plan", lambda self, **kw: self._ensure_scan() and None)
    with rehash():
        plain, _ = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu",
                                  use_cache=False)
    np.testing.assert_array_equal(fused.probs, plain.probs)
    assert list(fused.sample_ids) == list(plain.sample_ids)
    assert fused.provenance["dataset_fingerprint"] == plain.provenance["dataset_fingerprint"]


def test_the_second_run_hashes_nothing_and_predicts_nothing(tmp_path, tiny_checkpoint, count_decodes):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    first, _ = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    count_decodes.clear()
    second, cached = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    assert cached and count_decodes == []  # the pass wrote the hash cache, and its entry is found by that fingerprint
    np.testing.assert_array_equal(first.probs, second.probs)


def test_touched_files_are_hashed_first_and_the_cached_pass_is_found(tmp_path, tiny_checkpoint, count_decodes):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    split = _split(root)
    predict_cached(loaded, split, split_name="test", dataset_spec=str(root), device="cpu")
    _age(root, seconds=50)  # every file's mtime changes, its pixels do not
    count_decodes.clear()
    again = _split(root)
    _, cached = predict_cached(loaded, again, split_name="test", dataset_spec=str(root), device="cpu")
    assert cached  # the paths were known, so the split was hashed first, and its fingerprint is unchanged
    assert sorted(count_decodes) == sorted(str(p) for p in again.paths)  # a scan's decode, no inference decode


def test_an_unreadable_image_fails_after_the_pass_named_and_nothing_is_cached(tmp_path, tiny_checkpoint, plans):
    root = _folder(tmp_path / "data")
    (root / "test" / "b" / "2.png").write_bytes(b"not a png")
    (root / "test" / "c" / "0.png").write_bytes(b"not a png either")
    loaded = load_checkpoint(tiny_checkpoint)
    with pytest.raises(MedauditError, match=r"2\.png.*\(and 1 more unreadable images in split 'test'\)"):
        predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    assert len(plans) == 1 and plans[0] is not None  # found by the pass, not by a scan before it
    assert not list((tmp_path / "cache" / "predictions").glob("*.npz"))


def test_no_fused_scan_where_the_pass_would_not_decode_the_full_image(tmp_path, tiny_checkpoint, plans):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    loaded.recipe = Recipe(**{**loaded.recipe.to_dict(), "jpeg_draft": True})  # drafted pixels hash differently
    predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    assert plans == [None]


def test_rehash_distrusts_the_hashes_not_the_predictions(tmp_path, tiny_checkpoint, plans, count_decodes):
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    count_decodes.clear()
    with rehash():
        split = _split(root)
        _, cached = predict_cached(loaded, split, split_name="test", dataset_spec=str(root), device="cpu")
    assert cached and plans == [plans[0]]  # the folder is known: hashed again first, and the pass was found
    assert sorted(count_decodes) == sorted(str(p) for p in split.paths)


def test_hashing_a_sample_of_the_split_keeps_the_rest_of_its_cache(tmp_path, tiny_checkpoint, plans):
    """A robustness sweep hashes a subset under the split's own name: the others must stay known and trusted."""
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    sample = _split(root)
    sample.subset(range(5), name=sample.name).content_hashes()
    again = _split(root)
    plan = again._plan_scan()
    assert plan.misses == [] and plan.n_unknown == 0
    _, cached = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    assert cached


def test_a_split_without_a_hash_cache_is_scanned_first_and_finds_its_pass(tmp_path, tiny_checkpoint, plans,
                                                                          monkeypatch):
    """DICOM splits have no persistent hash cache: every run scans, so the cached pass must still be found."""
    root = _folder(tmp_path / "data")
    loaded = load_checkpoint(tiny_checkpoint)
    monkeypatch.setattr(base.Split, "_hash_cache_tag", lambda self: None)
    first = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    second = predict_cached(loaded, _split(root), split_name="test", dataset_spec=str(root), device="cpu")
    assert plans == [None] and [first[1], second[1]] == [False, True]


def test_fused_scan_through_dataloader_workers(tmp_path):
    """The scan results cross the worker processes with their batch (collate) and land in the plan."""
    root = _folder(tmp_path / "data", n_per_class=8)
    split = _split(root)
    plan = split.fused_scan_plan()
    assert plan is not None and len(plan.misses) == len(split)
    recipe = Recipe(img_size=16, in_chans=1, mean=(0.5,), std=(0.25,))
    idx = [int(i) for _x, _y, b in iter_batches(split, recipe, 5, num_workers=2, scan=plan) for i in b]
    assert idx == list(range(len(split))) and plan.done.all()
    split.complete_scan(plan)
    with rehash():
        assert split.content_hashes() == _split(root).content_hashes()


def test_few_unknown_files_are_scanned_first(tmp_path):
    root = _folder(tmp_path / "data")
    _split(root).content_hashes()  # the hash cache now knows every path
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "test" / "b" / "new.png")  # 1 new of 20
    split = _split(root)
    assert split.fused_scan_plan() is None and split._scan is not None  # scanned there and then
    assert split.fused_scan_plan(cold_only=False) is None  # already scanned: nothing left to fuse
    plan = _split(root).fused_scan_plan(cold_only=False)  # no cache lookup to gain: fuse any miss
    assert plan is not None and plan.misses == [_split(root).sample_ids.index("test/b/new.png")]
