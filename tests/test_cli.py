"""End-to-end CLI tests: report, predict, convert, demo, help — through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from medaudit.cli import COMMANDS, main
from medaudit.data import make_demo_dataset
from medaudit.models.checkpoint import save_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=3, n_val=3, n_test=4, size=32)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A CNN and a ViT, random init (the audit does not care how good they are)."""
    d = tmp_path_factory.mktemp("ckpt")
    paths = []
    for arch in ("resnet18", "vit_tiny_patch16_224"):
        torch.manual_seed(1)
        m = create_model(arch, 4, img_size=32)
        p = d / f"{arch.split('_')[0]}.pt"
        save_checkpoint(p, m, arch=arch, class_names=CLASSES, task="multiclass", recipe=Recipe(img_size=32),
                        small_stem=arch == "resnet18", selected_on="val")
        paths.append(p)
    return paths


def _report(args, tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["report", *args, "-o", str(out)])
    return res, out


def test_report_end_to_end_json_html(demo_data, two_checkpoints, tmp_path):
    a, b = two_checkpoints
    res, out = _report(["--models", str(a), str(b), "--data", str(demo_data), "--bootstrap", "50", "--no-bench",
                        "--cam-per-group", "1", "--format", "json,html"], tmp_path)
    assert res.exit_code == 0, res.output
    snap = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in snap["models"]] == ["resnet18", "vit"]
    assert snap["settings"]["negative_classes"] == ["notumor"]  # auto-detected
    assert snap["comparisons"]["pairs"][0]["a"] == "resnet18"
    m = snap["models"][0]
    preds = np.load(out / m["predictions"]["file"], allow_pickle=False)
    acc = float((preds["probs"].argmax(1) == preds["y_true"]).mean())
    assert m["metrics"]["accuracy"]["value"] == pytest.approx(acc)
    assert (out / "report.html").is_file() and not (out / "report.pdf").exists()
    assert m["cam"]["tiles"] and (out / m["cam"]["tiles"][0]["file"]).is_file()
    # a second run uses the predictions cache
    res2, out2 = _report(["--models", str(a), "--data", str(demo_data), "--bootstrap", "0", "--no-bench", "--no-cam",
                          "--format", "json"], tmp_path / "again")
    assert res2.exit_code == 0, res2.output
    snap2 = json.loads((out2 / "report.json").read_text())
    assert snap2["run"]["predictions"]["resnet18"]["cached"] is True
    # measurements live in `run` only: the rest is a pure function of the predictions
    assert set(snap2["models"][0]["predictions"]) == {"n", "file", "csv", "variants"}
    assert "efficiency" not in snap2["models"][0]
    # the recalibrated variant is a file of the report, beside the original predictions
    (variant,) = snap2["models"][0]["predictions"]["variants"]
    assert variant["kind"] == "temperature-scaled" and (out2 / variant["file"]).is_file()


def test_report_gate_failure_still_writes_report(demo_data, two_checkpoints, tmp_path):
    res, out = _report(["--models", str(two_checkpoints[0]), "--data", str(demo_data), "--bootstrap", "0",
                        "--no-bench", "--no-cam", "--format", "json", "--gate", "accuracy<0"], tmp_path)
    assert res.exit_code == 1, res.output  # a gate no model can pass: the report is written, then exit 1
    assert "FAIL" in res.output and json.loads((out / "report.json").read_text())["models"]
    bad = CliRunner().invoke(main, ["report", "--models", str(two_checkpoints[0]), "--data", str(demo_data),
                                    "--no-bench", "--no-cam", "--format", "json", "--gate", "accuracy>=0",
                                    "--gate", "recall[glioma]>=2", "-o", str(tmp_path / "g")])
    assert bad.exit_code == 2  # threshold out of range is rejected before any work
    res, out = _report(["--models", str(two_checkpoints[0]), "--data", str(demo_data), "--bootstrap", "0",
                        "--no-bench", "--no-cam", "--format", "json", "--gate", "accuracy>=0.999"], tmp_path / "f")
    snap = json.loads((out / "report.json").read_text())
    expected = 0 if snap["models"][0]["metrics"]["accuracy"]["value"] >= 0.999 else 1
    assert res.exit_code == expected, res.output


def test_report_json_is_deterministic_apart_from_run(demo_data, two_checkpoints, tmp_path):
    """Same predictions (a fresh pass, then a cache hit) and a timed bench: only `run` differs."""
    args = ["--models", *map(str, two_checkpoints), "--data", str(demo_data), "--bootstrap", "30",
            "--bench-repeats", "2", "--no-cam", "--format", "json", "--no-cache"]
    res1, out1 = _report(args, tmp_path / "one")
    res2, out2 = _report(args[:-1], tmp_path / "two")  # the second run reads the cache the first wrote
    assert res1.exit_code == 0 and res2.exit_code == 0, res1.output + res2.output
    raw1, raw2 = ((o / "report.json").read_text() for o in (out1, out2))
    s1, s2 = json.loads(raw1), json.loads(raw2)
    assert s1["run"]["efficiency"]["models"]["resnet18"]["latency_ms"]["n"] == 2
    assert s2["run"]["predictions"]["vit"]["cached"] and not s1["run"]["predictions"]["vit"]["cached"]
    del s1["run"], s2["run"]
    assert json.dumps(s1, sort_keys=True) == json.dumps(s2, sort_keys=True)


