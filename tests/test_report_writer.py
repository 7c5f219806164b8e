"""Atomic report folder writing and the `medaudit render` command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import medaudit.report.pdf as pdf_mod
import medaudit.report.writer as writer_mod
from medaudit.cli.render import render
from medaudit.errors import MedauditError
from medaudit.report import render_from_snapshot, write_report
from tests.snapshot_factory import make_snapshot, minimal_snapshot


def _siblings(parent):
    return sorted(p.name for p in parent.iterdir())


def test_failure_in_pdf_step_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated crash while writing the PDF")

    monkeypatch.setattr(pdf_mod, "render_pdf", boom)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError, match="simulated"):
        write_report(minimal_snapshot(), out, formats=("html", "pdf", "json"))
    assert _siblings(tmp_path) == []  # no out_dir, no temporary folder


def test_failure_keeps_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(minimal_snapshot(), out, formats=("json",))
    before = (out / "report.json").read_text()
    monkeypatch.setattr(pdf_mod, "render_pdf", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    snap = minimal_snapshot()
    snap["title"] = "second"
    with pytest.raises(KeyboardInterrupt):
        write_report(snap, out, formats=("json", "pdf"))
    assert (out / "report.json").read_text() == before
    assert _siblings(tmp_path) == ["report"]


def test_success_replaces_folder_and_copies_extras(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(MedauditError, match="not empty"):  # not an earlier report: never wiped
        write_report(minimal_snapshot(), out, formats=("json",))
    assert (out / "stale.txt").read_text() == "old"
    (out / "report.json").write_text("{}")  # an earlier report, but stale.txt is not one of its files
    with pytest.raises(MedauditError, match=r"did not write \(stale.txt\)"):
        write_report(minimal_snapshot(), out, formats=("json",))
    (out / "stale.txt").unlink()
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_text("old")  # what an earlier report wrote is replaced
    csv = tmp_path / "p.csv"
    csv.write_text("id,prob\n")
    written = write_report(minimal_snapshot(), out, formats=("html", "json"),
                           extra_files={"predictions/m.csv": csv})
    assert not (out / "figures" / "stale.png").exists()
    assert (out / "predictions" / "m.csv").read_text() == "id,prob\n"
    assert set(written) == {"html", "json", "figures"} and written["html"].is_file()
    assert _siblings(tmp_path) == ["p.csv", "report"]
    with pytest.raises(MedauditError, match="extra file"):
        write_report(minimal_snapshot(), tmp_path / "r2", formats=("json",), extra_files={"../x": csv})
    with pytest.raises(MedauditError, match="docx: unknown format") as exc:
        write_report(minimal_snapshot(), tmp_path / "r3", formats=("docx",))
    assert exc.value.param == "formats"  # the CLI names its own option (--format)
    assert _siblings(tmp_path) == ["p.csv", "report"]


def test_cli_render(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    snap = minimal_snapshot()
    (src / "report.json").write_text(json.dumps(snap), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(render, [str(src / "report.json"), "-o", str(tmp_path / "out"), "--format", "html,json"])
    assert res.exit_code == 0, res.output
    assert "html:" in res.output and (tmp_path / "out" / "report.html").is_file()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["title"] == snap["title"]
    res = runner.invoke(render, [str(tmp_path / "missing.json"), "-o", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "not found" in res.output
    (src / "bad.json").write_text("{not json")
    res = runner.invoke(render, [str(src / "bad.json"), "-o", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "bad.json: not valid JSON" in res.output
    res = runner.invoke(render, [str(src / "report.json"), "-o", str(src)])
    assert res.exit_code == 2 and f"-o: {src}: is the folder of the snapshot itself" in res.output
    res = runner.invoke(render, [str(src / "report.json"), "-o", str(tmp_path / "o4"), "--format", "html,doc"])
    assert res.exit_code == 2 and "--format: doc: unknown format" in res.output


def test_render_from_snapshot_refuses_own_folder(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(minimal_snapshot()))
    with pytest.raises(MedauditError, match="folder of the snapshot"):
        render_from_snapshot(tmp_path / "report.json", tmp_path)


def test_render_reuses_saved_figures_unless_asked(tmp_path, monkeypatch):
    first = write_report(make_snapshot(2), tmp_path / "a", formats=("json", "html"))
    figs = json.loads(first["json"].read_text())["figures"]
    assert figs, "the minimal snapshot should produce figures"
    calls = []
    orig = writer_mod.make_figures
    monkeypatch.setattr(writer_mod, "make_figures", lambda *a, **k: calls.append(1) or orig(*a, **k))
    render_from_snapshot(first["json"], tmp_path / "b", formats=("html",))
    assert calls == [] and all((tmp_path / "b" / rel).is_file() for rel in figs.values())
    render_from_snapshot(first["json"], tmp_path / "b", formats=("html",))  # again into its own output (no JSON)
    assert (tmp_path / "b" / "report.html").is_file() and not (tmp_path / "b" / "report.json").exists()
    render_from_snapshot(first["json"], tmp_path / "c", formats=("html",), redraw_figures=True)
    assert calls == [1]
    (tmp_path / "a" / next(iter(figs.values()))).unlink()  # a missing figure → all redrawn
    render_from_snapshot(first["json"], tmp_path / "d", formats=("html",))
    assert calls == [1, 1]

