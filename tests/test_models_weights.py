"""medaudit.models.weights: safe reading of weight files, digests, strict and backbone-only loading."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from medaudit.errors import MedauditError
from medaudit.models.weights import (
    classifier_keys,
    file_sha256,
    load_backbone_weights,
    load_state_strict,
    read_state_dict,
    safe_torch_load,
)


def _net(n_out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, n_out))


def test_file_sha256_is_the_digest_of_the_bytes(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("nest", [None, "state_dict", "model_state_dict", "model"])
def test_read_state_dict_unwraps_training_scripts_dicts_and_ddp_prefixes(tmp_path, nest):
    state = {f"module.{k}": v for k, v in _net().state_dict().items()}
    torch.save(state if nest is None else {nest: state, "epoch": 3}, tmp_path / "w.pt")
    got = read_state_dict(tmp_path / "w.pt")
    assert set(got) == set(_net().state_dict())


def test_read_state_dict_safetensors_and_refusals(tmp_path):
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert set(read_state_dict(tmp_path / "w.safetensors")) == set(_net().state_dict())
    torch.save({"lr": 0.1}, tmp_path / "cfg.pt")
    with pytest.raises(MedauditError, match="cfg.pt: not a state_dict of tensors"):
        read_state_dict(tmp_path / "cfg.pt")
    with pytest.raises(MedauditError, match="weights file not found"):
        read_state_dict(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(MedauditError, match="empty.pt: not a readable PyTorch file"):
        safe_torch_load(tmp_path / "empty.pt")


def test_classifier_keys_is_the_last_linear_without_get_classifier():
    assert classifier_keys(_net()) == {"2.weight", "2.bias"}
    assert classifier_keys(nn.Sequential(nn.Conv2d(1, 2, 1))) == set()


def test_strict_loading_names_a_head_of_the_wrong_width_and_other_mismatches(tmp_path):
    src = _net(4).state_dict()
    with pytest.raises(MedauditError, match="w.pt: the classifier head has 4 outputs but 3 class names"):
        load_state_strict(_net(3), src, source=tmp_path / "w.pt", n_classes=3)
    with pytest.raises(MedauditError, match="1 missing keys .*'2.bias'"):
        load_state_strict(_net(3), {k: v for k, v in _net(3).state_dict().items() if k != "2.bias"},
                          source="w.pt", n_classes=3)
    target = _net(3)
    load_state_strict(target, _net(3).state_dict(), source="w.pt", n_classes=3)


def test_backbone_weights_keep_a_new_head_and_refuse_a_different_backbone(tmp_path):
    src = _net(10)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    model = _net(3)
    load_backbone_weights(model, tmp_path / "w.pt")
    assert torch.equal(model[0].weight, src[0].weight) and model[2].out_features == 3
    other = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Flatten(), nn.Linear(4, 3))  # another stem shape
    with pytest.raises(MedauditError, match=r"outside the classifier head \(0.weight"):
        load_backbone_weights(other, tmp_path / "w.pt")


def _ran(marker):  # what a malicious pickle would run; weights_only loading must never call it
    marker.write_text("ran")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_ran, (self.marker,))


def _refusal(path) -> str:
    with pytest.raises(MedauditError) as err:
        safe_torch_load(path)
    return str(err.value)


def test_a_refused_pickle_is_one_complete_line_naming_the_global(tmp_path):
    """torch's refusal is a paragraph (ANSI bold, two options, a link); ours is one readable line."""
    import argparse

    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": _net().state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "ns.pt")
    torch.save({"payload": _Payload(marker)}, tmp_path / "evil.pt")
    expected_global = {"ns.pt": "argparse.Namespace", "evil.pt": f"{__name__}._ran"}  # __reduce__ pickles the call
    for name, global_name in expected_global.items():
        msg = _refusal(tmp_path / name)
        assert msg == (
            f"{tmp_path / name}: refused to load: unpickling it needs the Python global {global_name}, and loading "
            "arbitrary globals from a file could run code. Re-save only the state_dict "
            "(torch.save(model.state_dict(), ...)) and wrap it with `medaudit convert`"
        ), msg
    assert not marker.exists()
    with pytest.raises(MedauditError, match="needs the Python global argparse.Namespace"):
        read_state_dict(tmp_path / "ns.pt")


def test_a_refused_pickle_without_a_global_gives_torchs_reason_whole(tmp_path):
    import pickle

    # A set is not a container weights_only allows to be filled; no global is involved.
    blob = pickle.dumps({"a": 1}, protocol=2).replace(b"}", b"\x8f")
    (tmp_path / "set.pt").write_bytes(blob)
    msg = _refusal(tmp_path / "set.pt")
    assert "\n" not in msg and "\x1b" not in msg and "http" not in msg
    assert "(torch's safe unpickler stopped at: Can only SETITEM for dict" in msg
    assert msg.endswith("and wrap it with `medaudit convert`")
