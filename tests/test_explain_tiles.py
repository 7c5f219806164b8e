"""Tiles: files written, labels in the returned dicts, invalid CAMs not drawn, size budget."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL")

from medaudit.errors import MedauditError  # noqa: E402
from medaudit.explain import draw_tiles  # noqa: E402
from medaudit.explain.tiles import panel_size  # noqa: E402


def _info(i, group="correct"):
    return {"sample_id": f"test/{i}", "group": group, "true": "glioma", "pred": "normal", "prob": 0.87}


def test_tiles_written_and_described(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 28, 28, 3), dtype=np.uint8)
    cams = rng.random((3, 28, 28)).astype(np.float32)
    cams[1] = np.nan
    infos = [_info(0, "missed_disease"), {**_info(1), "reason": "CAM is zero everywhere"}, _info(2)]
    tiles = draw_tiles(imgs, cams, infos, tmp_path / "cams", "my/model")
    assert [t["file"] for t in tiles] == [f"cams/my_model_00{i}.jpg" for i in range(3)]
    assert tiles[0] | {} == {**_info(0, "missed_disease"), "file": "cams/my_model_000.jpg", "reason": None,
                             "selected_as": None, "hard": None}
    assert tiles[1]["reason"] == "CAM is zero everywhere" and tiles[2]["reason"] is None
    from PIL import Image

    side = panel_size(28)
    assert side == 168  # 6x nearest upscale of a 28 px input
    img = np.asarray(Image.open(tmp_path / tiles[1]["file"]).convert("RGB")).astype(int)
    assert img.shape[1] == 2 * side
    # the invalid CAM's panel is the flat grey "no CAM" panel, not a heat map
    patch = img[side // 2 : side // 2 + 20, side + side // 2 : side + side // 2 + 20]
    assert np.abs(patch - 90).max() < 12
    ok = np.asarray(Image.open(tmp_path / tiles[0]["file"]).convert("RGB")).astype(int)
    assert ok[5:5 + side, side:].std() > 20


def test_size_budget_two_models_32_tiles(tmp_path):
    rng = np.random.default_rng(1)
    from PIL import Image

    # Smooth scan-like images (upsampled noise plus grain); pure noise is no medical image.
    low = rng.integers(0, 256, size=(32, 28, 28), dtype=np.uint8)
    imgs = np.stack([np.asarray(Image.fromarray(a).resize((224, 224), Image.BICUBIC)) for a in low]).astype(float)
    imgs = np.clip(imgs + rng.normal(0, 6, imgs.shape), 0, 255).astype(np.uint8)
    imgs = np.repeat(imgs[..., None], 3, axis=3)
    yy, xx = np.mgrid[:224, :224]
    cams = np.stack([np.exp(-((yy - rng.integers(224)) ** 2 + (xx - rng.integers(224)) ** 2) / 3000.0)
                     for _ in range(32)]).astype(np.float32)
    total = 0
    for m in ("a", "b"):
        tiles = draw_tiles(imgs, cams, [_info(i) for i in range(32)], tmp_path / "cams", m)
        total += sum((tmp_path / t["file"]).stat().st_size for t in tiles)
    assert total < 3_000_000, total


def test_bad_input(tmp_path):
    with pytest.raises(MedauditError, match="uint8"):
        draw_tiles(np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8)), [_info(0)], tmp_path, "x")
    with pytest.raises(MedauditError, match="format"):
        draw_tiles(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8)), [_info(0)], tmp_path, "x", fmt="gif")
