"""data/corruptions.py: the registry, determinism, references, and the corrupted split the cache keys."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medaudit.data.base import Split
from medaudit.data.corruptions import (
    CORRUPTION_VERSION,
    CORRUPTIONS,
    CorruptedSplit,
    check_severities,
    corrupt_batch,
    corrupt_image,
    resolve_corruptions,
    sample_seed,
)
from medaudit.errors import MedauditError


def _scan(side: int = 32, rgb: bool = False) -> np.ndarray:
    """A smooth gradient with a bright disk: structure for blur, rotation and contrast to act on."""
    v, u = np.mgrid[0:side, 0:side] / (side - 1)
    img = 60 + 100 * u + 80 * ((u - 0.5) ** 2 + (v - 0.6) ** 2 < 0.06)
    img = img.astype(np.uint8)
    return np.stack([img, img // 2 + 40, 255 - img], axis=-1) if rgb else img


def test_registry_has_the_issue_corruptions_at_five_severities():
    needed = {"gaussian_noise", "speckle_noise", "shot_noise", "gaussian_blur", "motion_blur", "contrast_down",
              "contrast_up", "brightness", "gamma", "jpeg", "pixelate", "bias_field", "rotation"}
    assert needed <= set(CORRUPTIONS)
    assert all(len(c.levels) == 5 for c in CORRUPTIONS.values())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_corruption_keeps_shape_is_deterministic_and_grows_with_severity(name):
    for img in (_scan(), _scan(rgb=True), _scan(8)):
        a = corrupt_image(img, name, 3, "s/1")
        assert a.shape == img.shape and a.dtype == np.uint8
        assert np.array_equal(a, corrupt_image(img, name, 3, "s/1"))
    img = _scan()
    err = [np.abs(corrupt_image(img, name, s, "s/1").astype(float) - img).mean() for s in (1, 5)]
    assert 0 < err[0] < err[1], err


def test_draws_depend_on_the_sample_and_the_seed_not_on_the_process():
    img = _scan()
    a = corrupt_image(img, "gaussian_noise", 2, "x/1")
    assert not np.array_equal(a, corrupt_image(img, "gaussian_noise", 2, "x/2"))
    assert not np.array_equal(a, corrupt_image(img, "gaussian_noise", 2, "x/1", seed=1))
    # The seed is a sha256 of the documented key (stable across processes), never Python's salted hash().
    key = f"medaudit.corruptions/{CORRUPTION_VERSION}|0|gaussian_noise|2|x/1".encode()
    assert sample_seed("x/1", "gaussian_noise", 2) == int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    rng = np.random.default_rng(sample_seed("x/1", "gaussian_noise", 2))
    noise = rng.normal(0.0, CORRUPTIONS["gaussian_noise"].levels[1], size=img.shape + (1,))[..., 0]
    hand = np.clip(np.rint((img.astype(np.float32) / 255 + noise.astype(np.float32)) * 255), 0, 255)
    assert np.abs(a.astype(float) - hand).max() <= 1


def test_references_scipy_blur_pil_jpeg_and_contrast_by_hand():
    img = _scan(64)
    # Gaussian blur: sigma 3 px at 224 px is 3 * 64 / 224 px here; torchvision's kernel vs scipy's filter.
    sigma = 3.0 * 64 / 224
    ref = ndimage.gaussian_filter(img.astype(float), sigma, mode="reflect", truncate=3.0)
    ours = corrupt_image(img, "gaussian_blur", 3, "a").astype(float)
    assert np.abs(ours - ref)[8:-8, 8:-8].max() <= 2.0
    # Pixelate to 0.25 of the side (severity 4): box means of 4x4 blocks, repeated.
    blocks = img[:64, :64].astype(float).reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert np.abs(corrupt_image(img, "pixelate", 4, "a") - np.kron(blocks, np.ones((4, 4)))).max() <= 1
    # Contrast factor 0.45 (severity 3) around the image mean.
    x = img.astype(np.float32) / 255
    hand = np.clip(np.rint(((x - x.mean()) * 0.45 + x.mean()) * 255), 0, 255)
    assert np.abs(corrupt_image(img, "contrast_down", 3, "a") - hand).max() <= 1


def test_names_and_severities_are_checked():
    assert resolve_corruptions("default") == tuple(CORRUPTIONS)
    assert resolve_corruptions("jpeg, rotation,jpeg") == ("jpeg", "rotation")
    with pytest.raises(MedauditError, match="unknown corruption.*'fog'.*valid: default, gaussian_noise") as e:
        resolve_corruptions("jpeg,fog")
    assert e.value.param == "robustness"
    with pytest.raises(MedauditError, match="among 1, 2, 3, 4, 5"):
        check_severities([0, 3])


def _array_split(n: int = 12, side: int = 16) -> Split:
    rng = np.random.default_rng(0)
    return Split(name="test", sample_ids=[f"test/{i}" for i in range(n)], labels=rng.integers(0, 3, n),
                 class_names=["a", "b", "c"], array=rng.integers(0, 256, (n, side, side), dtype=np.uint8))


def test_corrupted_split_fingerprint_and_lazy_pixels():
    base = _array_split()
    view = CorruptedSplit(base, "jpeg", 2)
    prints = {view.fingerprint(), base.fingerprint(), CorruptedSplit(base, "jpeg", 3).fingerprint(),
              CorruptedSplit(base, "gamma", 2).fingerprint(), CorruptedSplit(base, "jpeg", 2, seed=1).fingerprint()}
    assert len(prints) == 5
    assert view.fingerprint() == CorruptedSplit(base, "jpeg", 2).fingerprint()
    assert view._array is None  # the fingerprint needs no corrupted pixels (a cache hit computes none)
    assert np.array_equal(view.array, corrupt_batch(base.array, base.sample_ids, "jpeg", 2))
    assert np.array_equal(np.asarray(view.load_image(3)), corrupt_image(base.array[3], "jpeg", 2, "test/3"))


def test_file_backed_split_corrupts_each_decoded_image(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(_scan(16 + 4 * i, rgb=True)).save(p)  # sizes differ: no stacking needed
        paths.append(p)
    base = Split(name="test", sample_ids=[p.name for p in paths], labels=np.array([0, 1, 0]), class_names=["a", "b"],
                 paths=paths)
    view = CorruptedSplit(base, "rotation", 4)
    assert view.array is None
    for i in range(3):
        decoded = np.asarray(base.load_image(i))
        assert np.array_equal(np.asarray(view.load_image(i)), corrupt_image(decoded, "rotation", 4, paths[i].name))


def test_predict_cached_keys_each_corruption_and_severity(tiny_checkpoint, tmp_path):
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import predict_cached

    ld = load_checkpoint(tiny_checkpoint)
    base = _array_split(8)
    kw = dict(split_name="test", dataset_spec="mem", cache_dir=tmp_path, device="cpu")
    p1, hit1 = predict_cached(ld, CorruptedSplit(base, "gaussian_noise", 5), **kw)
    p2, hit2 = predict_cached(ld, CorruptedSplit(base, "gaussian_noise", 5), **kw)
    _, hit3 = predict_cached(ld, CorruptedSplit(base, "gaussian_noise", 1), **kw)
    clean, _ = predict_cached(ld, base, **kw)
    assert (hit1, hit2, hit3) == (False, True, False)
    assert np.array_equal(p1.probs, p2.probs)
    assert not np.allclose(p1.probs, clean.probs)  # the model saw the corrupted pixels
