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
    assert r.exit_code == 2 and "--cam-layer 'layer9'" in r.output and "layer4" in r.output
    r = CliRunner().invoke(main, base + ["--cam-layer", "fc"])  # a layer, but no spatial map
    assert r.exit_code == 2 and "not a spatial map" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, base + ["--ids", "test/999"])
    assert r.exit_code == 2 and "--ids" in r.output
