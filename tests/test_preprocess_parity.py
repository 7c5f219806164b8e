"""The ``pil`` resize backend against torchvision itself (the pipeline of a training notebook).

A notebook reads ``Image.open(p).convert("RGB")`` and applies ``Resize((s, s))`` (or ``Resize(s)`` +
``CenterCrop(s)``), ``ToTensor`` and ``Normalize``. The same converted weights audited by medaudit
must see the same tensor, or probabilities move and borderline predictions flip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from medaudit.data.base import Split
from medaudit.data.images import decode_image
from medaudit.errors import MedauditError
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe, iter_batches
from medaudit.predict import cache_key

SIZES = [(37, 53), (300, 200), (512, 512)]  # (width, height): upsampled, wide, square
MODES = ["L", "RGB", "CMYK", "P", "LA"]
GREY = ((0.5,), (0.25,))
_TV_MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
             "nearest": T.InterpolationMode.NEAREST}


def _write(folder, mode: str, w: int, h: int, seed: int):
    """A real image file in ``mode``: smooth structure plus noise (JPEG for L/RGB/CMYK, PNG else)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 90 * np.sin(xx / (3 + seed)) * np.cos(yy / 5)
    bands = 4 if mode == "CMYK" else 3
    a = np.clip(base[..., None] + rng.normal(0, 25, (h, w, bands)), 0, 255).astype(np.uint8)
    if mode == "L":
        img = Image.fromarray(a[..., 0], "L")
    elif mode == "RGB":
        img = Image.fromarray(a, "RGB")
    elif mode == "CMYK":
        img = Image.fromarray(a, "CMYK")
    elif mode == "P":
        img = Image.fromarray(a, "RGB").quantize(64)
    else:  # LA, opaque: medaudit composites alpha on black, convert("RGB") drops it; equal when opaque
        img = Image.fromarray(np.stack([a[..., 0], np.full((h, w), 255, np.uint8)], -1), "LA")
    path = folder / f"{mode}_{w}x{h}.{'jpg' if mode in ('L', 'RGB', 'CMYK') else 'png'}"
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really holds this mode
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    return [_write(folder, m, w, h, seed=i) for i, (m, (w, h)) in enumerate((m, s) for m in MODES for s in SIZES)]


def _notebook(path, *, size: int, in_chans: int, resize: str, interpolation: str, mean, std) -> torch.Tensor:
    mode = _TV_MODES[interpolation]
    geometry = ([T.Resize((size, size), interpolation=mode)] if resize == "stretch"
                else [T.Resize(size, interpolation=mode), T.CenterCrop(size)])
    tf = T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])
    with Image.open(path) as im:
        return tf(im.convert("RGB" if in_chans == 3 else "L"))


def _split(paths) -> Split:
    return Split(name="test", sample_ids=[p.name for p in paths], labels=np.zeros(len(paths), np.int64),
                 class_names=["a", "b"], paths=list(paths))


@pytest.mark.parametrize("resize", ["stretch", "crop"])
@pytest.mark.parametrize("in_chans", [3, 1])
def test_pil_backend_is_torchvision_on_real_files(files, resize, in_chans):
    """Through medaudit's own image path (decode_image → iter_batches): the notebook's tensor."""
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if in_chans == 3 else GREY
    worst = {}
    for backend in ("pil", "torch"):
        recipe = Recipe(img_size=224, in_chans=in_chans, mean=mean, std=std, resize=resize, resize_backend=backend)
        (x, _y, _idx), = iter_batches(_split(files), recipe, batch_size=len(files), num_workers=0)
        ref = torch.stack([_notebook(p, size=224, in_chans=in_chans, resize=resize, interpolation="bilinear",
                                     mean=mean, std=std) for p in files])
        assert x.shape == ref.shape == (len(files), in_chans, 224, 224)
        worst[backend] = float((x - ref).abs().max())
    assert worst["pil"] <= 1e-6
    # The comparison can tell the backends apart: the tensor resize is not the notebook's.
    assert worst["torch"] > 1e-3


