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
    # auto: Grad-CAM for a CNN; layer4 is 2x2 at 16 px, so the CAM walks back to layer2 (8x8) and says why
    assert block["method"] == "gradcam" and block["layer"] == "layer2.1"
    assert "layer4.1 gives a 2x2 map at 16x16 input" in block["layer_reason"]
    assert block["faithfulness"]["k"] == [0.1, 0.2, 0.5]
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


def _masks(tmp_path, ids_labels, size=16):
    from PIL import Image

    root = tmp_path / "masks"
    for sid in ids_labels:
        (root / sid).parent.mkdir(parents=True, exist_ok=True)
        m = np.zeros((size, size), np.uint8)
        m[2:9, 3:10] = 255
        Image.fromarray(m).save(root / f"{sid}.png")
    return root


def test_cam_masks_and_boxes_measure_localisation(tmp_path, tiny_checkpoint, tiny_npz):
    labels = np.load(tiny_npz)["test_labels"].ravel()
    disease = [f"test/{i}" for i in range(12) if labels[i] != 0]
    base = ["cam", "--model", str(tiny_checkpoint), "--model", str(tiny_checkpoint), "--data", str(tiny_npz),
            "--classes", "a,b,c", "--negative-class", "a", "--per-group", "1"]
    r = CliRunner().invoke(main, base + ["--masks", str(_masks(tmp_path, disease)), "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    models = json.loads((tmp_path / "m" / "cams.json").read_text())["models"]
    loc = models["tiny"]["localisation"] if "tiny" in models else next(iter(models.values()))["localisation"]
    assert loc["source"] == "masks" and loc["n"] + loc["n_invalid"] == len(disease) and loc["n_missing"] == 0
    assert set(loc["per_class"]) <= {"b", "c"} and loc["overall"]["lesion_area"] == pytest.approx(49 / 256)
    first, second = list(models)
    assert list(models[first]["localisation"]["paired"]) == [second]  # the same checkpoint twice: no difference
    assert models[first]["localisation"]["paired"][second]["overall"]["pointing_game"]["n_discordant"] == 0

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("path,x0,y0,x1,y1\n" + "".join(f"{sid},3,2,10,9\n" for sid in disease))
    one = base[:3] + base[5:]  # one model is enough for the boxes
    r = CliRunner().invoke(main, one + ["--boxes", str(boxes), "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    loc_b = next(iter(json.loads((tmp_path / "b" / "cams.json").read_text())["models"].values()))["localisation"]
    assert loc_b["source"] == "boxes"  # the same rectangles as the masks: the same numbers
    assert loc_b["overall"]["pointing_game"] == next(iter(models.values()))["localisation"]["overall"]["pointing_game"]


def test_cam_masks_errors_exit_2(tmp_path, tiny_checkpoint, tiny_npz):
    base = ["cam", "--model", str(tiny_checkpoint), "--data", str(tiny_npz), "--classes", "a,b,c", "--negative-class",
            "a", "-o", str(tmp_path / "o")]
    cases = []
    cases.append((["--masks", str(tmp_path / "nope")], "--masks must be a folder"))
    wrong = _masks(tmp_path / "w", ["test/1"], size=20)
    cases.append((["--masks", str(wrong)], "mask is 20x20 but its image test/1 is 16x16"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((["--masks", str(empty)], "no sample of split 'test' has a non-empty lesion mask"))
    bad = tmp_path / "bad.csv"
    bad.write_text("file,a,b\nx,1,2\n")
    cases.append((["--boxes", str(bad)], "needs a header path,x0,y0,x1,y1"))
    outside = tmp_path / "outside.csv"
    outside.write_text("path,x0,y0,x1,y1\ntest/1,0,0,40,4\n")
    cases.append((["--boxes", str(outside)], "lies outside its 16x16 image"))
    cases.append((["--boxes", str(outside), "--masks", str(empty)], "not both"))
    for extra, message in cases:
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (extra, r.output)
    assert not (tmp_path / "o").exists()  # nothing written by a failed run
