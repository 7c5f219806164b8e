import json
import pickle
import re
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from safetensors.torch import save_file

from medaudit.cli import main
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import convert_weights, load_checkpoint, save_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe

MARKER = {}


def _pwned(path):  # would run on unpickling if the loader allowed arbitrary globals
    Path(path).write_text("code ran")


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_pwned, (str(self.marker),))


def test_roundtrip_keeps_config_and_weights(tmp_path):
    m = create_model("resnet18", 3, img_size=32)
    recipe = Recipe(img_size=32, in_chans=3, resize="pad")
    p = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["x", "y", "z"], task="multiclass",
                        recipe=recipe, small_stem=True, history=[{"epoch": 1, "val_auc": 0.5}], selected_on="val")
    raw = torch.load(p, weights_only=True)  # plain tensors and primitives only
    assert raw["format_version"] == 1 and raw["class_names"] == ["x", "y", "z"]
    loaded = load_checkpoint(p)
    assert loaded.recipe == recipe and loaded.task == "multiclass" and not loaded.model.training
    assert loaded.meta["history"][0]["val_auc"] == 0.5
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])
    assert not list(tmp_path.glob("*.tmp"))


def test_pickle_needing_globals_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"format": "medaudit.models.checkpoint", "payload": Evil(marker)}, fh)
    with pytest.raises(MedauditError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.save({"state": Evil(marker)}, tmp_path / "evil2.pt")
    marker.unlink(missing_ok=True)
    with pytest.raises(MedauditError, match="refused"):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not marker.exists()


def test_convert_torchvision_resnet18_roundtrip(tmp_path):
    tv = torchvision.models.resnet18(num_classes=3).eval()
    torch.save({"module." + k: v for k, v in tv.state_dict().items()}, tmp_path / "best_resnet.pth")
    x = torch.randn(2, 3, 224, 224)
    for arch in ("resnet18", "tv:resnet18"):  # timm and torchvision share the key layout
        out = convert_weights(tmp_path / "best_resnet.pth", tmp_path / f"{arch[-8:]}.pt", arch=arch,
                              class_names=["a", "b", "c"], recipe=Recipe(img_size=224))
        loaded = load_checkpoint(out)
        with torch.no_grad():
            assert torch.allclose(loaded.model(x), tv(x), atol=1e-5)
        assert loaded.meta["training"]["source"] == "converted"


def test_head_size_mismatch_and_unknown_arch(tmp_path):
    tv = torchvision.models.resnet18(num_classes=3)
    torch.save(tv.state_dict(), tmp_path / "w.pth")
    with pytest.raises(MedauditError, match="3 outputs but 2 class names"):
        convert_weights(tmp_path / "w.pth", tmp_path / "o.pt", arch="resnet18", class_names=["a", "b"],
                        recipe=Recipe(img_size=224))
    with pytest.raises(MedauditError, match="missing keys"):
        convert_weights(tmp_path / "w.pth", tmp_path / "o.pt", arch="resnet34", class_names=["a", "b", "c"],
                        recipe=Recipe(img_size=224))
    with pytest.raises(MedauditError, match="unknown model"):
        convert_weights(tmp_path / "w.pth", tmp_path / "o.pt", arch="resnet_nope", class_names=["a", "b", "c"],
                        recipe=Recipe(img_size=224))
    assert not (tmp_path / "o.pt").exists()


def test_safetensors_with_sidecar(tmp_path):
    import json

    from safetensors.torch import save_file

    m = create_model("resnet18", 2, img_size=32)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "m.safetensors"))
    with pytest.raises(MedauditError, match="sidecar"):
        load_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({
        "arch": "resnet18", "class_names": ["neg", "pos"], "task": "binary", "small_stem": True,
        "recipe": Recipe(img_size=32).to_dict()}))
    assert load_checkpoint(tmp_path / "m.safetensors").class_names == ["neg", "pos"]


