"""compute_cams: agreement with a hand-written Grad-CAM, batching, invalid CAMs, model left untouched."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from medaudit.errors import MedauditError  # noqa: E402
from medaudit.explain import CAM_METHODS, compute_cams  # noqa: E402


class FullResCNN(nn.Module):
    """Stride-1 CNN: the target map has the input's size, so no resize enters the comparison."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Dropout(0.5), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def reference_gradcam(model, x, target):
    """Selvaraju et al.: ReLU(sum_k mean(dy/dA_k) A_k), min-max scaled."""
    model.eval()
    acts = model.features(x)
    acts.retain_grad()
    model.head(acts.mean((2, 3)))[0, target].backward()
    w = acts.grad[0].mean((1, 2))
    cam = torch.relu((w[:, None, None] * acts[0]).sum(0)).detach().numpy()
    cam -= cam.min()
    return cam / (cam.max() + 1e-7)


def _model(seed=0):
    torch.manual_seed(seed)
    m = FullResCNN()
    with torch.no_grad():  # non-trivial BN statistics, so eval vs train mode matters
        m.features[1].running_mean.uniform_(-0.5, 0.5)
        m.features[1].running_var.uniform_(0.5, 2.0)
    return m


def test_matches_hand_computed_gradcam():
    model = _model()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    res = compute_cams(model, x, [0, 1, 2])
    assert res.layer == "features.5" and res.method == "gradcam"
    for i, t in enumerate([0, 1, 2]):
        if not res.valid[i]:
            continue
        np.testing.assert_allclose(res.cams[i], reference_gradcam(_model(), x[i : i + 1], t), atol=1e-4)
    assert res.valid.sum() >= 2


def test_batch_size_does_not_change_results():
    model = _model()
    x = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    a = compute_cams(model, x, [0, 1, 2, 0, 1], batch_size=1)
    b = compute_cams(model, x, [0, 1, 2, 0, 1], batch_size=4)
    np.testing.assert_allclose(a.cams, b.cams, atol=1e-5)
    assert a.valid.tolist() == b.valid.tolist()


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_model_left_exactly_as_it_was(method):
    model = _model()
    model.train()
    model.features[3].eval()  # mixed per-module modes must survive
    model.features[0].weight.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 7.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(n, m.training) for n, m in model.named_modules()]
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():  # also works when called under no_grad
        res = compute_cams(model, x, [0, 1], method=method)
    assert res.cams.shape == (2, 12, 12)
    ok = res.cams[res.valid]
    assert np.isfinite(ok).all() and ok.min() >= 0 and ok.max() <= 1
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [(n, m.training) for n, m in model.named_modules()] == flags
    assert not model.features[0].weight.requires_grad and model.features[4].weight.requires_grad
    assert torch.equal(model.head.weight.grad, torch.full_like(model.head.weight, 7.0))
    assert model.features[4].weight.grad is None
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_invalid_cams_are_flagged_not_zero():
    model = _model()
    with torch.no_grad():
        model.head.weight.zero_()  # no gradient reaches the features: all-zero Grad-CAM
    res = compute_cams(model, torch.randn(2, 3, 12, 12), [0, 1])
    assert not res.valid.any() and np.isnan(res.cams).all()
    assert "zero everywhere" in res.reasons[0]

    model = _model()
    with torch.no_grad():
        model.features[4].weight[0, 0, 0, 0] = float("nan")
    res = compute_cams(model, torch.randn(1, 3, 12, 12), [0])
    assert not res.valid[0] and "NaN" in res.reasons[0]


def test_one_by_one_layer_is_explained():
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=2).eval()
    res = compute_cams(model, torch.randn(1, 3, 32, 32), [0], layer="layer4")  # 32 px / stride 32 = 1x1
    assert not res.valid[0] and "1x1" in res.reasons[0]
    # by default the CAM walks back to the latest stage with a 7x7 map or finer (layer1: 8x8)
    res = compute_cams(model, torch.randn(1, 3, 32, 32), [0])
    assert res.layer == "layer1.1" and res.grid == (8, 8) and "layer4.1 gives a 1x1 map" in res.layer_reason


def test_bad_inputs():
    model = _model()
    with pytest.raises(MedauditError, match="method 'magic' is not one of auto, gradcam") as err:
        compute_cams(model, torch.randn(1, 3, 8, 8), [0], method="magic")
    assert err.value.param == "method"  # the CLI names its option (--cam-method) from this
    with pytest.raises(MedauditError, match="targets"):
        compute_cams(model, torch.randn(2, 3, 8, 8), [0])


def test_works_inside_inference_mode():
    """A caller in torch.inference_mode() (as evaluation code often is) still gets CAMs."""
    model = _model()
    x = torch.randn(2, 3, 8, 8)
    expected = compute_cams(model, x, [0, 1]).cams
    with torch.inference_mode():
        got = compute_cams(model, torch.randn(2, 3, 8, 8) * 0 + x, [0, 1]).cams
    np.testing.assert_allclose(got, expected, atol=1e-6)
