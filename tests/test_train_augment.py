"""Seeded batch augmentation: reproducible, shape-preserving, clamped to the normalised image range."""

from __future__ import annotations

import torch

from medaudit.train.augment import Augmenter


def test_augment_is_seeded_and_keeps_shape():
    x = torch.randn(4, 3, 16, 16)
    a, b = Augmenter("strong", [0.5] * 3, [0.25] * 3, seed=3), Augmenter("strong", [0.5] * 3, [0.25] * 3, seed=3)
    ya, yb = a(x), b(x)
    assert ya.shape == x.shape and torch.equal(ya, yb) and not torch.equal(ya, x)
    assert ya.min() >= -2.0 - 1e-6 and ya.max() <= 2.0 + 1e-6  # clamped to the normalised [0, 1]
    assert torch.equal(Augmenter("none", [0.5], [0.25])(x), x)
    flat = torch.full((2, 1, 8, 8), 0.4)
    assert torch.allclose(Augmenter("basic", [0.5], [0.25], seed=0)(flat)[:, :, 3:5, 3:5], flat[:, :, 3:5, 3:5])

