"""``medaudit report --external NAME=SPEC``: one-line errors before inference, the cohort predicted and
embedded through the caches, the ``external`` block checked by the snapshot reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from medaudit.audit import AuditSettings
from medaudit.cli import main
from medaudit.cohorts import load_cohorts, parse_external, run_external
from medaudit.data import load_dataset, make_demo_dataset
from medaudit.data.demo_external import make_external_site
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import load_checkpoint, save_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe
from medaudit.pipeline import ReportOptions, run_report
from medaudit.predict import predict_cached
from medaudit.snapshot import check_snapshot

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=2, n_val=2, n_test=6, size=16)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return make_external_site(tmp_path_factory.mktemp("ext") / "site_b", n_per_class=6, size=16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r18.pt"
    save_checkpoint(path, create_model("resnet18", 4, img_size=16), arch="resnet18", class_names=CLASSES,
                    task="multiclass", recipe=Recipe(img_size=16), small_stem=True, selected_on="val")
    return path


@pytest.mark.parametrize("values, fragment", [
    (["site_b"], "give NAME=SPEC"),
    (["site_b="], "give NAME=SPEC"),
    (["=data"], "must start with a letter"),
    (["bad name=data"], "must start with a letter"),
    (["b=x", "b=y"], "given twice"),
])
def test_bad_external_values_are_one_line_errors(values, fragment):
    with pytest.raises(MedauditError, match=fragment) as exc:
        parse_external(values)
    assert exc.value.param == "external"


def test_cli_refuses_bad_specs_and_other_classes_before_inference(demo_data, checkpoint, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("inference ran before the inputs were checked")

    monkeypatch.setattr("medaudit.pipeline.predict_cached", boom)
    monkeypatch.setattr("medaudit.cohorts.predict_cached", boom)
    other = tmp_path / "other"
    for cls in ("cat", "dog"):
        (other / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(other / cls / f"{i}.png")
    base = ["report", "--models", str(checkpoint), "--data", str(demo_data), "--no-bench", "--no-cam",
            "--bootstrap", "0", "--format", "json", "-o", str(tmp_path / "rep")]
    for extra, fragment in ([["--external", "x"], "give NAME=SPEC"],
                            [["--external", "a=p", "--external", "a=q"], "given twice"],
                            [["--external", f"o={other}"], "differ from the models'"],
                            [["--external", f"m={tmp_path / 'missing'}"], "external m="]):
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == 2, res.output
        assert fragment in res.output and "--external" in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_external_cohort_in_the_snapshot_and_cached(demo_data, site, checkpoint, tmp_path, monkeypatch):
    opts = ReportOptions(checkpoints=[checkpoint], data_spec=str(demo_data), out_dir=tmp_path / "rep",
                         settings=AuditSettings(bootstrap=50), bench=False, cam=False, formats=("json",),
                         external=(f"site_b={site}",), cache_dir=tmp_path / "cache")
    snap, _ = run_report(opts)
    check_snapshot(snap, "report")
    block = snap["external"]
    assert block["reference"] == "test" and block["sites"] is None  # a folder has no site column
    (cohort,) = block["cohorts"]
    assert cohort["name"] == "site_b" and cohort["n"] == 24
    assert cohort["class_counts"] == dict.fromkeys(CLASSES, 6)
    m = cohort["models"][0]
    assert m["name"] == "r18" and m["metrics"]["n"] == 24
    assert {"balanced_accuracy", "missed_disease_rate"} <= set(m["drop"])
    assert cohort["shift"]["mmd"] is not None and cohort["shift"]["bbsd"]["n_cohort"] == 24
    assert any(f.get("topic") == "external" for f in snap["findings"])
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 2  # internal test + cohort

    # the stage again runs no model: predictions and features come from the caches
    monkeypatch.setattr("medaudit.embed.compute_features", lambda *a, **k: pytest.fail("features recomputed"))
    monkeypatch.setattr("medaudit.predict.run_inference", lambda *a, **k: pytest.fail("inference re-ran"))
    ld = load_checkpoint(checkpoint)
    test = load_dataset(str(demo_data)).split("test")
    kw = dict(cache_dir=tmp_path / "cache", use_cache=True, device="auto", batch_size=64, amp=True, progress=False)
    internal, cached = predict_cached(ld, test, split_name="test", dataset_spec=str(demo_data), model_name="r18",
                                      **{k: v for k, v in kw.items() if k != "progress"})
    assert cached
    again = run_external(load_cohorts(parse_external(opts.external), CLASSES), [ld], ["r18"], [internal], test,
                         "test", ["notumor"], settings=opts.settings, predict_kw=kw)
    assert again["cohorts"][0]["shift"] == cohort["shift"]
    assert again["cohorts"][0]["models"][0]["drop"] == m["drop"]

    # a bad value in the block is refused by the reader
    cohort["models"][0]["drop"]["balanced_accuracy"]["value"] = 3.0
    with pytest.raises(MedauditError, match="drop.balanced_accuracy.value"):
        check_snapshot(snap, "report")
