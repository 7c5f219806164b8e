"""``run_report``: inputs checked before any work, one naming rule, nothing left behind."""

from __future__ import annotations

import json
import tempfile

import pytest
import torch

import medaudit.pipeline as pipeline
from medaudit.audit import AuditSettings
from medaudit.data import make_demo_dataset
from medaudit.errors import MedauditError
from medaudit.models.checkpoint import save_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe
from medaudit.pipeline import ReportOptions, run_report

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=2, n_val=2, n_test=2, size=16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r18.pt"
    save_checkpoint(path, create_model("resnet18", 4, img_size=16), arch="resnet18", class_names=CLASSES,
                    task="multiclass", recipe=Recipe(img_size=16), small_stem=True, selected_on="val")
    return path


def _opts(checkpoints, data, out, **kw) -> ReportOptions:
    return ReportOptions(checkpoints=list(checkpoints), data_spec=str(data), out_dir=out,
                         settings=AuditSettings(bootstrap=0), bench=False, cam=False, formats=("json",), **kw)


@pytest.mark.parametrize("change, param, fragment", [
    ({"checkpoints": []}, "models", "at least one checkpoint"),
    ({"formats": ("json", "docx")}, "formats", "docx: unknown format"),
    ({"notes_path": "missing.md"}, "notes_path", "missing.md: file not found"),
    ({"names": ["a", "a"]}, "names", "own non-empty name"),
])
def test_inputs_are_checked_before_the_data_is_read(tmp_path, checkpoint, change, param, fragment):
    """The data spec does not exist: each error must come from the check that runs before loading it."""
    opts = _opts([checkpoint, checkpoint], tmp_path / "no-such-data", tmp_path / "rep")
    for key, value in change.items():
        setattr(opts, key, tmp_path / value if key == "notes_path" else value)
    with pytest.raises(MedauditError, match=fragment) as exc:
        run_report(opts)
    assert exc.value.param == param, "the CLI maps the parameter to its option"
    assert not (tmp_path / "rep").exists()


def test_an_output_folder_that_is_not_a_report_is_refused_before_the_data_is_read(tmp_path, checkpoint):
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "thesis.txt").write_text("years of work")
    with pytest.raises(MedauditError, match="not empty") as exc:
        run_report(_opts([checkpoint], tmp_path / "no-such-data", tmp_path / "rep"))
    assert exc.value.param == "out_dir"


def test_the_same_checkpoint_twice_gets_two_names_and_two_files(tmp_path, demo_data, checkpoint):
    """medaudit.naming.model_names: stems, then parent/stem, then #2 for an exact repeat."""
    snapshot, paths = run_report(_opts([checkpoint, checkpoint], demo_data, tmp_path / "rep"))
    names = [m["name"] for m in snapshot["models"]]
    parent = checkpoint.parent.name
    assert names == [f"{parent}/r18", f"{parent}/r18#2"]
    files = [m["predictions"]["file"] for m in snapshot["models"]]
    assert len(set(files)) == 2 and all((tmp_path / "rep" / f).is_file() for f in files)
    written = json.loads(paths["json"].read_text())
    assert written["run"]["timings_s"].keys() == {f"predict:{n}" for n in names}
    assert written["run"]["duration_s"] > 0


def test_a_failure_after_inference_leaves_no_staging_folder_and_no_report(tmp_path, demo_data, checkpoint,
                                                                             monkeypatch):
    staging_root = tmp_path / "tmp"
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))
    staged = []

    def fail(snapshot, out_dir, **kw):
        staged.extend(p.name for p in staging_root.iterdir())
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "write_report", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        run_report(_opts([checkpoint], demo_data, tmp_path / "rep"))
    assert len(staged) == 1 and staged[0].startswith("medaudit-report-")
    assert list(staging_root.iterdir()) == [] and not (tmp_path / "rep").exists()


def test_a_rerun_into_the_folder_holding_its_own_inputs_is_refused_and_deletes_nothing(tmp_path, demo_data,
                                                                                       checkpoint):
    prev = tmp_path / "prev"
    run_report(_opts([checkpoint], demo_data, prev))
    (prev / "model.pt").write_bytes(checkpoint.read_bytes())
    (prev / "notes.md").write_text("# my notes")
    for change, param in ((dict(checkpoints=[prev / "model.pt"]), "models"),
                          (dict(checkpoints=[checkpoint], notes_path=prev / "notes.md"), "notes_path")):
        opts = _opts(change.pop("checkpoints"), demo_data, prev, **change)
        with pytest.raises(MedauditError, match="inside the output folder") as exc:
            run_report(opts)
        assert exc.value.param == param
    assert (prev / "model.pt").is_file() and (prev / "notes.md").read_text() == "# my notes"


@pytest.mark.parametrize("where, fragment", [("afile/sub", "is a file, so no folder"), ("/proc/medaudit-x", "not writable")])
def test_an_output_path_that_cannot_be_made_fails_before_the_data_is_read(tmp_path, checkpoint, where, fragment):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / where if not where.startswith("/") else __import__("pathlib").Path(where)
    with pytest.raises(MedauditError, match=fragment) as exc:
        run_report(_opts([checkpoint], tmp_path / "no-such-data", out))
    assert exc.value.param == "out_dir"


def test_binary_or_fifo_notes_are_one_line_errors(tmp_path, checkpoint):
    import os

    (tmp_path / "notes.bin").write_bytes(bytes(range(128, 256)))
    os.mkfifo(tmp_path / "notes.fifo")
    for name, fragment in (("notes.bin", "not UTF-8 text"), ("notes.fifo", "not a regular file")):
        with pytest.raises(MedauditError, match=fragment) as exc:
            run_report(_opts([checkpoint], tmp_path / "no-such-data", tmp_path / "rep", notes_path=tmp_path / name))
        assert exc.value.param == "notes_path"


def test_an_unreadable_train_image_fails_before_any_inference(tmp_path, checkpoint, monkeypatch):
    """The evaluated and val splits are hashed by their passes; the others are decoded before the first one."""
    data = make_demo_dataset(tmp_path / "data", n_train=2, n_val=2, n_test=2, size=16)
    bad = sorted((data / "train").rglob("*.png"))[0]
    bad.write_bytes(b"broken")

    def no_inference(*a, **k):
        raise AssertionError("inference ran before the train split was checked")

    monkeypatch.setattr(pipeline, "predict_cached", no_inference)
    with pytest.raises(MedauditError, match=bad.name):
        run_report(_opts([checkpoint], data, tmp_path / "rep"))
    assert not (tmp_path / "rep").exists()


def test_a_report_on_a_new_folder_decodes_each_image_once(tmp_path, checkpoint, count_decodes):
    data = make_demo_dataset(tmp_path / "data", n_train=2, n_val=2, n_test=3, size=16)
    snap, _ = run_report(_opts([checkpoint], data, tmp_path / "rep"))
    files = sorted(str(p) for p in data.rglob("*.png"))
    assert sorted(count_decodes) == files  # train by its scan, val and test by their passes, each once
    assert snap["dataset"]["fingerprint"] and snap["dataset"]["splits"]["test"]["n"] == 12
