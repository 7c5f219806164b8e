"""``medaudit gate``: exit codes 0/1/2, the table, the JUnit/Markdown/JSON files, baselines."""

from __future__ import annotations

import copy
import json
import re

import pytest
from click.testing import CliRunner

from medaudit.cli import main
from tests.snapshot_factory import build_model, build_snapshot, mv


@pytest.fixture
def snap():
    return build_snapshot()


def _cli(*args):
    return CliRunner().invoke(main, ["gate", *map(str, args)])


@pytest.fixture
def report_file(tmp_path, snap):
    p = tmp_path / "report.json"
    p.write_text(json.dumps(snap), encoding="utf-8")
    return p


def test_cli_exit_0_and_table(report_file):
    res = _cli(report_file, "--require", "recall[glioma]>=0.9", "-r", 'resnet18:recall["no tumor"]>=0.9')
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:4] == ["RESULT", "GATE", "MODEL", "CHECKED"]
    assert len(lines) == 1 + 3 + 1 and all(line.startswith("PASS") for line in lines[1:4])
    assert lines[-1] == "gate passed: 3 of 3 checks passed"


def test_cli_exit_1_with_outputs(report_file, tmp_path):
    junit, md, js = tmp_path / "out" / "gate.xml", tmp_path / "gate.md", tmp_path / "gate.json"
    res = _cli(report_file, "-r", "recall[glioma]>=0.95", "--on", "lower", "--junit", junit, "--markdown", md,
               "--json", js)
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and res.output.rstrip().endswith("gate FAILED: 2 of 2 checks failed")
    data = json.loads(js.read_text(encoding="utf-8"))
    assert (data["passed"], data["n_checks"], data["on"]) == (False, 2, "lower")
    assert junit.exists() and "❌" in md.read_text(encoding="utf-8")


@pytest.mark.parametrize("args, fragment", [
    (["-r", "bogus>=0.5"], "unknown metric 'bogus'"),
    (["-r", "densenet:auc>=0.5"], "valid: 'resnet18', 'vit_tiny'"),
    (["-r", "recall[x]>=0.5"], "unknown class 'x'"),
    (["-r", "recall>>0.5"], "expected a number"),
    ([], "nothing to check"),
    (["--max-drop", "recall=0.02"], "--max-drop needs --baseline"),
    (["-r", "auc>=0.5", "--on", "middle"], "Invalid value for '--on'"),
])
def test_cli_exit_2(report_file, args, fragment):
    res = _cli(report_file, *args)
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output


def test_cli_exit_2_files(tmp_path, report_file, snap):
    assert _cli(tmp_path / "nope.json", "-r", "auc>=0.5").exit_code == 2
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({**snap, "schema_version": "3.0"}), encoding="utf-8")
    res = _cli(v2, "-r", "auc>=0.5")
    assert res.exit_code == 2 and "schema_version '3.0' is not supported" in res.output
    res = _cli(report_file, "--baseline", v2, "--max-drop", "recall=0.02")
    assert res.exit_code == 2 and "v2.json" in res.output
    one = tmp_path / "one.json"
    one.write_text(json.dumps(build_snapshot(models=[build_model("resnet18", [48, 45, 50, 47])])), encoding="utf-8")
    res = _cli(report_file, "--baseline", one, "--max-drop", "recall=0.02")
    assert res.exit_code == 2 and "model names differ" in res.output


