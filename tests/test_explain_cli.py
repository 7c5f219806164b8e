"""`medaudit cam` end to end on a tiny checkpoint and a tiny .npz split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from medaudit.cli import main  # noqa: E402


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, test_images=rng.integers(0, 256, size=(12, 16, 16), dtype=np.uint8),
             test_labels=rng.integers(0, 3, size=(12, 1)))
    return path


def test_cam_gallery_and_ids(tmp_path, tiny_checkpoint, tiny_npz):
    out = tmp_path / "out"
    args = ["cam", "--model", str(tiny_checkpoint), "--data", str(tiny_npz), "--classes", "a,b,c",
            "--negative-class", "a", "--per-group", "2", "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "cams.json").read_text())
    block = summary["models"]["tiny"]
    assert block["method"] == "gradcam" and block["layer"] == "layer4.1"
    assert 1 <= len(block["tiles"]) <= 6
    for t in block["tiles"]:
        assert (out / t["file"]).is_file() and t["group"] in ("missed_disease", "error", "correct")

    r = CliRunner().invoke(main, args + ["--ids", "test/3,test/1", "--cam-method", "eigencam", "--format", "png"])
    assert r.exit_code == 0, r.output
    tiles = json.loads((out / "cams.json").read_text())["models"]["tiny"]["tiles"]
    assert [t["sample_id"] for t in tiles] == ["test/3", "test/1"] and tiles[0]["file"].endswith(".png")
    # the rerun replaced the folder: only this run's tiles are there, and no staging folder is left
    assert sorted(p.name for p in (out / "cams").iterdir()) == sorted(t["file"].split("/")[1] for t in tiles)
    assert sorted(p.name for p in out.iterdir()) == ["cams", "cams.json"]


def test_cam_bad_layer_and_ids_exit_2(tmp_path, tiny_checkpoint, tiny_npz):
    base = ["cam", "--model", str(tiny_checkpoint), "--data", str(tiny_npz), "--classes", "a,b,c", "-o",
            str(tmp_path / "o")]
    r = CliRunner().invoke(main, base + ["--cam-layer", "layer9"])
    assert r.exit_code == 2 and "--cam-layer 'layer9' is not a layer" in r.output and "layer4" in r.output
    r = CliRunner().invoke(main, base + ["--cam-layer", "fc"])  # a layer, but no spatial map
    assert r.exit_code == 2 and "not a spatial map" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, base + ["--ids", "test/999"])
    assert r.exit_code == 2 and "--ids" in r.output


def test_the_cli_method_choices_are_the_librarys():
    from medaudit.cli.cam import METHODS, cam
    from medaudit.explain.cam import CAM_METHODS

    choice = next(p for p in cam.params if p.name == "method").type
    assert tuple(CAM_METHODS) == METHODS == tuple(choice.choices)


def test_ids_tiles_show_the_probabilities_of_predict(tmp_path, tiny_checkpoint, tiny_npz):
    """The labels of requested samples use the one float64 logits -> probabilities rule, as predict does."""
    from medaudit.data import load_dataset
    from medaudit.models.checkpoint import load_checkpoint
    from medaudit.predict import run_inference

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["cam", "--model", str(tiny_checkpoint), "--data", str(tiny_npz), "--classes",
                                  "a,b,c", "--ids", "test/5,test/0", "-o", str(out)])
    assert r.exit_code == 0, r.output
    tiles = json.loads((out / "cams.json").read_text())["models"]["tiny"]["tiles"]
    split = load_dataset(str(tiny_npz), classes=["a", "b", "c"]).split("test")
    preds = run_inference(load_checkpoint(tiny_checkpoint), split, split_name="test", split_fingerprint=None,
                          dataset_spec=str(tiny_npz), device="cpu", sample_ids=["test/5", "test/0"])
    for tile, probs in zip(tiles, preds.probs, strict=True):
        assert tile["prob"] == float(probs.max())  # exactly: float32 softmax would differ in the last digits


def test_models_with_the_same_file_name_are_named_by_their_folder(tmp_path, tiny_checkpoint, tiny_npz):
    import shutil

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(tiny_checkpoint, tmp_path / folder / "m.pt")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["cam", "--model", str(tmp_path / "a" / "m.pt"), "--model", str(tmp_path / "b" / "m.pt"),
                                  "--data", str(tiny_npz), "--classes", "a,b,c", "--per-group", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    models = json.loads((out / "cams.json").read_text())["models"]
    assert list(models) == ["a/m", "b/m"]  # as report names them (medaudit.naming.model_names)
    assert {t["file"].split("/")[1].rsplit("_", 1)[0] for t in models["a/m"]["tiles"]} == {"a_m"}
