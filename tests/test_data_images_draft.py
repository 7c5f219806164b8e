"""JPEG draft decoding (``decode_image(draft_min_side=...)``): sizes, modes, tolerance, when it applies."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medaudit.data.images import decode_image
from medaudit.errors import MedauditError


def _smooth(h: int, w: int, rgb: bool) -> np.ndarray:
    """A smooth test picture (gradients and a disc), like a scan rather than noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = 40 + 150 * (np.hypot(xx - w / 2, yy - h / 2) < 0.35 * min(h, w)) + 60 * xx / w
    g = np.clip(g, 0, 255).astype(np.uint8)
    return np.stack([g, np.flipud(g), (0.8 * g).astype(np.uint8)], -1) if rgb else g


@pytest.fixture(params=["L", "RGB"])
def jpeg(request, tmp_path):
    path = tmp_path / f"img_{request.param}.jpg"
    Image.fromarray(_smooth(48, 64, request.param == "RGB")).save(path, quality=95)
    return path, request.param


@pytest.mark.parametrize(("side", "size"), [(8, (16, 12)), (12, (16, 12)), (13, (32, 24)), (24, (32, 24)),
                                            (25, (64, 48)), (100, (64, 48))])
def test_draft_picks_the_smallest_dct_scale_keeping_both_sides(jpeg, side, size):
    path, mode = jpeg
    im, original = decode_image(path, draft_min_side=side)
    assert im.size == size and min(im.size) >= min(side, 48)
    assert im.mode == mode and original == mode


def test_draft_is_pils_scaled_decode_and_close_to_a_full_decode_resized(jpeg):
    path, _ = jpeg
    drafted = decode_image(path, draft_min_side=16)[0]
    with Image.open(path) as ref:  # the reference: libjpeg's own scaled decode
        ref.draft(ref.mode, (16, 16))
        assert np.array_equal(np.asarray(drafted), np.asarray(ref.convert(drafted.mode)))
    full = decode_image(path)[0]
    a = np.asarray(full.resize((16, 16), Image.BILINEAR), np.int16)
    b = np.asarray(drafted.resize((16, 16), Image.BILINEAR), np.int16)
    d = np.abs(a - b)
    # Both are low-pass versions of one picture: a few grey levels apart, except at the disc's edge.
    assert d.mean() < 4 and np.percentile(d, 90) <= 8
    assert not np.array_equal(a, b)  # it is a different decode (so callers must record it)


def test_no_draft_when_it_would_not_shrink_or_is_not_a_jpeg(jpeg, tmp_path):
    path, mode = jpeg
    full = np.asarray(decode_image(path)[0])
    assert np.array_equal(np.asarray(decode_image(path, draft_min_side=25)[0]), full)
    png = tmp_path / "same.png"
    Image.fromarray(_smooth(48, 64, mode == "RGB")).save(png)
    assert np.array_equal(np.asarray(decode_image(png, draft_min_side=8)[0]), np.asarray(decode_image(png)[0]))


def test_a_truncated_jpeg_is_still_refused_with_draft(jpeg, tmp_path):
    path, _ = jpeg
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(MedauditError, match="truncated or corrupt"):
        decode_image(cut, draft_min_side=8)


# -- the recipe's choice (models/preprocess.Recipe.jpeg_draft) -------------------------------------
def _folder(tmp_path, ext: str):
    for c, rgb in (("a", False), ("b", True)):
        (tmp_path / "test" / c).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(_smooth(64 + 8 * k, 72, rgb)).save(tmp_path / "test" / c / f"{k}.{ext}", quality=95)
    from medaudit.data import load_dataset

    return load_dataset(str(tmp_path)).split("test")


def _batch(split, recipe):
    from medaudit.models.preprocess import iter_batches

    return next(iter(iter_batches(split, recipe, 8, num_workers=0)))[0].numpy()


@pytest.mark.parametrize("backend", ["torch", "pil"])
def test_a_draft_recipe_gives_the_recipe_shape_close_to_a_full_decode(tmp_path, backend):
    from medaudit.models.preprocess import Recipe

    split = _folder(tmp_path, "jpg")
    full = _batch(split, Recipe(img_size=16, resize_backend=backend))
    drafted = _batch(split, Recipe(img_size=16, resize_backend=backend, jpeg_draft=True))
    assert drafted.shape == full.shape == (4, 3, 16, 16)
    d = np.abs(drafted - full) * 0.226 * 255  # back to grey levels (ImageNet std ~0.226)
    assert 0 < d.mean() < 4
    # not shrinking 2x (img_size above half the short side): the same pixels as a full decode
    assert np.array_equal(_batch(split, Recipe(img_size=40, resize_backend=backend, jpeg_draft=True)),
                          _batch(split, Recipe(img_size=40, resize_backend=backend)))


def test_a_draft_recipe_leaves_pngs_alone_and_is_keyed_and_recorded(tmp_path):
    from medaudit.models.preprocess import Recipe
    from medaudit.predict import cache_key

    split = _folder(tmp_path, "png")
    on, off = Recipe(img_size=16, jpeg_draft=True), Recipe(img_size=16)
    assert np.array_equal(_batch(split, on), _batch(split, off))
    assert "jpeg_draft" not in off.to_dict() and on.to_dict()["jpeg_draft"] is True
    assert Recipe.from_dict(on.to_dict()) == on
    assert cache_key("c", "f", "test", on.to_dict()) != cache_key("c", "f", "test", off.to_dict())
    with pytest.raises(MedauditError, match="jpeg_draft must be true or false"):
        Recipe(jpeg_draft="yes")


def test_a_draft_recipe_reaches_the_decoder_through_subsets_and_corrupted_views(tmp_path):
    """Training subsets and corruption sweeps wrap the split; the draft must pass through them, not crash."""
    from medaudit.data import load_dataset
    from medaudit.data.corruptions import CorruptedSplit
    from medaudit.models.preprocess import Recipe, split_tensor_dataset
    from medaudit.train.state import SubsetSplit

    root = tmp_path / "d"
    for c in "ab":
        (root / "test" / c).mkdir(parents=True)
        for k in range(2):
            rng = np.random.default_rng(k)
            Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(root / "test" / c / f"{k}.jpg")
    split = load_dataset(str(root)).split("test")
    recipe = Recipe(img_size=16, jpeg_draft=True)
    direct = split_tensor_dataset(split, recipe)
    subset = split_tensor_dataset(SubsetSplit(split, np.array([2, 0])), recipe)
    assert np.array_equal(subset[0][0].numpy(), direct[2][0].numpy())
    corrupted = split_tensor_dataset(CorruptedSplit(split, "gaussian_noise", 3), recipe)
    assert corrupted[1][0].shape == direct[1][0].shape == (3, 16, 16)
