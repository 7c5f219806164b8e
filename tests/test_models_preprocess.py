import numpy as np
import pytest
import torch
from PIL import Image

from medaudit.errors import MedauditError
from medaudit.models.preprocess import Recipe, pil_to_uint8


def test_gray_to_three_channels_and_normalisation():
    r = Recipe(img_size=8, in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    arr = np.full((2, 8, 8), 255, np.uint8)
    x = r.batch_from_array(arr)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x, torch.ones_like(x))


def test_rgb_to_gray_uses_luma():
    r = Recipe(img_size=4, in_chans=1, mean=(0.0,), std=(1.0,))
    arr = np.zeros((1, 4, 4, 3), np.uint8)
    arr[..., 0] = 255
    assert torch.allclose(r.batch_from_array(arr), torch.full((1, 1, 4, 4), 0.299), atol=1e-6)


@pytest.mark.parametrize("policy,expected_border", [("pad", 0.0), ("stretch", 1.0), ("crop", 1.0)])
def test_resize_policies(policy, expected_border):
    r = Recipe(img_size=8, in_chans=1, mean=(0.0,), std=(1.0,), resize=policy)
    arr = np.full((1, 4, 8), 255, np.uint8)  # wide image
    x = r.batch_from_array(arr)
    assert x.shape == (1, 1, 8, 8)
    assert float(x[0, 0, 0, 4]) == pytest.approx(expected_border, abs=1e-5)


def test_pil_modes_and_16_bit():
    rgba = Image.new("RGBA", (5, 5), (255, 0, 0, 0))  # fully transparent → composited on black
    assert pil_to_uint8(rgba, 3).max() == 0
    a16 = (np.arange(25, dtype=np.uint16).reshape(5, 5) * 1000).astype(np.uint16)
    img16 = Image.fromarray(a16)
    out = pil_to_uint8(img16, 1)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    r = Recipe(img_size=5, in_chans=3)
    assert r.transform_pil(img16).shape == (3, 5, 5)


def test_same_result_from_pil_and_array_paths():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (1, 12, 12), dtype=np.uint8)
    r = Recipe(img_size=8, in_chans=3)
    assert torch.allclose(r.transform_pil(Image.fromarray(arr[0])), r.batch_from_array(arr)[0])


def test_denormalize_inverts():
    r = Recipe(img_size=6, in_chans=3)
    arr = np.random.default_rng(1).integers(0, 256, (1, 6, 6, 3), dtype=np.uint8)
    assert np.abs(r.denormalize(r.batch_from_array(arr)[0]).astype(int) - arr[0]).max() <= 1


def test_bad_recipes():
    with pytest.raises(MedauditError, match="resize 'squash' is not one of"):
        Recipe(resize="squash")
    with pytest.raises(MedauditError, match="std values must be positive"):
        Recipe(std=(0.0, 1.0, 1.0))
    with pytest.raises(MedauditError, match="in_chans"):
        Recipe(in_chans=2)
    assert Recipe.from_dict(Recipe(img_size=28).to_dict()) == Recipe(img_size=28)