@pytest.mark.parametrize("interpolation", ["bicubic", "nearest"])
def test_pil_backend_follows_the_interpolation(files, interpolation):
    for path in files[::2]:
        for resize in ("stretch", "crop"):
            recipe = Recipe(img_size=96, resize=resize, interpolation=interpolation, resize_backend="pil")
            ref = _notebook(path, size=96, in_chans=3, resize=resize, interpolation=interpolation,
                            mean=recipe.mean, std=recipe.std)
            assert float((recipe.transform_pil(decode_image(path)[0]) - ref).abs().max()) <= 1e-6, (path, resize)


def test_same_model_probabilities_as_the_notebook(files):
    """A random-init ResNet-18 on both inputs: the probabilities agree to 1e-5."""
    torch.manual_seed(0)
    model = create_model("resnet18", 4, img_size=224).eval()
    paths = files[:: max(1, len(files) // 6)][:6]
    recipe = Recipe(img_size=224, resize_backend="pil")
    (x, _y, _idx), = iter_batches(_split(paths), recipe, batch_size=len(paths), num_workers=0)
    ref = torch.stack([_notebook(p, size=224, in_chans=3, resize="stretch", interpolation="bilinear",
                                 mean=recipe.mean, std=recipe.std) for p in paths])
    with torch.no_grad():
        p_ours, p_nb = model(x).double().softmax(1), model(ref).double().softmax(1)
    assert float((p_ours - p_nb).abs().max()) <= 1e-5


def test_array_sources_take_the_same_pil_path():
    """An .npz image gives what the same pixels give as an image file (both backends' contract)."""
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (2, 53, 37), dtype=np.uint8)
    rgb = rng.integers(0, 256, (2, 40, 70, 3), dtype=np.uint8)
    for arr in (grey, rgb):
        for in_chans in (1, 3):
            for resize in ("stretch", "crop", "pad"):
                r = Recipe(img_size=32, in_chans=in_chans, resize=resize, resize_backend="pil")
                from_files = torch.stack([r.transform_pil(Image.fromarray(a)) for a in arr])
                assert torch.equal(r.batch_from_array(arr), from_files)


def test_pil_pad_letterboxes_with_black():
    r = Recipe(img_size=8, in_chans=1, mean=(0.0,), std=(1.0,), resize="pad", resize_backend="pil")
    x = r.batch_from_array(np.full((1, 4, 8), 255, np.uint8))  # wide: bands above and below
    assert x.shape == (1, 1, 8, 8)
    assert torch.all(x[0, 0, :2] == 0) and torch.all(x[0, 0, 6:] == 0) and torch.all(x[0, 0, 2:6] == 1)


def test_torch_backend_is_unchanged_and_stays_out_of_the_recorded_recipe():
    """The default resizes the float tensor with antialiased F.interpolate, as before, and checkpoints,
    predictions headers and cache keys written before the field existed keep their bytes."""
    arr = np.random.default_rng(5).integers(0, 256, (2, 30, 50), dtype=np.uint8)
    r = Recipe(img_size=16, in_chans=1, mean=(0.5,), std=(0.25,))
    manual = F.interpolate(torch.from_numpy(arr).float().div(255).unsqueeze(1), size=(16, 16), mode="bilinear",
                           align_corners=False, antialias=True)
    assert torch.allclose(r.batch_from_array(arr), (manual - 0.5) / 0.25, atol=1e-6)

    old_keys = {"img_size", "in_chans", "mean", "std", "resize", "interpolation"}
    assert set(Recipe().to_dict()) == old_keys and Recipe(resize_backend="torch") == Recipe()
    old = {"img_size": 28, "in_chans": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
           "resize": "stretch", "interpolation": "bilinear"}
    assert json.dumps(Recipe.from_dict(old).to_dict(), sort_keys=True) == json.dumps(old, sort_keys=True)
    assert cache_key("c", "d", "test", Recipe.from_dict(old).to_dict()) == cache_key("c", "d", "test", old)
    pil = Recipe.from_dict({**old, "resize_backend": "pil"})
    assert pil.to_dict()["resize_backend"] == "pil" and Recipe.from_dict(pil.to_dict()) == pil
    assert cache_key("c", "d", "test", pil.to_dict()) != cache_key("c", "d", "test", old)


def test_unknown_backend_is_refused():
    with pytest.raises(MedauditError, match="resize_backend 'cv2' is not one of torch, pil") as err:
        Recipe(resize_backend="cv2")
    assert err.value.param == "resize_backend"