def test_bare_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save(create_model("resnet18", 2, img_size=32).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(MedauditError, match="medaudit convert"):
        load_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(MedauditError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_corrupt_safetensors_and_bad_sidecar_are_one_line_errors(tmp_path):
    import json

    (tmp_path / "m.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "m.json").write_text(json.dumps({"arch": "resnet18", "class_names": ["a", "b"], "task": "binary",
                                                 "recipe": Recipe(img_size=32).to_dict()}))
    with pytest.raises(MedauditError, match="not a readable .safetensors"):
        load_checkpoint(tmp_path / "m.safetensors")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in create_model("resnet18", 2, img_size=32).state_dict().items()},
              str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps({"arch": "resnet18", "class_names": ["a", "b"], "task": "binary",
                                                 "recipe": {"img_size": "big"}}))
    with pytest.raises(MedauditError, match=r"m.json: recipe img_size='big' is not a whole number"):
        load_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(MedauditError, match="JSON object"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_bad_metadata_names_the_file_not_a_parameter(tmp_path):
    """A recipe or task that is wrong inside a file is the file's fault: no option is blamed."""
    m = create_model("resnet18", 2, img_size=32)
    path = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=Recipe(img_size=32), small_stem=True)
    ckpt = torch.load(path, weights_only=True)
    ckpt["recipe"]["resize"] = "squash"
    torch.save(ckpt, tmp_path / "bad_recipe.pt")
    with pytest.raises(MedauditError, match=r"checkpoint \S*bad_recipe.pt: recipe resize='squash' is not one of") as err:
        load_checkpoint(tmp_path / "bad_recipe.pt")
    assert err.value.param is None
    ckpt["recipe"]["resize"], ckpt["task"] = "stretch", "segmentation"
    torch.save(ckpt, tmp_path / "bad_task.pt")
    with pytest.raises(MedauditError, match="bad_task.pt: unknown task 'segmentation'"):
        load_checkpoint(tmp_path / "bad_task.pt")


def test_convert_class_name_errors_name_the_parameter(tmp_path):
    for names in (["a"], ["a", "b", "a"]):
        with pytest.raises(MedauditError) as err:
            convert_weights(tmp_path / "w.pth", tmp_path / "o.pt", arch="resnet18", class_names=names,
                            recipe=Recipe(img_size=32))
        assert err.value.param == "class_names"


@pytest.mark.parametrize("field,value,reason", [
    ("img_size", 100000, r"img_size=100000 is out of range \(2 to 4096 px\)"),
    ("img_size", "224", r"img_size='224' is not a whole number of pixels"),
    ("resize_backend", "cv2", r"resize_backend='cv2' is not one of torch, pil"),
    ("in_chans", 2, r"in_chans=2 is not 1 or 3"),
    ("std", [0.2, 0.0, 0.2], r"std=\[0.2, 0.0, 0.2\] holds a value that is not positive"),
    ("mean", [0.5, 0.5], r"mean=\[0.5, 0.5\] has 2 values but in_chans=3 needs 3"),
    ("mean", "grey", r"mean='grey' is not a list of numbers"),
])
def test_a_bad_recipe_in_a_checkpoint_names_the_file_and_the_field(tmp_path, field, value, reason):
    m = create_model("resnet18", 2, img_size=32)
    path = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=Recipe(img_size=32), small_stem=True)
    ckpt = torch.load(path, weights_only=True)
    ckpt["recipe"][field] = value
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(MedauditError, match=rf"^checkpoint {re.escape(str(tmp_path / 'bad.pt'))}: recipe {reason}") as err:
        load_checkpoint(tmp_path / "bad.pt")
    assert err.value.param is None and "\n" not in str(err.value)


def test_a_bad_recipe_in_a_sidecar_names_the_sidecar(tmp_path):
    m = create_model("resnet18", 2, img_size=32)
    ckpt = torch.load(save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                                      recipe=Recipe(img_size=32), small_stem=True), weights_only=True)
    save_file(ckpt.pop("state_dict"), str(tmp_path / "m.safetensors"))
    ckpt["recipe"]["resize_backend"] = "opencv"
    (tmp_path / "m.json").write_text(json.dumps(ckpt))
    with pytest.raises(MedauditError, match=r"checkpoint \S*m.json: recipe resize_backend='opencv'") as err:
        load_checkpoint(tmp_path / "m.safetensors")
    assert err.value.param is None


def test_checkpoint_recipe_errors_do_not_name_an_option_of_the_command(tmp_path):
    """bench has an --img-size option of its own; a checkpoint's bad img_size must not be blamed on it."""
    m = create_model("resnet18", 2, img_size=32)
    path = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=Recipe(img_size=32), small_stem=True)
    ckpt = torch.load(path, weights_only=True)
    ckpt["recipe"]["img_size"] = 100000
    torch.save(ckpt, tmp_path / "bad.pt")
    res = CliRunner().invoke(main, ["bench", str(tmp_path / "bad.pt")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: checkpoint {tmp_path / 'bad.pt'}: recipe img_size=100000")
    assert "--img-size" not in res.output and "Traceback" not in res.output


def test_pil_backend_round_trips_through_a_checkpoint(tmp_path):
    m = create_model("resnet18", 2, img_size=32)
    recipe = Recipe(img_size=32, resize="crop", resize_backend="pil")
    path = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=recipe, small_stem=True)
    assert torch.load(path, weights_only=True)["recipe"]["resize_backend"] == "pil"
    assert load_checkpoint(path).recipe == recipe
