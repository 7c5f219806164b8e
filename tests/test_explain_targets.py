"""Target-layer resolution per family and the token reshape (grids from the model, never 14x14)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from medaudit.errors import MedauditError  # noqa: E402
from medaudit.explain import compute_cams, resolve_target_layer  # noqa: E402


def _vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    base = dict(num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    return VisionTransformer(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, size, grid, prefix",
    [
        (dict(img_size=32, patch_size=8), 32, (4, 4), 1),
        (dict(img_size=64, patch_size=16, reg_tokens=4, no_embed_class=True), 64, (4, 4), 5),
        (dict(img_size=384, patch_size=16, depth=1), 384, (24, 24), 1),
        (dict(img_size=224, patch_size=16, depth=1), 224, (14, 14), 1),
        (dict(img_size=(32, 48), patch_size=8), (32, 48), (4, 6), 1),
        (dict(img_size=32, patch_size=8, class_token=False, global_pool="avg"), 32, (4, 4), 0),
    ],
)
def test_timm_vit_grid_and_prefix_follow_the_model(kw, size, grid, prefix):
    model = _vit(**kw).eval()
    module, name, reshape = resolve_target_layer(model)
    assert name == f"blocks.{len(model.blocks) - 1}.norm1" and module is model.blocks[-1].norm1
    h, w = (size, size) if isinstance(size, int) else size
    reshape.set_input_size(h, w)
    assert reshape.grid == grid and reshape.num_prefix_tokens == prefix
    res = compute_cams(model, torch.randn(2, 3, h, w), [0, 1])
    assert res.cams.shape == (2, h, w)


def test_distilled_deit_has_two_prefix_tokens():
    from timm.models.deit import VisionTransformerDistilled

    model = VisionTransformerDistilled(img_size=32, patch_size=8, num_classes=3, embed_dim=32, depth=1,
                                       num_heads=2, mlp_ratio=2.0).eval()
    _, name, reshape = resolve_target_layer(model)
    reshape.set_input_size(32, 32)
    assert name == "blocks.0.norm1" and reshape.num_prefix_tokens == 2 and reshape.grid == (4, 4)
    assert compute_cams(model, torch.randn(2, 3, 32, 32), [0, 2]).cams.shape == (2, 32, 32)


def test_dynamic_size_vit_uses_the_actual_input_size():
    model = _vit(img_size=32, patch_size=8, dynamic_img_size=True).eval()
    res = compute_cams(model, torch.randn(1, 3, 48, 40), [0])
    assert res.cams.shape == (1, 48, 40)


def test_torchvision_vit_and_resnet():
    import torchvision

    vit = torchvision.models.VisionTransformer(image_size=48, patch_size=16, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=3)
    _, name, reshape = resolve_target_layer(vit)
    assert name == "encoder.layers.encoder_layer_1.ln_1"
    reshape.set_input_size(48, 48)
    assert reshape.grid == (3, 3) and reshape.num_prefix_tokens == 1
    assert resolve_target_layer(torchvision.models.resnet18(num_classes=3))[1] == "layer4.1"


@pytest.mark.parametrize(
    "arch, kw, expected",
    [
        ("resnet18", {}, "layer4.1"),
        ("convnext_atto", {}, "stages.3"),
        ("efficientnet_b0", {}, "bn2"),
        ("mobilenetv3_small_050", {}, "blocks.5"),
        ("swin_tiny_patch4_window7_224", dict(img_size=64, window_size=4, depths=(1, 1, 1, 1)), "layers.3.blocks.0.norm1"),
    ],
)
def test_timm_families(arch, kw, expected):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=3, **kw).eval()
    assert resolve_target_layer(model, arch)[1] == expected
    # every family computes at its default layer (compute_cams alone may walk back from a coarse one at 64 px)
    res = compute_cams(model, torch.randn(2, 3, 64, 64), [0, 1], method="layercam", layer=expected)
    assert res.cams.shape == (2, 64, 64) and res.layer == expected
    assert res.valid.any() and np.isfinite(res.cams[res.valid]).all() and res.cams[res.valid].max() > 0


def test_candidates_start_with_the_default_and_skip_the_head():
    import torchvision

    from medaudit.explain.targets import candidate_layers

    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=3)
    assert candidate_layers(vit)[0] == "encoder.layers.encoder_layer_1.ln_1"  # deeper than 2 dots, listed first
    cands = candidate_layers(timm.create_model("resnet18", pretrained=False, num_classes=3))
    assert cands[0] == "layer4.1" and not {"fc", "global_pool"} & set(cands)


def test_non_spatial_cnn_layer_is_refused_with_candidates():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    for layer in ("fc", "global_pool"):
        with pytest.raises(MedauditError, match=rf"layer '{layer}' outputs shape .* not a spatial map.*layer4\.1"):
            compute_cams(model, torch.randn(1, 3, 32, 32), [0], layer=layer)
    assert not model.fc._forward_hooks and not model.global_pool._forward_hooks  # hooks released


def test_layer_override_and_bad_path():
    model = _vit(img_size=32, patch_size=8)
    module, name, reshape = resolve_target_layer(model, layer="blocks.-2.norm1")
    assert name == "blocks.0.norm1" and module is model.blocks[0].norm1 and reshape is not None
    with pytest.raises(MedauditError, match="layer 'blocks.9.norm1' is not a layer.*candidates: .*blocks"):
        resolve_target_layer(model, "vit_x", layer="blocks.9.norm1")
    with pytest.raises(MedauditError, match="candidates"):
        resolve_target_layer(model, layer="nonsense")


def test_token_count_mismatch_is_a_clear_error():
    from medaudit.explain import TokenReshape

    r = TokenReshape(1, lambda h, w: (h // 8, w // 8))
    r.set_input_size(32, 32)
    assert r(torch.zeros(2, 17, 5)).shape == (2, 5, 4, 4)
    with pytest.raises(MedauditError, match="patch tokens"):
        r(torch.zeros(2, 20, 5))


def test_coarse_default_layers_walk_back_to_a_7x7_stage():
    from medaudit.explain.targets import MIN_CAM_GRID, choose_target_layer
    from medaudit.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", 2, img_size=64, small_stem=False)  # the standard stem: layer4 is 2x2 at 64 px
    name, reason = choose_target_layer(model, (64, 64))
    assert name == "layer2.1" and "layer4.1 gives a 2x2 map at 64x64 input" in reason and "(8x8)" in reason
    # at 224 px layer4 is 7x7: the family default stays
    name, reason = choose_target_layer(model, (224, 224))
    assert name == "layer4.1" and reason.startswith("family default; 7x7") and MIN_CAM_GRID == 7
    # compute_cams records the choice, the map size and why
    res = compute_cams(model, torch.randn(2, 3, 64, 64), [0, 1])
    assert res.layer == "layer2.1" and res.grid == (8, 8) and "coarser than 7x7" in res.layer_reason
    assert compute_cams(model, torch.randn(1, 3, 64, 64), [0], layer="layer4").layer_reason is None  # named: no reason


def test_token_models_say_their_grid():
    from medaudit.explain.targets import choose_target_layer

    name, reason = choose_target_layer(_vit(img_size=32, patch_size=8), (32, 32))
    assert name == "blocks.1.norm1" and "token grid 4x4 at 32x32" in reason and "every block" in reason


def test_auto_method_is_the_family_default():
    from medaudit.explain.cam import DEFAULT_METHODS, resolve_method

    assert resolve_method(_vit(img_size=32, patch_size=8), "auto") == DEFAULT_METHODS["transformer"] == "layercam"
    assert resolve_method(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), "auto") == DEFAULT_METHODS["cnn"]
    with pytest.raises(MedauditError, match="not one of"):
        resolve_method(_vit(img_size=32, patch_size=8), "nope")
