"""medaudit.models.runtime.fold_batchnorm: the folded copy computes the model's outputs (trained
BatchNorm statistics, not the identity of a fresh one), leaves the model untouched, and gives up
(returning the model) where folding cannot apply or would be wrong; run_inference records it."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn

from medaudit.models.factory import create_model
from medaudit.models.runtime import fold_batchnorm, inference_state


def _trained_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm running statistics and affine weights far from a fresh one's."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.2)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))
    return model.eval()


@pytest.mark.parametrize("arch", ["resnet18", "tv:resnet18"])
def test_folded_copy_equals_the_model_and_leaves_it_untouched(arch):
    torch.manual_seed(0)
    model = _trained_stats(create_model(arch, 3, img_size=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with inference_state(model, torch.device("cpu"), channels_last=True) as m:
        folded, n = fold_batchnorm(m, x[:2])
        with torch.inference_mode():
            want, got = m(x), folded(x)
    assert n == 20 and folded is not model
    assert not any(type(mm) is nn.BatchNorm2d for mm in folded.modules())
    assert want.abs().max() > 1  # trained statistics: a real change of scale was folded
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(type(mm) is nn.BatchNorm2d for mm in model.modules()) == 20


def test_nothing_to_fold_returns_the_model():
    vit = create_model("vit_tiny_patch16_224", 2, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    assert fold_batchnorm(vit, x) == (vit, 0)
    eff = create_model("efficientnet_b0", 2, img_size=32).eval()  # timm BatchNormAct2d: not a plain BN
    assert fold_batchnorm(eff, x) == (eff, 0)


def test_training_mode_is_not_folded():
    net = create_model("resnet18", 2, img_size=32).train()
    assert fold_batchnorm(net, torch.randn(2, 3, 32, 32)) == (net, 0)


class _Branchy(nn.Module):
    """Control flow on the input's values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y.mean((2, 3)) if y.sum() > 0 else -y.mean((2, 3))


class _BnBeforeConv(nn.Module):
    """BN that normalises the input of a convolution: nothing follows a convolution to fold."""

    def __init__(self):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(self.bn(x)).mean((2, 3))


@pytest.mark.parametrize("cls", [_Branchy, _BnBeforeConv])
def test_untraceable_or_unfoldable_returns_the_model(cls):
    net = _trained_stats(cls())
    assert fold_batchnorm(net, torch.randn(2, 3, 8, 8)) == (net, 0)


def test_a_wrong_fold_is_caught_by_the_check(monkeypatch):
    net = _trained_stats(create_model("resnet18", 2, img_size=32))

    def broken_fuse(model, *a, **k):  # folds, but forgets the BN shift
        import torch.fx.experimental.optimization as opt

        out = opt.__dict__["_real_fuse"](model)
        for m in out.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.data.zero_()
        return out

    import torch.fx.experimental.optimization as opt

    monkeypatch.setitem(opt.__dict__, "_real_fuse", opt.fuse)
    monkeypatch.setattr(opt, "fuse", broken_fuse)
    assert fold_batchnorm(net, torch.randn(2, 3, 32, 32)) == (net, 0)


def test_run_inference_folds_large_passes_only(tmp_path, monkeypatch):
    from medaudit.data import Split
    from medaudit.models.checkpoint import load_checkpoint, save_checkpoint
    from medaudit.models.preprocess import Recipe
    from medaudit.predict import run_inference

    torch.manual_seed(0)
    model = _trained_stats(create_model("resnet18", 2, img_size=16, small_stem=True))
    path = save_checkpoint(tmp_path / "m.pt", model, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=Recipe(img_size=16, in_chans=3), small_stem=True)
    loaded = load_checkpoint(path)
    rng = np.random.default_rng(0)
    split = Split(name="test", sample_ids=[f"s{i}" for i in range(40)], labels=rng.integers(0, 2, 40),
                  class_names=["a", "b"], array=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8))
    kw = dict(split_name="test", split_fingerprint=None, dataset_spec="x", device="cpu", batch_size=16)
    plain = run_inference(loaded, split, **kw)
    assert plain.provenance["batchnorm_folded"] == 0  # 40 x 16 x 16 pixels: below the threshold
    monkeypatch.setattr("medaudit.predict.FOLD_MIN_PIXELS", 1)
    gc.collect()
    gc.disable()  # only run_inference's own collection may free the folded copy
    try:
        folded = run_inference(loaded, split, **kw)
        assert not [o for o in gc.get_objects() if issubclass(type(o), torch.fx.GraphModule)]  # not kept past the pass
    finally:
        gc.enable()
    assert folded.provenance["batchnorm_folded"] == 20
    np.testing.assert_allclose(folded.probs, plain.probs, rtol=0, atol=1e-6)
    assert sum(type(m) is nn.BatchNorm2d for m in loaded.model.modules()) == 20