def test_cli_baseline_pass_and_fail(tmp_path, report_file, snap):
    worse = copy.deepcopy(snap)
    worse["models"][1]["metrics"]["auc_macro"] = mv(0.93, 0.90, 0.95, "bootstrap")
    new = tmp_path / "new.json"
    new.write_text(json.dumps(worse), encoding="utf-8")
    assert _cli(report_file, "--baseline", report_file, "--max-drop", "auc=0.01").exit_code == 0
    res = _cli(new, "--baseline", report_file, "--max-drop", "auc=0.01", "--max-drop", "recall=0.02")
    assert res.exit_code == 1
    fails = [line for line in res.output.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and "vit_tiny" in fails[0] and "baseline 0.97 - 0.01" in fails[0]


def test_on_choices_are_the_gates_list():
    from medaudit.cli.gate import gate
    from medaudit.gate import ON_CHOICES

    (on,) = [p for p in gate.params if p.name == "on"]
    assert list(on.type.choices) == list(ON_CHOICES)


# -- clinical-use checks (issue 20) on a snapshot made by the audit path ---------------------------------


@pytest.fixture(scope="module")
def clinical_files(tmp_path_factory):
    from tests.test_gate_clinical import clinical_snapshot

    d = tmp_path_factory.mktemp("clinical")
    full, no_val = d / "report.json", d / "no_val.json"
    full.write_text(json.dumps(clinical_snapshot()[0]), encoding="utf-8")
    no_val.write_text(json.dumps(clinical_snapshot(val=0, bootstrap=0)[0]), encoding="utf-8")
    return full, no_val


def test_cli_clinical_checks_pass(clinical_files):
    res = _cli(clinical_files[0], "-r", "net_benefit@0.01>treat_none", "-r", "coverage>=0.5", "-r", "aurc<=0.5",
               "--on", "conservative")
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.output.splitlines()[1:-1]]
    assert [(r[0], r[3], r[4]) for r in rows] == [
        ("PASS", "net_benefit@0.01", "lower"), ("PASS", "net_benefit@0.01", "lower"), ("PASS", "coverage", "lower"),
        ("PASS", "coverage", "lower"), ("PASS", "aurc", "upper"), ("PASS", "aurc", "upper")]
    assert res.output.rstrip().endswith("gate passed: 6 of 6 checks passed")


def test_cli_clinical_failures_and_their_files(clinical_files, tmp_path):
    junit, md, js = tmp_path / "gate.xml", tmp_path / "gate.md", tmp_path / "gate.json"
    res = _cli(clinical_files[1], "-r", "a:sensitivity_guaranteed>=0.9", "-r", "a:net_benefit@0.1>treat_all",
               "-r", "a:coverage[glioma]>1", "--on", "lower", "--junit", junit, "--markdown", md, "--json", js)
    assert res.exit_code == 1, res.output
    assert res.output.rstrip().endswith("gate FAILED: 3 of 3 checks failed")
    assert "the choice of thresholds was skipped: no validation split" in res.output
    assert "no confidence interval (the report has no bootstrap band here (made with --bootstrap 0))" in res.output
    xml = junit.read_text(encoding="utf-8")
    assert xml.count("<failure") == 3 and "net_benefit@0.1&gt;treat_all [net_benefit@0.1-treat_all]" in xml
    assert "a: sensitivity_guaranteed (lower 95% bound) FAILED: the choice of thresholds was skipped" in xml
    text = md.read_text(encoding="utf-8")
    assert "| ❌ | a:net_benefit@0.1&gt;treat_all | a | net_benefit@0.1-treat_all | lower |" in text
    assert "| ❌ | a:coverage[glioma]&gt;1 |" in text  # no validation: the sets were not made, so undefined
    data = json.loads(js.read_text(encoding="utf-8"))
    assert [r["metric"] for r in data["results"]] == ["sensitivity_guaranteed", "net_benefit@0.1-treat_all",
                                                      "coverage[glioma]"]
    assert data["results"][1]["point"] is not None and data["results"][1]["value"] is None


@pytest.mark.parametrize("expr, fragment", [
    ("ppv@prev=0.05>=0.3", "the report was made at prevalence 0.02; rerun `medaudit report` with --prevalence 0.05"),
    ("net_benefit@0.333>treat_all", "0.333 is not a threshold probability of the report's decision curves "
                                    "(0.01 to 0.5 in steps of 0.01)"),
    ("net_benefit@0.1>>treat_all", "expected a number or treat_all / treat_none"),
    ("aurc[glioma]<=0.1", "aurc has no per-class value"),
    ("coverage_lax>=0.9", "clinical use: net_benefit@T, ppv@prev=P"),
])
def test_cli_clinical_bad_expressions_exit_2(clinical_files, expr, fragment):
    res = _cli(clinical_files[0], "-r", expr)
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