def test_report_names_that_sanitise_alike_get_their_own_files(demo_data, two_checkpoints, tmp_path):
    a = two_checkpoints[0]
    res, out = _report(["--models", str(a), str(a), "--names", "r18 v1,r18_v1", "--data", str(demo_data),
                        "--bootstrap", "0", "--no-bench", "--cam-per-group", "1", "--format", "json"], tmp_path)
    assert res.exit_code == 0, res.output
    models = json.loads((out / "report.json").read_text())["models"]
    files = [m["predictions"]["file"] for m in models] + [m["predictions"]["csv"] for m in models]
    tiles = [{t["file"] for t in m["cam"]["tiles"]} for m in models]
    assert len(set(files)) == 4 and all((out / f).is_file() for f in files)
    assert tiles[0] and not tiles[0] & tiles[1]
    dup, _ = _report(["--models", str(a), str(a), "--names", "x,x", "--data", str(demo_data)], tmp_path / "dup")
    assert dup.exit_code == 2 and "--names" in dup.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--models", "missing.pt"], "checkpoint not found"),
        (["--models", "{a}", "--split", "nope"], "nope"),
        (["--models", "{a}", "--negative-class", "healthy"], "--negative-class: 'healthy' is not a class"),
        (["--models", "{a}", "--names", "x,y"], "--names: 2 names given for 1 models"),
        (["--models", "{a}", "--format", "docx"], "--format: docx: unknown format"),
        (["--models", "{a}", "--notes", "missing.md"], "--notes: missing.md: file not found"),
        # space-separated names: the second word became a checkpoint; say so, and the form that works
        (["--models", "{a}", "{a}", "--names", "r18", "vit"],
         "--names: vit: read as checkpoints, but no such file; --names takes one comma-separated value "
         "(--names r18,vit)"),
        (["--models", "{a}", "--positive-class", "glioma"],
         "--positive-class 'glioma' applies to binary tasks only; this task is multiclass"),
    ],
)
def test_report_bad_input_exit_2_no_traceback(demo_data, two_checkpoints, tmp_path, args, needle):
    args = [x.replace("{a}", str(two_checkpoints[0])) for x in args]
    res, out = _report([*args, "--data", str(demo_data), "--no-bench", "--no-cam", "--bootstrap", "0"], tmp_path)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists()  # nothing half-written


def test_report_class_mismatch(demo_data, tmp_path):
    m = create_model("resnet18", 2, img_size=32)
    p = save_checkpoint(tmp_path / "bin.pt", m, arch="resnet18", class_names=["a", "b"], task="binary",
                        recipe=Recipe(img_size=32), small_stem=True)
    res, _ = _report(["--models", str(p), "--data", str(demo_data), "--no-bench", "--no-cam"], tmp_path)
    assert res.exit_code == 2 and "differ from the data" in res.output


def test_predict_and_csv(demo_data, two_checkpoints, tmp_path):
    out = tmp_path / "p.npz"
    args = ["predict", "--model", str(two_checkpoints[0]), "--data", str(demo_data), "-o", str(out),
            "--csv", str(tmp_path / "p.csv")]
    res = CliRunner().invoke(main, [*args, "--no-cache"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ran") and out.is_file()
    assert (tmp_path / "p.csv").read_text().splitlines()[0].startswith("sample_id,y_true,y_pred,p_glioma")
    assert CliRunner().invoke(main, args).output.startswith("cached")


def test_convert_cli(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), tmp_path / "best.pth")
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "best.pth"), "--arch", "tv:resnet18", "--classes",
                                    "normal,pneumonia", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
                                    "-o", str(tmp_path / "m.pt")])
    assert res.exit_code == 0, res.output
    meta = torch.load(tmp_path / "m.pt", weights_only=True)
    assert meta["recipe"]["mean"] == [0.5, 0.5, 0.5] and meta["task"] == "binary"
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "best.pth"), "--arch", "tv:resnet18", "--classes",
                                    "a,b,c", "-o", str(tmp_path / "m3.pt")])
    assert res.exit_code == 2 and "2 outputs but 3 class names" in res.output


def test_help_lists_every_command_and_is_light():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in COMMANDS:
        assert name in res.output
    for args in [[name] for name in COMMANDS] + [["data", "inspect"]]:  # every command's help has an example
        sub = CliRunner().invoke(main, [*args, "--help"])
        assert sub.exit_code == 0, (args, sub.output)
        assert "example" in sub.output.lower() and "medaudit " in sub.output, args
    code = "import sys, medaudit.cli; medaudit.cli.main.list_commands(None); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # no heavy import for --help


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "medaudit", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "medaudit" in out.stdout


def test_report_refuses_to_replace_a_folder_that_is_not_a_report(demo_data, two_checkpoints, tmp_path):
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    res = CliRunner().invoke(main, ["report", "--models", str(two_checkpoints[0]), "--data", str(demo_data),
                                    "--no-bench", "--no-cam", "--bootstrap", "0", "-o", str(precious)])
    assert res.exit_code == 2 and f"-o: {precious}: folder is not empty" in res.output
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_predict_refuses_a_different_class_order(demo_data, tmp_path):
    m = create_model("resnet18", 4, img_size=32)
    p = save_checkpoint(tmp_path / "m.pt", m, arch="resnet18", class_names=list(reversed(CLASSES)),
                        task="multiclass", recipe=Recipe(img_size=32), small_stem=True)
    res = CliRunner().invoke(main, ["predict", "--model", str(p), "--data", str(demo_data), "-o",
                                    str(tmp_path / "p.npz")])
    assert res.exit_code == 2 and "differ from the data" in res.output and not (tmp_path / "p.npz").exists()


def test_report_choices_are_the_librarys_lists():
    """One list per rule: the CAM methods of medaudit.explain, the bounds of medaudit.gate."""
    from medaudit.cli.report import report
    from medaudit.explain import CAM_METHODS
    from medaudit.gate import ON_CHOICES

    options = {p.name: p for p in report.params}
    assert list(options["cam_method"].type.choices) == list(CAM_METHODS)
    assert list(options["gate_on"].type.choices) == list(ON_CHOICES)
