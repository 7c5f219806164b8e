"""Faithfulness: removing what a map marks vs removing a random area, on a model whose evidence is known."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medaudit.explain.faithfulness import FAITHFULNESS_K, faithfulness  # noqa: E402


class CornerModel(torch.nn.Module):
    """Class 1's logit is the brightness of the top-left 8x8 corner; class 0's its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        s = self.scale * x[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([-s, s], dim=1)


def _images(n: int, rng) -> torch.Tensor:
    x = rng.normal(0.0, 0.3, size=(n, 1, 32, 32)).astype(np.float32)
    x[:, :, :8, :8] += 2.0  # the evidence: a bright corner
    return torch.from_numpy(x)


def test_true_map_beats_random_and_model_is_untouched():
    rng = np.random.default_rng(0)
    x = _images(24, rng)
    model = CornerModel().train()  # training mode on purpose: it must come back in it
    true_map = np.zeros((24, 32, 32), np.float32)
    true_map[:, :8, :8] = 1.0
    true_map += rng.random(true_map.shape).astype(np.float32) * 1e-3
    out = faithfulness(model, x, [1] * 24, true_map, np.ones(24, bool), (4, 4), n_bootstrap=300)
    assert model.training and model.scale.grad is None and model.scale.requires_grad
    assert out["k"] == list(FAITHFULNESS_K) and out["n"] == 24 and out["removal"] == "blur"
    for k in ("0.1", "0.2", "0.5"):
        d = out["difference"][k]
        assert d["ci_low"] > 0, (k, d)  # the map marks the evidence: its removal costs more
        assert out["drop"][k]["value"] > out["random_drop"][k]["value"]
    # Hand check of one number: p(class 1) before minus after blurring the top 20 % of the map.
    with torch.no_grad():
        p0 = torch.softmax(model(x), 1)[:, 1].numpy()
    assert out["drop"]["0.2"]["value"] <= float(p0.mean())


def test_map_of_the_wrong_place_is_no_better_than_random():
    rng = np.random.default_rng(1)
    x = _images(24, rng)
    wrong = np.zeros((24, 32, 32), np.float32)
    wrong[:, 20:, 20:] = 1.0  # far from the corner the model reads
    wrong += rng.random(wrong.shape).astype(np.float32) * 1e-3
    out = faithfulness(CornerModel().eval(), x, [1] * 24, wrong, np.ones(24, bool), (4, 4), n_bootstrap=300,
                       ks=(0.1,))
    assert out["difference"]["0.1"]["ci_low"] <= 0


def test_invalid_maps_are_left_out():
    rng = np.random.default_rng(2)
    x = _images(4, rng)
    maps = np.full((4, 32, 32), np.nan, np.float32)
    out = faithfulness(CornerModel().eval(), x, [1] * 4, maps, np.zeros(4, bool), (4, 4), n_bootstrap=10)
    assert out["n"] == 0 and out["difference"]["0.2"]["value"] is None
