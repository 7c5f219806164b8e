"""`medaudit data inspect`: output, --json, and exit code 2 with a one-line error for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from medaudit.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from medaudit.data import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_train=2, n_val=1, n_test=1, size=16)


def _run(*args):
    return CliRunner().invoke(main, ["data", "inspect", *map(str, args)])


def test_text_and_json(demo):
    res = _run(demo)
    assert res.exit_code == 0, res.output
    assert "glioma" in res.output and "duplicates" in res.output
    res = _run(demo, "--json")
    out = json.loads(res.output)
    assert out["splits"]["train"]["n"] == 8 and out["duplicates"]["leakage"] is False
    assert out["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]


def test_classes_option_and_warning(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", test_images=rng.integers(0, 255, (3, 4, 4), dtype=np.uint8),
             test_labels=np.array([0, 0, 0]))  # fmt: skip
    res = _run(tmp_path / "x.npz", "--classes", "healthy,sick", "--json")
    assert res.exit_code == 0
    assert "Warning: split 'test' has no samples of class(es) 'sick'" in res.stderr
    assert json.loads(res.stdout)["class_names"] == ["healthy", "sick"]


def _bad_inputs(tmp):
    (tmp / "empty_class" / "a").mkdir(parents=True)
    (tmp / "empty_class" / "b").mkdir()
    for cls in ("a", "b"):
        (tmp / "broken" / cls).mkdir(parents=True)
        Image.new("L", (4, 4), 1 if cls == "a" else 2).save(tmp / "broken" / cls / "ok.png")
    (tmp / "broken" / "b" / "cut.png").write_bytes((tmp / "broken" / "a" / "ok.png").read_bytes()[:40])
    np.savez(tmp / "pickled.npz", train_images=np.array([None], dtype=object), train_labels=np.array([0]))
    (tmp / "m.csv").write_text("path,label\n../x.png,a\n")
    return {
        "missing": (tmp / "nope", "no such file or folder"),
        "empty class": (tmp / "empty_class", "class folder holds no images"),
        "truncated": (tmp / "broken", "cut.png"),
        "pickle": (tmp / "pickled.npz", "pickled"),
        "escape": (tmp / "m.csv", "uses '..'"),
        "unknown medmnist": ("medmnist:foomnist", "known 2D datasets"),
    }


def test_bad_input_exit_2_one_line(tmp_path):
    for case, (spec, text) in _bad_inputs(tmp_path).items():
        res = _run(spec)
        assert res.exit_code == 2, (case, res.output)
        err = res.stderr.strip()
        assert err.startswith("Error: ") and text in err and "\n" not in err, (case, err)
        assert "Traceback" not in res.output
