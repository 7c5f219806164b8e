import pytest
import torch

from medaudit.errors import MedauditError
from medaudit.models.factory import create_model, is_transformer_arch, model_summary, resolve_layer


def test_small_stem_for_small_inputs():
    m = create_model("resnet18", 2, img_size=28)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    # 28 px keeps 28x28 resolution into layer1 (the MedMNIST "(28)" variant).
    feats = {}

    def hook(mod, inp, out):
        feats["l1"] = out.shape

    m.layer1.register_forward_hook(hook)
    m.eval()(torch.zeros(1, 3, 28, 28))
    assert feats["l1"][-2:] == (28, 28)


def test_standard_stem_at_224():
    m = create_model("resnet18", 2, img_size=224)
    assert m.conv1.kernel_size == (7, 7)


def test_vit_built_for_its_input_size():
    m = create_model("vit_tiny_patch16_224", 3, img_size=64)
    assert tuple(m.patch_embed.grid_size) == (4, 4)
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    s = model_summary(m, "vit_tiny_patch16_224")
    assert s["family"] == "transformer" and s["patch_size"] == 16 and s["depth"] == 12


def test_torchvision_prefix():
    m = create_model("tv:resnet18", 4, img_size=224)
    assert m.fc.out_features == 4
    assert is_transformer_arch("tv:vit_b_16") and not is_transformer_arch("resnet18")


def test_unknown_arch_suggests_names():
    with pytest.raises(MedauditError, match="resnet18"):
        create_model("resnet181", 2)
    with pytest.raises(MedauditError, match="unknown torchvision"):
        create_model("tv:resnet181", 2)


def test_pretrained_offline_is_an_error_not_random_init(monkeypatch):
    import timm

    def offline(*a, **k):
        if k.get("pretrained"):
            raise OSError("offline")
        return orig(*a, **k)

    orig = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(MedauditError, match="local state_dict"):
        create_model("resnet18", 2, pretrained=True)


def test_local_weights_drop_mismatched_head(tmp_path):
    src = create_model("resnet18", 10, img_size=224)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    m = create_model("resnet18", 3, img_size=224, weights=tmp_path / "w.pth")
    assert torch.equal(m.conv1.weight, src.conv1.weight)
    assert m.fc.out_features == 3


def test_resolve_layer_lists_candidates():
    m = create_model("resnet18", 2, img_size=32)
    assert resolve_layer(m, "layer4.1") is m.layer4[1]
    assert resolve_layer(m, "layer4.-1") is m.layer4[-1]
    with pytest.raises(MedauditError, match="candidates"):
        resolve_layer(m, "layer9.0")


def test_weights_for_another_stem_are_an_error_not_a_silent_random_layer(tmp_path):
    src = create_model("resnet18", 10, img_size=224)  # 7x7 stem
    torch.save(src.state_dict(), tmp_path / "w.pth")
    with pytest.raises(MedauditError, match="conv1"):
        create_model("resnet18", 3, img_size=28, weights=tmp_path / "w.pth")  # 3x3 small stem
    vit = create_model("vit_tiny_patch16_224", 10, img_size=64)
    torch.save(vit.state_dict(), tmp_path / "v.pth")
    with pytest.raises(MedauditError, match="pos_embed"):
        create_model("vit_tiny_patch16_224", 3, img_size=32, weights=tmp_path / "v.pth")
    m = create_model("vit_tiny_patch16_224", 3, img_size=64, weights=tmp_path / "v.pth")  # only the head differs
    assert torch.equal(m.pos_embed, vit.pos_embed) and m.head.out_features == 3


def test_unreachable_hub_is_asked_from_the_cache_only(monkeypatch):
    """Offline, huggingface_hub would retry with back-off for about a minute; medaudit asks it
    for the cache only while the hub cannot be reached, and restores the setting after."""
    import socket

    import timm
    from huggingface_hub import constants

    def unreachable(*a, **k):
        raise OSError("network is unreachable")

    seen = []

    def fake_create(*a, **k):
        seen.append(constants.HF_HUB_OFFLINE)
        raise OSError("not in the cache")

    probed = []
    monkeypatch.setattr(socket, "create_connection", lambda addr, timeout: probed.append(addr) or unreachable())
    monkeypatch.setattr(timm, "create_model", fake_create)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hf-mirror.example:8443")
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(MedauditError, match="local state_dict"):
        create_model("resnet18", 2, pretrained=True)
    assert probed == [("hf-mirror.example", 8443)]  # the endpoint the hub client uses (HF_ENDPOINT)
    assert seen == [True] and constants.HF_HUB_OFFLINE is False
    # behind a proxy a failed direct connection proves nothing: no probe, online as configured
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    probed.clear(), seen.clear()
    with pytest.raises(MedauditError):
        create_model("resnet18", 2, pretrained=True)
    assert probed == [] and seen == [False]
