"""Every advertised architecture builds and trains one step through the real loop (32 px, batch 4: BatchNorm on a batch of 2 at 1x1 spatial size diverges for EfficientNet)."""

from __future__ import annotations

import numpy as np
import pytest

from medaudit.models.weights import safe_torch_load
from medaudit.train.config import TrainConfig
from medaudit.train.loop import train

FAST = ["resnet18", "resnet34", "resnet50", "vit_tiny_patch16_224", "vit_small_patch16_224", "convnext_tiny",
        "efficientnet_b0", "tv:resnet18"]
# 4-8 s each on one shared CPU thread (measured); model init and checkpoint writes dominate.
SLOW = ["resnet101", "resnet152", "vit_base_patch16_224"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from medaudit.data import load_dataset

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("d") / "rgb.npz"
    arrays = {}
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 20, 20, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(path, **arrays)
    return load_dataset(str(path))


def _one_step(ds, tmp_path, arch):
    # Plain SGD keeps no optimizer state, so NAME.last.pt stays the size of the weights (less disk I/O).
    cfg = TrainConfig(arch=arch, img_size=32, epochs=1, batch_size=4, device="cpu", select_by="val_loss",
                      augment="basic", optimizer="sgd", momentum=0.0)
    res = train(ds, cfg, tmp_path / "m.pt", progress=False, log=lambda s: None)
    meta = safe_torch_load(res.best_path)
    assert meta["arch"] == arch and meta["recipe"]["img_size"] == 32 and meta["selected_on"] == "val"
    assert np.isfinite(res.history[0]["train_loss"])


@pytest.mark.parametrize("arch", FAST)
def test_arch_trains_a_step(ds, tmp_path, arch):
    _one_step(ds, tmp_path, arch)


@pytest.mark.slow
@pytest.mark.parametrize("arch", SLOW)
def test_big_arch_trains_a_step(ds, tmp_path, arch):
    _one_step(ds, tmp_path, arch)
