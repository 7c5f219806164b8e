"""Outputs never destroy what the user owns: manifests of written files, checks before the work.

A report folder (and ``cam``'s ``cams`` folder) is replaced as a whole; a file the earlier run did
not write must make the rerun refuse, not vanish. Destinations that cannot be written fail before
any inference, with one line and exit 2; no command writes over its own inputs.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from medaudit.cli import main  # noqa: E402
from medaudit.errors import MedauditError  # noqa: E402
from medaudit.fileio import check_output_file, created_dir  # noqa: E402
from medaudit.report.writer import MARKER, check_output_dir, write_report  # noqa: E402


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, test_images=rng.integers(0, 256, size=(12, 16, 16), dtype=np.uint8),
             test_labels=rng.integers(0, 3, size=(12, 1)))
    return path


def _snapshot():
    from tests.snapshot_factory import make_snapshot  # the suite's hand-made snapshot

    return make_snapshot()


def _one_line_exit_2(r):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output


# -- report folders: the manifest --------------------------------------------------------------


def test_the_marker_lists_every_file_written(tmp_path):
    out = tmp_path / "rep"
    write_report(_snapshot(), out, formats=("json", "html"))
    manifest = json.loads((out / MARKER).read_text())
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MARKER)
    assert manifest["files"] == on_disk and "report.json" in on_disk and "report.html" in on_disk


def test_a_file_added_to_an_earlier_report_makes_the_rerun_refuse_and_is_kept(tmp_path):
    out = tmp_path / "rep"
    write_report(_snapshot(), out, formats=("json",))
    write_report(_snapshot(), out, formats=("json",))  # a plain rerun replaces it
    (out / "my-analysis.ipynb").write_text("{}")
    (out / "figures" / "annotated.png").write_bytes(b"png")
    with pytest.raises(MedauditError, match=r"did not write \(figures/annotated.png, my-analysis.ipynb\)") as exc:
        write_report(_snapshot(), out, formats=("json",))
    assert exc.value.param == "out_dir"
    assert (out / "my-analysis.ipynb").read_text() == "{}" and (out / "figures" / "annotated.png").is_file()
    (out / "my-analysis.ipynb").unlink()
    (out / "figures" / "annotated.png").unlink()
    (out / ".DS_Store").write_bytes(b"x")  # file-browser litter is not the user's work
    write_report(_snapshot(), out, formats=("json",))


def test_a_report_folder_from_before_the_manifest_is_judged_by_the_names_a_report_writes(tmp_path):
    out = tmp_path / "old"
    (out / "figures").mkdir(parents=True)
    (out / "report.json").write_text("{}")
    (out / "figures" / "roc.png").write_bytes(b"png")
    (out / MARKER).write_text("written by medaudit; this folder is replaced as a whole by the next run\n")
    check_output_dir(out)  # only names an old report wrote: replaceable
    (out / "model.pt").write_bytes(b"weights")
    with pytest.raises(MedauditError, match=r"did not write \(model.pt\)"):
        check_output_dir(out)


def test_render_keeps_the_same_rule(tmp_path):
    src = tmp_path / "src"
    write_report(_snapshot(), src, formats=("json",))
    out = tmp_path / "rendered"
    r = CliRunner().invoke(main, ["render", str(src / "report.json"), "-o", str(out), "--format", "html"])
    assert r.exit_code == 0, r.output
    (out / "notes.md").write_text("mine")
    r = CliRunner().invoke(main, ["render", str(src / "report.json"), "-o", str(out), "--format", "html"])
    _one_line_exit_2(r)
    assert "notes.md" in r.output and (out / "notes.md").read_text() == "mine"


# -- cam ----------------------------------------------------------------------------------------


def _cam_args(ckpt, data, out, *extra):
    return ["cam", "--model", str(ckpt), "--data", str(data), "--classes", "a,b,c", "--per-group", "1",
            "-o", str(out), *extra]


def test_cam_with_a_bad_layer_leaves_no_empty_output_folder(tmp_path, tiny_checkpoint, tiny_npz):
    out = tmp_path / "new" / "cams_out"
    r = CliRunner().invoke(main, _cam_args(tiny_checkpoint, tiny_npz, out, "--cam-layer", "layer9"))
    assert r.exit_code == 2 and "layer9" in r.output
    assert not (tmp_path / "new").exists()


def test_cam_refuses_to_replace_a_tiles_folder_holding_foreign_files(tmp_path, tiny_checkpoint, tiny_npz):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, _cam_args(tiny_checkpoint, tiny_npz, out))
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, _cam_args(tiny_checkpoint, tiny_npz, out)).exit_code == 0  # rerun: fine
    (out / "cams" / "figure-for-paper.png").write_bytes(b"mine")
    r = CliRunner().invoke(main, _cam_args(tiny_checkpoint, tiny_npz, out))
    _one_line_exit_2(r)
    assert "figure-for-paper.png" in r.output and (out / "cams" / "figure-for-paper.png").read_bytes() == b"mine"

    other = tmp_path / "other"
    other.mkdir()
    (other / "cams.json").write_text("my own json")
    r = CliRunner().invoke(main, _cam_args(tiny_checkpoint, tiny_npz, other))
    _one_line_exit_2(r)
    assert (other / "cams.json").read_text() == "my own json"


# -- destinations that cannot be written, and outputs over inputs --------------------------------


@pytest.mark.parametrize("command", ["predict", "cam", "bench", "predict-csv"])
@pytest.mark.parametrize("where", ["afile/sub", "/proc/medaudit-x"])
def test_an_unwritable_destination_fails_before_any_work(tmp_path, tiny_checkpoint, tiny_npz, command, where):
    (tmp_path / "afile").write_text("x")
    dest = str(tmp_path / where) if not where.startswith("/") else where
    ckpt, data = str(tiny_checkpoint), str(tiny_npz)
    args = {
        "predict": ["predict", "--model", ckpt, "--data", data, "--classes", "a,b,c", "-o", dest + ".npz"],
        "predict-csv": ["predict", "--model", ckpt, "--data", data, "--classes", "a,b,c",
                        "-o", str(tmp_path / "p.npz"), "--csv", dest + ".csv"],
        "cam": _cam_args(ckpt, data, dest),
        "bench": ["bench", "--models", ckpt, "--batch-sizes", "1", "--repeats", "1", "--warmup", "0",
                  "--json", dest + ".json"],
    }[command]
    r = CliRunner().invoke(main, args)
    _one_line_exit_2(r)
    flag = {"predict": "-o", "predict-csv": "--csv", "cam": "-o", "bench": "--json"}[command]
    assert r.output.startswith(f"Error: {flag}"), r.output
    assert not (tmp_path / "p.npz").exists(), "refused before the forward pass"


def test_predict_never_writes_over_its_checkpoint_or_data(tmp_path, tiny_checkpoint, tiny_npz):
    before = tiny_checkpoint.read_bytes()
    link = tmp_path / "link.pt"
    os.link(tiny_checkpoint, link)
    for target, flag in ((tiny_checkpoint, "-o"), (link, "-o"), (tiny_npz, "--csv")):
        extra = ["-o", str(target)] if flag == "-o" else ["-o", str(tmp_path / "p.npz"), "--csv", str(target)]
        r = CliRunner().invoke(main, ["predict", "--model", str(tiny_checkpoint), "--data", str(tiny_npz),
                                      "--classes", "a,b,c", *extra])
        _one_line_exit_2(r)
        assert "would destroy it" in r.output
    assert tiny_checkpoint.read_bytes() == before and np.load(tiny_npz)["test_images"].shape == (12, 16, 16)


def test_check_output_file_refuses_a_folder_and_accepts_a_new_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(MedauditError, match="is a folder"):
        check_output_file(tmp_path / "d", param="output")
    assert check_output_file(tmp_path / "new" / "x.npz") == (tmp_path / "new" / "x.npz")


def test_created_dir_removes_only_the_empty_folders_it_made(tmp_path):
    (tmp_path / "keep").mkdir()
    with pytest.raises(RuntimeError), created_dir(tmp_path / "keep" / "a" / "b"):
        raise RuntimeError
    assert (tmp_path / "keep").is_dir() and not (tmp_path / "keep" / "a").exists()
    with pytest.raises(RuntimeError), created_dir(tmp_path / "keep" / "c") as d:
        (d / "written.txt").write_text("x")
        raise RuntimeError
    assert (tmp_path / "keep" / "c" / "written.txt").is_file(), "a folder holding files is never removed"
    with created_dir(tmp_path / "ok") as d:
        pass
    assert d.is_dir()
