"""medaudit.checklists (issue 17): items filled from a snapshot, their status, the golden tables, the
report appendix, and untrusted input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from medaudit.checklists import CHECKLISTS, FILLED, NAMES, NEEDS_AUTHOR, PARTLY, check_names, facts, fill, fill_all
from medaudit.checklists.items import Item, Part, evaluate
from medaudit.checklists.output import to_csv
from medaudit.errors import MedauditError
from tests.checklist_fixtures import bare_snapshot, full_snapshot

GOLDEN = Path(__file__).parent / "checklists_golden"


def _status_table(snapshot: dict) -> list[dict]:
    """``checklist, number, status`` rows of every item (the committed golden tables' columns)."""
    rows = list(csv.DictReader(io.StringIO(to_csv(fill_all(snapshot, NAMES)))))
    return [{"checklist": r["checklist"], "number": r["number"], "status": r["status"]} for r in rows]


def _read_golden(name: str) -> list[dict]:
    with (GOLDEN / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _item(snapshot: dict, checklist: str, number: str) -> dict:
    return next(i for i in fill(snapshot, checklist)["items"] if i["number"] == number)


# ----------------------------------------------------------------------------- status rule


def test_status_is_filled_only_when_every_part_is_answered():
    yes, no = (lambda s: Part("a", "x")), (lambda s: Part("b", None, "needs b"))
    assert evaluate(Item("1", "t", "data", (yes, yes)), {})["status"] == FILLED
    partly = evaluate(Item("1", "t", "data", (yes, no)), {})
    assert partly["status"] == PARTLY and partly["value"] == "a: x" and partly["missing"] == "b: needs b"
    assert evaluate(Item("1", "t", "data", (no,)), {})["status"] == NEEDS_AUTHOR
    assert evaluate(Item("1", "t", "data", (lambda s: [Part("a", "x"), Part("c", None, "m")],)), {})["status"] == PARTLY


def test_every_item_is_declared_once_with_a_known_section():
    from medaudit.report.context import SECTIONS

    sections = {sid for sid, _ in SECTIONS} | {"external"}  # the external-cohort section (issue of helper B)
    for mod in CHECKLISTS.values():
        numbers = [i.number for i in mod.ITEMS]
        assert len(numbers) == len(set(numbers)), mod.NAME
        assert all(i.section in sections for i in mod.ITEMS), mod.NAME
        assert mod.SOURCES and mod.SOURCE


# ----------------------------------------------------------------------------- golden tables


def test_full_snapshot_matches_the_golden_status_of_every_item():
    assert _status_table(full_snapshot()) == _read_golden("full.csv")


def test_bare_snapshot_matches_the_golden_status_of_every_item():
    assert _status_table(bare_snapshot()) == _read_golden("bare.csv")


@pytest.mark.parametrize(("checklist", "number", "needle"), [
    ("claim2024", "33", "--external"), ("claim2024", "36", "no metadata per split"),
    ("claim2024", "30", "--robustness"), ("tripod-ai", "12f", "needs a validation split"),
    ("tripod-ai", "23b", "no site column"), ("stard-ai", "29", "--external"),
    ("stard-ai", "28", "no metadata per split"),
])
def test_without_metadata_external_cohort_or_validation_the_items_need_the_author(checklist, number, needle):
    it = _item(bare_snapshot(), checklist, number)
    assert it["status"] == NEEDS_AUTHOR and needle in it["missing"] and it["value"] == ""


@pytest.mark.parametrize(("checklist", "number", "missing_part"), [
    ("claim2024", "19", "validation split"), ("claim2024", "20", "patient-level disjointness"),
    ("tripod-ai", "20c", "difference from development data"), ("tripod-ai", "23a", "key subgroups"),
    ("tripod-ai", "15", "how thresholds were chosen"), ("stard-ai", "25", "demographics per split"),
])
def test_partly_items_name_the_missing_part(checklist, number, missing_part):
    full, bare = _item(full_snapshot(), checklist, number), _item(bare_snapshot(), checklist, number)
    assert full["status"] == FILLED
    assert bare["status"] == PARTLY and f"{missing_part}: " in bare["missing"]


# ----------------------------------------------------------------------------- values against references


def test_sensitivity_precision_is_half_the_wilson_interval_of_the_missed_disease_counts():
    snap = full_snapshot()
    value = facts.sensitivity_precision(snap).value
    for m in snap["models"]:
        ov = m["fn_risk"]["overall"]
        lo, hi = proportion_confint(ov["k"], ov["n"], alpha=0.05, method="wilson")
        assert f"{m['name']}: sensitivity known to \u00b1{(hi - lo) / 2:.3f} (95% CI half-width, {ov['n']} disease" \
            in value


def test_partitions_class_balance_and_demographics_restate_the_dataset_block():
    snap = full_snapshot()
    sp = snap["dataset"]["splits"]
    assert facts.partitions(snap).value == ", ".join(
        f"{k} {sp[k]['n']} images ({sp[k]['n_patients']} patients)" for k in ("train", "val", "test"))
    for k in ("train", "val", "test"):
        counts = ", ".join(f"{c} {n}" for c, n in sp[k]["class_counts"].items())
        assert f"{k}: {counts}" in facts.class_balance(snap).value
        sex = sp[k]["groups"]["sex"]
        assert f"sex (F {sex['F']}, M {sex['M']})" in facts.demographics(snap).value
    leak = snap["dataset"]["patients"]["across"]
    shared = {k: v["n"] for k, v in leak.items() if v["n"]}
    assert shared and all(f"{k} {n}" in facts.patient_disjointness(snap).value for k, n in shared.items())


def test_confusion_matrix_and_estimates_are_the_snapshot_numbers():
    snap = full_snapshot()
    m = snap["models"][0]
    cm = m["metrics"]["confusion_matrix"]
    text = facts.confusion(snap).value
    for lab, row in zip(cm["labels"], cm["counts"], strict=True):
        assert f"{lab} \u2192 [{', '.join(map(str, row))}]" in text
    mv = m["metrics"]["auc_macro"]
    assert facts.fmt_estimate(mv) == (f"{mv['value']:.3f} (95% CI {mv['ci_low']:.3f}\u2013{mv['ci_high']:.3f}, "
                                      f"{mv['ci_method']})")
    assert facts.fmt_estimate({"value": None, "reason": "x"}) is None


def test_internal_testing_separates_models_selected_on_the_test_split():
    it = _item(full_snapshot(), "claim2024", "32")  # the factory's vit_tiny was selected on test
    assert it["status"] == PARTLY
    assert "resnet18 (selected on val)" in it["value"] and "vit_tiny" in it["missing"]


# ----------------------------------------------------------------------------- names, purity, untrusted input


def test_unknown_checklist_is_one_line_naming_the_valid_ones():
    with pytest.raises(MedauditError) as err:
        check_names(["claim2024", "consort-ai"])
    assert "consort-ai" in str(err.value) and all(n in str(err.value) for n in NAMES) and err.value.param
    assert check_names(["stard-ai", "stard-ai", "claim2024"]) == ["stard-ai", "claim2024"]


def test_fill_is_a_pure_function_of_the_snapshot():
    snap = full_snapshot()
    before = json.dumps(snap)
    assert fill_all(snap) == fill_all(json.loads(before))  # the same from its JSON text
    assert json.dumps(snap) == before  # and the snapshot is not modified
    assert fill_all({"settings": {"checklists": ["claim2024", "no-such", 3]}}) == [fill({}, "claim2024")]
    assert fill_all({}) == []


@pytest.mark.parametrize("junk", [None, 3, "x", [], {"a": 1}, [None, {"value": "nan"}]])
def test_malformed_blocks_read_as_absent(junk):
    snap = full_snapshot()
    for key in ("dataset", "external", "robustness", "comparisons", "clinical", "run", "settings"):
        snap[key] = junk
    snap["models"] = [junk, {"name": junk, "metrics": junk, "fn_risk": {"overall": junk}, "cam": {"tiles": junk},
                             "checkpoint": junk, "subgroups": {"columns": {"site": junk}}}]
    for name in NAMES:
        for it in fill(snap, name)["items"]:
            assert it["status"] in (FILLED, PARTLY, NEEDS_AUTHOR)


def test_checklists_import_neither_torch_nor_numpy():
    code = ("import sys, medaudit.checklists, medaudit.checklists.output; "
            "print(any(m in sys.modules for m in ('torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the report appendix


def test_report_html_has_one_table_per_requested_checklist_linking_to_sections(tmp_path):
    from medaudit.report.html import render_html

    snap = full_snapshot()
    html = render_html(snap, tmp_path)
    assert html.count('class="checklist tiny"') == 3 and 'id="s-checklists"' in html
    assert '<a href="#s-data">data</a>' in html and '<a href="#s-robustness">robustness</a>' in html
    assert "<script>alert(1)</script>" not in html  # an untrusted class name stays text
    snap["settings"]["checklists"] = ["tripod-ai"]
    assert render_html(snap, tmp_path).count('class="checklist tiny"') == 1
    del snap["settings"]["checklists"]  # an older snapshot: no appendix at all
    assert 'id="s-checklists"' not in render_html(snap, tmp_path)


def test_external_cohort_items_restate_the_cohort_entry():
    snap = full_snapshot()
    cohort = snap["external"]["cohorts"][0]
    text = facts.external_testing(snap).value
    for m in cohort["models"]:
        assert f"{m['name']} balanced accuracy {facts.fmt_estimate(m['metrics']['balanced_accuracy'])}" in text
    assert facts.external_shift(snap).value.startswith(f"{cohort['name']}: {cohort['shift']['verdict']}")
    site = {"name": "site = B", "n": 40, "models": [{"name": "resnet18", "metrics": {"auc_macro": {"value": 0.8}}}]}
    snap["external"]["sites"] = [site]
    assert facts.site_heterogeneity(snap).value == "site = B (40 images): resnet18 AUC 0.800 (no CI)"
