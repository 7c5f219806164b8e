"""`medaudit convert`: what it records, and the outputs it refuses before doing any work."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import convert_weights, load_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe
from medaudit.models.weights import file_sha256


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "best_resnet.pth"
    torch.save(create_model("resnet18", 2, img_size=32).state_dict(), path)
    return path


def _convert(weights, out, *extra):
    return CliRunner().invoke(main, ["convert", str(weights), "--arch", "resnet18", "--classes", "a,b",
                                     "--img-size", "32", "-o", str(out), *extra])


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output, res.output
    return lines[0]


def test_convert_records_the_pil_backend_by_default_and_torch_on_request(tmp_path, weights):
    assert _convert(weights, tmp_path / "pil.pt").exit_code == 0
    assert load_checkpoint(tmp_path / "pil.pt").recipe.resize_backend == "pil"
    assert torch.load(tmp_path / "pil.pt", weights_only=True)["recipe"]["resize_backend"] == "pil"
    assert _convert(weights, tmp_path / "torch.pt", "--resize-backend", "torch").exit_code == 0
    assert load_checkpoint(tmp_path / "torch.pt").recipe.resize_backend == "torch"
    assert "resize_backend" not in torch.load(tmp_path / "torch.pt", weights_only=True)["recipe"]
    assert _convert(weights, tmp_path / "x.pt", "--resize-backend", "cv2").exit_code == 2  # click's choice check


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_convert_refuses_to_write_over_its_own_input(tmp_path, weights, link):
    src = tmp_path / "w.pth"
    src.write_bytes(weights.read_bytes())
    digest = file_sha256(src)
    out = {"same": src, "symlink": tmp_path / "sym.pt", "hardlink": tmp_path / "hard.pt"}[link]
    if link == "symlink":
        out.symlink_to(src)
    elif link == "hardlink":
        os.link(src, out)
    line = _one_line_error(_convert(src, out))
    assert line.startswith(f"Error: -o {out}: is the weights file") and "would destroy" in line
    assert file_sha256(src) == digest and not list(tmp_path.glob("*.tmp"))


def _uncreatable(tmp_path, kind):
    if kind == "under_a_file":
        (tmp_path / "afile").write_text("x")
        return tmp_path / "afile" / "sub.pt"
    if kind == "proc":
        return "/proc/x.pt"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return folder / "x.pt"


@pytest.mark.parametrize("kind", ["under_a_file", "proc", "read_only"])
def test_an_output_that_cannot_be_created_is_refused_before_any_work(tmp_path, kind):
    if kind == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    out = _uncreatable(tmp_path, kind)
    # The weights file does not exist: the output check comes first, before anything is read.
    line = _one_line_error(_convert(tmp_path / "missing.pth", out))
    assert "missing.pth" not in line and ("is a file" in line or "not writable" in line), line
    assert line.startswith("Error: -o: ")


def test_convert_refuses_a_safetensors_name(tmp_path, weights):
    line = _one_line_error(_convert(weights, tmp_path / "m.safetensors"))
    assert line == f"Error: -o {tmp_path / 'm.safetensors'}: a converted checkpoint is a PyTorch file; give it a .pt name"
    assert not (tmp_path / "m.safetensors").exists()


def test_library_convert_names_its_out_parameter(tmp_path, weights):
    with pytest.raises(MedauditError, match="is the weights file") as err:
        convert_weights(weights, weights, arch="resnet18", class_names=["a", "b"], recipe=Recipe(img_size=32))
    assert err.value.param == "out"


def test_a_bad_recipe_option_still_names_the_option(tmp_path, weights):
    """The option is at fault here (not a file): the CLI names --img-size."""
    res = CliRunner().invoke(main, ["convert", str(weights), "--arch", "resnet18", "--classes", "a,b",
                                    "--img-size", "100000", "-o", str(tmp_path / "x.pt")])
    assert _one_line_error(res) == "Error: --img-size must be between 2 and 4096 px (got 100000)"