# -- subgroup checks (issue 18) on snapshots with the real subgroup block ----------------------------------


@pytest.fixture(scope="module")
def subgroup_file(tmp_path_factory):
    from tests.test_gate_subgroups import subgroup_snapshot

    p = tmp_path_factory.mktemp("subgroups") / "report.json"
    p.write_text(json.dumps(subgroup_snapshot()[0]), encoding="utf-8")
    return p


def test_cli_subgroup_checks_pass(subgroup_file):
    res = _cli(subgroup_file, "-r", "m1:recall{site=B}>=0.1", "-r", "min_group(recall, site)>=0.1",
               "-r", "max_gap(recall, sex)<=0.9", "--on", "conservative")
    assert res.exit_code == 0, res.output
    rows = res.output.splitlines()[1:-1]
    assert [r.split()[0] for r in rows] == ["PASS"] * 5 and all("note: " in r for r in rows)
    assert [re.split(r"\s{2,}", r)[2] for r in rows] == ["m1", "m1", "m2", "m1", "m2"]
    assert "lowest recall lower bound: site=" in res.output
    assert "largest |gap| upper bound: sex=" in res.output
    assert res.output.rstrip().endswith("gate passed: 5 of 5 checks passed")


def test_cli_subgroup_failures_and_their_files(subgroup_file, tmp_path):
    junit, md, js = tmp_path / "gate.xml", tmp_path / "gate.md", tmp_path / "gate.json"
    res = _cli(subgroup_file, "-r", "m1:max_gap(recall, site)<=0.001", "-r", "m1:min_group(recall, sex & site)>=0",
               "-r", "m1:recall{site=A}>=0", "--on", "upper", "--junit", junit, "--markdown", md, "--json", js)
    assert res.exit_code == 1, res.output
    assert res.output.rstrip().endswith("gate FAILED: 2 of 3 checks failed")
    assert "too few to estimate" in res.output and "--allow-partial leaves them out" in res.output
    xml = junit.read_text(encoding="utf-8")
    assert xml.count("<failure") == 2
    assert "m1: max_gap(recall, site) (upper 95% bound) FAILED:" in xml and "not &lt;= 0.001" in xml
    text = md.read_text(encoding="utf-8")
    assert "| ❌ | m1:max_gap(recall, site)&lt;=0.001 | m1 | max_gap(recall, site) | upper |" in text
    assert "| ✅ | m1:recall{site=A}&gt;=0 | m1 | recall{site=A} | upper |" in text
    data = json.loads(js.read_text(encoding="utf-8"))
    assert [r["metric"] for r in data["results"]] == ["max_gap(recall, site)", "min_group(recall, sex & site)",
                                                      "recall{site=A}"]
    assert data["results"][1]["value"] is None and "too few to estimate" in data["results"][1]["reason"]
    assert "largest |gap| upper bound" in data["results"][0]["note"]
    # --allow-partial leaves the too-few groups out, and says so
    res = _cli(subgroup_file, "-r", "m1:min_group(recall, sex & site)>=0", "--allow-partial")
    assert res.exit_code == 0 and "left out (no value, allowed by --allow-partial)" in res.output


@pytest.mark.parametrize("expr, fragment", [
    ("recall{region=B}>=0.5", "no subgroup column 'region' in the report; valid: 'site', 'sex', 'sex & site'"),
    ("min_group(recall, site)<=0.5", "passes when a single group meets it"),
    ("recall[normal]{site=B}>=0.5", "subgroup metrics are of disease (pneumonia) against healthy (normal)"),
])
def test_cli_subgroup_bad_expressions_exit_2(subgroup_file, expr, fragment):
    res = _cli(subgroup_file, "-r", expr)
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_subgroup_check_on_a_report_without_group_by(report_file):
    res = _cli(report_file, "-r", "recall{site=B}>=0.5")
    assert res.exit_code == 2 and "rerun `medaudit report` with --group-by" in res.output
