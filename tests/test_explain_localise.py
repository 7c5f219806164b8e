"""Proof that the CAMs localise: train tiny models where the class evidence sits in a known place.

Each 32x32 image holds, in random distinct quadrants: the "lesion" — an 8x8 square with a
white frame whose inside is red (class 1) or green (class 0) — and two distractors that are
not predictive: an unframed red-or-green square of random colour, and a white "text marker"
bar. Because both colours appear in both classes, "no red anywhere" is no shortcut: a model
that learned the task must read the framed square, for either class. The pointing game
checks that the CAM peak falls in the lesion's quadrant (chance level 0.25).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

SIZE, SQ = 32, 8
QUADRANTS = [(0, 0), (0, 16), (16, 0), (16, 16)]


def make_batch(rng: np.random.Generator, n: int):
    """Normalised images (n, 3, 32, 32), labels (n,), lesion quadrant (n,) and lesion boxes (n, 4)."""
    x = rng.uniform(0.0, 0.25, size=(n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    quads = np.empty(n, dtype=np.int64)
    boxes = np.empty((n, 4), dtype=np.int64)
    for i in range(n):
        q_sig, q_dis, q_text = rng.permutation(4)[:3]
        for q, framed, red in ((q_sig, True, y[i] == 1), (q_dis, False, rng.random() < 0.5)):
            r0, c0 = QUADRANTS[q]
            r, c = r0 + rng.integers(0, 16 - SQ + 1), c0 + rng.integers(0, 16 - SQ + 1)
            x[i, :, r : r + SQ, c : c + SQ] = 1.0 if framed else 0.1
            x[i, :, r + 1 : r + SQ - 1, c + 1 : c + SQ - 1] = 0.1
            x[i, 0 if red else 1, r + 1 : r + SQ - 1, c + 1 : c + SQ - 1] = 1.0
            if framed:
                quads[i], boxes[i] = q, (r, c, r + SQ, c + SQ)
        r0, c0 = QUADRANTS[q_text]
        r, c = r0 + rng.integers(2, 12), c0 + rng.integers(0, 4)
        x[i, :, r : r + 2, c : c + 12] = 1.0  # white bar in every image, both classes
    return torch.from_numpy((x - 0.5) / 0.25), torch.from_numpy(y), quads, boxes


def train(model, steps: int, lr: float, seed: int) -> float:
    """Adam on fresh synthetic batches (one CPU thread: faster than two on a shared box); held-out accuracy."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(steps):
            x, y, _, _ = make_batch(rng, 32)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        x, y, _, _ = make_batch(np.random.default_rng(seed + 1), 128)
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())
    finally:
        torch.set_num_threads(threads)


def pointing_game(model, seed: int, method: str = "gradcam", n: int = 64) -> tuple[float, float, float]:
    """Fraction of CAM peaks in the lesion quadrant, in the lesion grown by 4 px, and of valid CAMs.

    Invalid CAMs (all zero) count as misses.
    """
    from medaudit.explain import compute_cams

    x, y, quads, boxes = make_batch(np.random.default_rng(seed), n)
    res = compute_cams(model, x, y.tolist(), method=method, batch_size=32)
    hits_q = hits_box = 0
    for cam, ok, q, (r0, c0, r1, c1) in zip(res.cams, res.valid, quads, boxes, strict=True):
        if not ok:
            continue
        r, c = np.unravel_index(np.argmax(cam), cam.shape)
        qr, qc = QUADRANTS[q]
        hits_q += qr <= r < qr + 16 and qc <= c < qc + 16
        hits_box += r0 - 4 <= r < r1 + 4 and c0 - 4 <= c < c1 + 4
    return hits_q / n, hits_box / n, float(res.valid.mean())


def tiny_resnet():
    from timm.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2, channels=(16, 32, 64, 64), stem_type="deep", stem_width=8)
    # The "(28)" small-input stem (as medaudit.models.factory does at <= 64 px): layer4 stays 4x4.
    model.conv1 = torch.nn.Conv2d(3, model.bn1.num_features, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    return model


def tiny_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=4, num_classes=2, embed_dim=64, depth=4, num_heads=4,
                             mlp_ratio=2.0)


def test_resnet_cam_points_at_the_lesion():
    from medaudit.explain import resolve_target_layer

    model = tiny_resnet()
    assert train(model, steps=100, lr=3e-3, seed=0) >= 0.95
    assert resolve_target_layer(model)[1] == "layer4.0"
    for method in ("gradcam", "gradcam++", "layercam"):
        in_quadrant, in_box, valid = pointing_game(model, seed=100, method=method)
        assert in_quadrant >= 0.8 and in_box >= 0.7, (method, in_quadrant, in_box, valid)


def test_vit_cam_points_at_the_lesion():
    """Class-token ViT, default layer (last block's norm1, 8x8 grid from patch 4 at 32 px).

    Measured (seed 0): LayerCAM 0.84 in-quadrant, GradCAM ~0.6: Grad-CAM averages the
    token gradients, which drops the class token's attention to the lesion, so on ViTs
    it localises clearly above chance (0.25) but less sharply than LayerCAM.
    """
    from medaudit.explain import resolve_target_layer

    model = tiny_vit()
    assert train(model, steps=300, lr=1e-3, seed=0) >= 0.95
    assert resolve_target_layer(model)[1] == "blocks.3.norm1"
    in_quadrant, in_box, valid = pointing_game(model, seed=101, method="layercam")
    assert in_quadrant >= 0.7, (in_quadrant, in_box, valid)
    gc_quadrant, _, _ = pointing_game(model, seed=101, method="gradcam")
    assert gc_quadrant >= 0.45, gc_quadrant


def test_untrained_models_are_near_chance():
    """Sanity check of the test itself: random-init models do not pass the pointing game."""
    assert pointing_game(tiny_vit(), seed=102, method="layercam")[0] < 0.6
    assert pointing_game(tiny_resnet(), seed=102)[0] < 0.6
