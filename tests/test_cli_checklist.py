"""``medaudit checklist`` and ``medaudit report --checklist`` (issue 17)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from medaudit.checklists import NAMES, fill_all
from medaudit.checklists.output import to_markdown
from medaudit.cli import main
from tests.checklist_fixtures import bare_snapshot, full_snapshot


@pytest.fixture
def snapshot_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(full_snapshot()), encoding="utf-8")
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_markdown_is_the_filled_tables(snapshot_file):
    r = _run("checklist", snapshot_file, "--checklist", "claim2024")
    assert r.exit_code == 0, r.output
    assert r.output.rstrip("\n") == to_markdown(fill_all(full_snapshot(), ["claim2024"])).rstrip("\n")
    assert "| 33 \u2020 |" in r.output and "&lt;script&gt;" in r.output and "<script>" not in r.output


def test_csv_has_one_row_per_item_and_defaults_to_the_recorded_checklists(snapshot_file, tmp_path):
    snap = json.loads(snapshot_file.read_text())
    snap["settings"]["checklists"] = ["stard-ai"]
    snapshot_file.write_text(json.dumps(snap))
    r = _run("checklist", snapshot_file, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert r.exit_code == 0 and {row["checklist"] for row in rows} == {"stard-ai"}
    assert [row["number"] for row in rows] == [i["number"] for i in fill_all(snap, ["stard-ai"])[0]["items"]]
    del snap["settings"]["checklists"]  # none recorded: all three
    snapshot_file.write_text(json.dumps(snap))
    rows = list(csv.DictReader(io.StringIO(_run("checklist", snapshot_file, "--format", "csv").output)))
    assert [r["checklist"] for r in rows[:1]] == ["claim2024"] and {r["checklist"] for r in rows} == set(NAMES)


def test_html_page_links_items_to_the_report_beside_it(snapshot_file, tmp_path):
    out = tmp_path / "checklists.html"
    r = _run("checklist", snapshot_file, "--format", "html", "--checklist", "tripod-ai", "-o", out)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert '<a href="report.html#s-subgroups">subgroups</a>' in html and html.count("<tr><td") == 9
    assert "<script>alert(1)</script>" not in html


@pytest.mark.parametrize(("args", "fragment"), [
    (["--checklist", "consort-ai"], "--checklist: unknown checklist 'consort-ai'; choose from: claim2024"),
    (["--format", "pdf"], "Invalid value for '--format'"),
])
def test_bad_options_exit_2_in_one_line(snapshot_file, args, fragment):
    r = _run("checklist", snapshot_file, *args)
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output


def test_bad_or_missing_snapshot_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "2.0", "models": [')
    out = tmp_path / "c.md"
    for src in (bad, tmp_path / "none.json"):
        r = _run("checklist", src, "-o", out)
        assert r.exit_code == 2 and str(src) in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_out_may_not_be_the_snapshot(snapshot_file):
    before = snapshot_file.read_text()
    r = _run("checklist", snapshot_file, "-o", snapshot_file)
    assert r.exit_code == 2 and "would destroy it" in r.output and snapshot_file.read_text() == before


def test_bare_snapshot_prints_what_each_item_needs(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(bare_snapshot()))
    r = _run("checklist", path, "--checklist", "claim2024")
    assert r.exit_code == 0 and "| 33 \u2020 | Evaluation on external test data" in r.output
    assert "needs the author | \u2014 | external testing: no external cohort" in r.output


def test_report_refuses_an_unknown_checklist_before_inference(tmp_path, tiny_checkpoint, monkeypatch):
    import medaudit.pipeline

    def no_inference(*a, **k):
        raise AssertionError("inference ran before --checklist was checked")

    monkeypatch.setattr(medaudit.pipeline, "predict_cached", no_inference)
    r = _run("report", "--models", tiny_checkpoint, "--data", tmp_path, "--no-bench", "--no-cam", "--format", "json",
             "--quiet", "--checklist", "claim2024", "--checklist", "claim", "-o", tmp_path / "r")
    assert r.exit_code == 2, r.output
    assert "--checklist: unknown checklist 'claim'; choose from: claim2024, tripod-ai, stard-ai" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


@pytest.mark.slow  # trains and audits a model end to end (~20 s on 2 cores)
def test_report_records_the_checklists_and_render_redraws_the_appendix(tmp_path):
    from medaudit.data import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data", n_train=4, n_val=2, n_test=3, size=16)
    r = _run("train", "--data", data, "--model", "resnet18", "--img-size", "16", "--epochs", "1", "--batch-size", "8",
             "--quiet", "-o", tmp_path / "r18.pt")
    assert r.exit_code == 0, r.output
    out = tmp_path / "rep"
    r = _run("report", "--models", tmp_path / "r18.pt", "--data", data, "--no-bench", "--no-cam", "--format", "json,html",
             "--bootstrap", "0", "--quiet", "--checklist", "claim2024", "--checklist", "tripod-ai", "--checklist",
             "claim2024", "-o", out)
    assert r.exit_code == 0, r.output
    snap = json.loads((out / "report.json").read_text())
    assert snap["settings"]["checklists"] == ["claim2024", "tripod-ai"]
    html = (out / "report.html").read_text()
    assert html.count('class="checklist tiny"') == 2 and '<a href="#s-data">data</a>' in html
    again = tmp_path / "again"
    r = _run("render", out / "report.json", "-o", again, "--format", "html")
    assert r.exit_code == 0, r.output
    redrawn = (again / "report.html").read_text()
    section = redrawn[redrawn.index('id="s-checklists"'):]
    assert section == html[html.index('id="s-checklists"'):]
