"""Gates: expression parser, evaluation on a snapshot, baseline drops, CLI exit codes."""

from __future__ import annotations

import copy
import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from medaudit.errors import MedauditError
from medaudit.gate.evaluate import load_snapshot, parse_gate, run_gates
from medaudit.gate.parse import parse_max_drop

CLASSES = ["glioma", "meningioma", "no tumor", "pituitary"]
NEGATIVE = "no tumor"
N_PER_CLASS = 50


# ---------------------------------------------------------------- snapshot builder


def mv(value, lo=None, hi=None, method=None, reason=None, **extra):
    """A metric value object as in docs/report-schema.md."""
    return {"value": value, "ci_low": lo, "ci_high": hi, "ci_method": method, "reason": reason, **extra}


def wilson(k, n, z=1.959963984540054):
    """Wilson score interval (hand formula; scipy/statsmodels-free) as a value object."""
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mv(p, max(0.0, centre - half), min(1.0, centre + half), "wilson", k=k, n=n)


def build_model(name, hits, classes=CLASSES, negative=NEGATIVE, **overrides):
    """One model block; ``hits[i]`` of 50 samples of ``classes[i]`` are recalled.

    Half of each disease class's misses are predicted as the negative class (missed disease)."""
    per_class = {}
    missed_total = 0
    for cls, hit in zip(classes, hits, strict=True):
        missed = (N_PER_CLASS - hit) // 2
        if cls != negative:
            missed_total += missed
        per_class[cls] = {
            "support": N_PER_CLASS, "precision": mv(0.9, 0.85, 0.95, "wilson"), "recall": wilson(hit, N_PER_CLASS),
            "specificity": wilson(140, 150), "npv": wilson(145, 150), "f1": mv(0.9, 0.86, 0.94, "bootstrap"),
            "auc": mv(0.97, 0.95, 0.99, "bootstrap"), "ap": mv(0.93, 0.90, 0.96, "bootstrap"),
            "missed_disease_rate": None if cls == negative else wilson(missed, N_PER_CLASS)}
    n = N_PER_CLASS * len(classes)
    n_disease = N_PER_CLASS * sum(c != negative for c in classes)
    mean_recall = sum(hits) / n
    boot = lambda v: mv(v, v - 0.03, v + 0.03, "bootstrap")  # noqa: E731
    metrics = {
        "n": n, "accuracy": wilson(sum(hits), n), "balanced_accuracy": boot(mean_recall), "macro_f1": boot(0.9),
        "weighted_f1": boot(0.9), "macro_precision": boot(0.9), "macro_recall": boot(mean_recall),
        "macro_specificity": boot(0.95), "weighted_precision": boot(0.9), "weighted_recall": boot(mean_recall),
        "auc_macro": mv(0.97, 0.95, 0.985, "bootstrap"), "auc_micro": boot(0.96), "ap_macro": boot(0.93),
        "kappa": boot(0.85), "kappa_quadratic": None, "mcc": boot(0.86),
        "ece": mv(0.04, 0.02, 0.06, "bootstrap"), "brier": mv(0.12),  # brier: no interval on purpose
        "missed_disease_rate": wilson(missed_total, n_disease),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "counts": [], "normalized": []},
        "curves": {"roc": {}, "pr": {}},
        "calibration": {"n_bins": 15, "bin_edges": [], "bin_confidence": [], "bin_accuracy": [], "bin_count": []},
    }
    metrics.update(overrides)
    return {"name": name, "checkpoint": {"path": f"checkpoints/{name}.pt", "arch": name},
            "predictions": {"n": n}, "metrics": metrics, "fn_risk": None, "operating_points": None,
            "cam": None}


def build_snapshot(models=None, classes=CLASSES, fingerprint="ab" * 32, task="multiclass"):
    """A schema-2.0 snapshot: resnet18 (recall 48, 45, 50, 47 of 50) and vit_tiny (worse,
    with an undefined AUC for 'pituitary' and an undefined auc_micro)."""
    if models is None:
        vit = build_model("vit_tiny", [46, 44, 49, 45], auc_micro=mv(None, reason="only one class in y_true"))
        vit["metrics"]["per_class"]["pituitary"]["auc"] = mv(None, reason="no negatives for class 'pituitary'")
        models = [build_model("resnet18", [48, 45, 50, 47]), vit]
    return {"schema_version": "2.0", "title": "t", "author": None, "notes_markdown": None,
            "dataset": {"spec": "synthetic", "fingerprint": fingerprint, "task": task,
                        "class_names": list(classes), "split_evaluated": "test", "splits": {}, "duplicates": None},
            "models": models, "comparisons": None, "findings": [],
            "settings": {"split": "test", "bootstrap": 1000, "seed": 0, "ece_bins": 15,
                         "negative_classes": [NEGATIVE], "negative_classes_source": "auto"},
            "figures": {}, "run": {}}


@pytest.fixture
def snap():
    return build_snapshot()


def by(report, model=None, metric=None):
    return [r for r in report.results if (model is None or r.model == model) and (metric is None or r.metric == metric)]


# ---------------------------------------------------------------- parser


@pytest.mark.parametrize("text, model, metric, cls, op, thr", [
    ("recall[glioma]>=0.95", None, "recall", "glioma", ">=", 0.95),
    ("resnet18:auc>=0.9", "resnet18", "auc", None, ">=", 0.9),
    ("missed_disease_rate<=0.02", None, "missed_disease_rate", None, "<=", 0.02),
    ("  resnet18 :  recall [ glioma ]  >=  .95 ", "resnet18", "recall", "glioma", ">=", 0.95),
    ("recall\t[glioma]\n>\t0.5", None, "recall", "glioma", ">", 0.5),
    ('recall["no tumor"]>=0.9', None, "recall", "no tumor", ">=", 0.9),
    ("recall[no tumor]<0.9", None, "recall", "no tumor", "<", 0.9),
    ("recall['a]b']>=0.9", None, "recall", "a]b", ">=", 0.9),
    ('recall["say \\"hi\\""]>=0.5', None, "recall", 'say "hi"', ">=", 0.5),
    ("recall[glióma]>=0.9", None, "recall", "glióma", ">=", 0.9),
    ("recall[肺炎]>=0.9", None, "recall", "肺炎", ">=", 0.9),
    ('"vit tiny/v2":auc>=0.8', "vit tiny/v2", "auc", None, ">=", 0.8),
    ("vit-tiny.v2:auc>=0.8", "vit-tiny.v2", "auc", None, ">=", 0.8),
    ("Recall[a:b]>=1e-1", None, "recall", "a:b", ">=", 0.1),
    ("missed_disease_rate<=2%", None, "missed_disease_rate", None, "<=", 0.02),
    ("kappa>-0.5", None, "kappa", None, ">", -0.5),
])
def test_parse_valid(text, model, metric, cls, op, thr):
    g = parse_gate(text)
    assert (g.model, g.metric, g.cls, g.op, g.every_class) == (model, metric, cls, op, False)
    assert g.threshold == pytest.approx(thr, abs=1e-15)


def test_parse_every_class_star_vs_quoted_star():
    assert parse_gate("recall[*]>=0.8").every_class
    g = parse_gate('recall["*"]>=0.8')
    assert (g.cls, g.every_class) == ("*", False)


@pytest.mark.parametrize("text, fragment", [
    ("", "metric name"), ("recall", "operator"), ("recall>=", "a number"), ("recall=0.9", "operator"),
    ("recall==0.9", "operator"), ("recall=>0.9", "operator"), ("recall>=abc", "a number"),
    ("recall>=nan", "a number"), ("recall[glioma>=0.9", "']'"), ("recall[]>=0.9", "class name"),
    ('recall["x>=0.9', "closing"), ("recall>=0.9 extra", "end of expression"), (">=0.9", "metric name"),
    ("recall[a[b]>=0.9", "class name"), ('"m" auc>=0.9', "':'"), ("recall>=95", "outside [0, 1]"),
    ("missed_disease_rate<=2", "outside [0, 1]"), ("mcc>=-2", "outside [-1, 1]"),
])
def test_parse_invalid(text, fragment):
    with pytest.raises(MedauditError) as exc:
        parse_gate(text, option="--gate")
    msg = str(exc.value)
    assert fragment in msg and msg.startswith("--gate ") and "\n" not in msg


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=12), st.sampled_from([">=", ">", "<=", "<"]),
       st.floats(0, 1, allow_nan=False))
def test_parse_quoted_class_roundtrip(name, op, thr):
    g = parse_gate(f"recall[{_quote(name)}] {op} {thr!r}")
    assert (g.cls, g.op, g.threshold) == (name, op, thr)


def test_parse_max_drop():
    d = parse_max_drop(" resnet18 : recall [ glioma ] = 2% ")
    assert (d.model, d.metric, d.cls, d.max_drop) == ("resnet18", "recall", "glioma", 0.02)
    assert parse_max_drop("auc=0.01").cls is None
    for bad in ("recall", "recall>=0.02", "recall=-0.01", "recall=abc", "recall=5"):
        with pytest.raises(MedauditError, match="--max-drop"):
            parse_max_drop(bad)


# ---------------------------------------------------------------- evaluation


def test_point_vs_lower_bound(snap):
    # resnet18 glioma recall 48/50 = 0.96 (Wilson 95% CI 0.865..0.989): the point passes
    # 0.95, the lower bound does not -- the reason to gate on the bound on small test sets.
    point = run_gates(snap, ["resnet18:recall[glioma]>=0.95"])
    lower = run_gates(snap, ["resnet18:recall[glioma]>=0.95"], on="lower")
    upper = run_gates(snap, ["resnet18:recall[glioma]>=0.95"], on="upper")
    assert point.passed and not lower.passed and upper.passed
    r = lower.results[0]
    assert (r.on, r.k, r.n, r.point) == ("lower", 48, 50, 0.96)
    from scipy.stats import binomtest

    ci = binomtest(48, 50).proportion_ci(confidence_level=0.95, method="wilson")
    assert r.value == pytest.approx(ci.low, abs=1e-9) and r.ci_high == pytest.approx(ci.high, abs=1e-9)
    assert r.value == snap["models"][0]["metrics"]["per_class"]["glioma"]["recall"]["ci_low"]
    assert run_gates(snap, ["resnet18:recall[glioma]>=0.86"], on="lower").passed


def test_conservative_picks_the_unfavourable_bound(snap):
    rep = run_gates(snap, ["resnet18:ece<=0.05", "resnet18:auc>=0.96"], on="conservative")
    ece, auc = rep.results
    assert (ece.on, ece.value, ece.passed) == ("upper", 0.06, False)
    assert (auc.on, auc.value, auc.passed) == ("lower", 0.95, False)


def test_no_model_prefix_gives_one_result_per_model(snap):
    rep = run_gates(snap, ["accuracy>=0.9"])
    assert [r.model for r in rep.results] == ["resnet18", "vit_tiny"]
    assert [r.value for r in rep.results] == [190 / 200, 184 / 200]
    assert rep.passed


def test_aliases_and_class_expansion(snap):
    rep = run_gates(snap, ["resnet18:auc>=0.9", "resnet18:f1>=0.9", "resnet18:sensitivity[glioma]>=0.9",
                           "resnet18:recall>=0.9"])
    labels = [r.metric for r in rep.results]
    assert labels[:3] == ["auc_macro", "macro_f1", "recall[glioma]"]
    # a per-class metric without a class expands over every class
    assert labels[3:] == [f"recall[{c}]" for c in CLASSES]
    assert [r.passed for r in rep.results[3:]] == [True, True, True, True]
    fail = run_gates(snap, ["resnet18:recall[*]>0.9"])
    assert [r.passed for r in fail.results] == [True, False, True, True]  # meningioma 45/50 == 0.9 is not > 0.9


def test_boundary_is_exact(snap):
    assert run_gates(snap, ["resnet18:recall[meningioma]>=0.9"]).passed
    assert not run_gates(snap, ["resnet18:recall[meningioma]>0.9"]).passed
    assert run_gates(snap, ["resnet18:recall[meningioma]<=0.9"]).passed
    assert not run_gates(snap, ["resnet18:recall[meningioma]<0.9"]).passed


def test_missed_disease_rate_global_and_per_class(snap):
    # resnet18 misses (2//2 + 5//2 + 3//2) = 4 of 150 disease samples as "no tumor"
    rep = run_gates(snap, ["resnet18:missed_disease_rate<=0.03", "resnet18:missed_disease_rate[*]<=0.05"])
    assert rep.results[0].value == pytest.approx(4 / 150) and rep.results[0].passed
    # the negative class has no missed-disease rate (null entry): skipped when expanding
    assert [r.metric for r in rep.results[1:]] == [f"missed_disease_rate[{c}]" for c in CLASSES if c != NEGATIVE]
    assert [r.value for r in rep.results[1:]] == [1 / 50, 2 / 50, 1 / 50]


def test_null_fails_closed_with_reason(snap):
    rep = run_gates(snap, ["vit_tiny:auc[pituitary]>=0.5", "vit_tiny:auc_micro>=0.5",
                           "kappa_quadratic>=0.1", 'missed_disease_rate["no tumor"]<=1'])
    assert not rep.passed and rep.n_failed == len(rep.results) == 6  # kappa_quadratic, mdr: 2 models
    assert rep.results[0].reason == "no negatives for class 'pituitary'" and rep.results[0].value is None
    assert rep.results[1].reason == "only one class in y_true"
    assert "null in the snapshot" in rep.results[2].reason
    assert rep.results[4].metric == "missed_disease_rate[no tumor]" and "null" in rep.results[4].reason


def test_missing_interval_fails_closed_only_for_bounds(snap):
    assert run_gates(snap, ["resnet18:brier<=0.2"]).passed
    rep = run_gates(snap, ["resnet18:brier<=0.2"], on="upper")
    assert not rep.passed and "no confidence interval" in rep.results[0].reason


def test_nan_in_snapshot_is_undefined(snap):
    snap["models"][0]["metrics"]["mcc"] = mv(float("nan"))
    rep = run_gates(snap, ["resnet18:mcc>=0"])
    assert not rep.passed and rep.results[0].value is None


@pytest.mark.parametrize("expr, fragment", [
    ("densenet:auc>=0.9", "unknown model 'densenet'; valid: 'resnet18', 'vit_tiny'"),
    ("recall[astrocytoma]>=0.9", "valid: 'glioma', 'meningioma', 'no tumor', 'pituitary'"),
    ("bogus>=0.5", "unknown metric 'bogus'; valid: "),
    ("bogus[glioma]>=0.5", "unknown per-class metric 'bogus'"),
    ("support[glioma]>=0.5", "unknown per-class metric"),
])
def test_unknown_names_are_bad_input(snap, expr, fragment):
    with pytest.raises(MedauditError, match=None) as exc:
        run_gates(snap, [expr])
    assert fragment in str(exc.value)


def test_bad_input_combinations(snap):
    with pytest.raises(MedauditError, match="nothing to check"):
        run_gates(snap, [])
    with pytest.raises(MedauditError, match="--max-drop needs --baseline"):
        run_gates(snap, [], max_drops=["recall=0.02"])
    with pytest.raises(MedauditError, match="--baseline needs"):
        run_gates(snap, ["auc>=0.5"], baseline=build_snapshot())
    with pytest.raises(MedauditError, match="schema_version .3.0. is not supported"):
        run_gates({**snap, "schema_version": "3.0"}, ["auc>=0.5"])
    assert run_gates({**snap, "schema_version": "1.0"}, ["auc>=0.5"]).results  # 1.0 differs only outside metrics
    broken = copy.deepcopy(snap)
    broken["models"][0]["metrics"]["per_class"]["glioma"] = [0.9]
    with pytest.raises(MedauditError, match=r"models\[0\] needs"):
        run_gates(broken, ["auc>=0.5"])
    broken["models"][0]["metrics"] = None
    with pytest.raises(MedauditError, match=r"models\[0\] needs"):
        run_gates(broken, ["auc>=0.5"])
    broken = copy.deepcopy(snap)
    broken["models"][0]["metrics"]["auc_macro"]["value"] = "0.9"
    with pytest.raises(MedauditError, match="expected a number or null"):
        run_gates(broken, ["resnet18:auc>=0.5"])
    with pytest.raises(MedauditError, match="not unique"):
        run_gates({**snap, "models": [snap["models"][0]] * 2}, ["auc>=0.5"])


# ---------------------------------------------------------------- baseline


def test_max_drop_per_class_and_global(snap):
    old = build_snapshot()
    new = copy.deepcopy(old)
    # resnet18 glioma recall drops 0.96 -> 0.92 (0.04); vit_tiny meningioma 0.88 -> 0.86 (0.02)
    new["models"][0]["metrics"]["per_class"]["glioma"]["recall"] = wilson(46, 50)
    new["models"][1]["metrics"]["per_class"]["meningioma"]["recall"] = wilson(43, 50)
    rep = run_gates(new, [], baseline=old, max_drops=["recall=0.02", "auc=0.01"])
    assert len(rep.results) == 2 * 4 + 2
    failed = [(r.model, r.metric) for r in rep.results if not r.passed]
    assert failed == [("resnet18", "recall[glioma]")]
    f = by(rep, "resnet18", "recall[glioma]")[0]
    assert (f.baseline, f.value, f.op) == (0.96, 0.92, ">=") and f.threshold == pytest.approx(0.94)
    edge = by(rep, "vit_tiny", "recall[meningioma]")[0]
    assert edge.passed  # a drop of exactly the allowance passes despite float subtraction
    assert [r.metric for r in rep.results[-2:]] == ["auc_macro", "auc_macro"]


def test_max_drop_lower_is_better_means_increase():
    old = build_snapshot()
    new = copy.deepcopy(old)
    new["models"][0]["metrics"]["ece"] = mv(0.07, 0.05, 0.09, "bootstrap")  # +0.03
    new["models"][1]["metrics"]["ece"] = mv(0.01, 0.0, 0.03, "bootstrap")  # improved
    rep = run_gates(new, [], baseline=old, max_drops=["ece=0.02"])
    assert [(r.passed, r.op) for r in rep.results] == [(False, "<="), (True, "<=")]
    assert rep.results[0].threshold == pytest.approx(0.06)


def test_max_drop_null_fails_closed_and_fingerprint_note():
    old = build_snapshot(fingerprint="cd" * 32)
    new = build_snapshot()
    old["models"][0]["metrics"]["per_class"]["glioma"]["recall"] = mv(None, reason="no samples")
    rep = run_gates(new, [], baseline=old, max_drops=["resnet18:recall[glioma]=0.02", "vit_tiny:auc_micro=0.1"])
    assert [r.passed for r in rep.results] == [False, False]
    assert rep.results[0].reason == "baseline no samples" and rep.results[0].value == 0.96
    assert rep.results[1].reason == "only one class in y_true"
    assert any("fingerprint differs" in n for n in rep.notes)


def test_baseline_mismatch_is_bad_input(snap):
    other_models = build_snapshot(models=[build_model("resnet18", [48, 45, 50, 47])])
    with pytest.raises(MedauditError, match="model names differ"):
        run_gates(snap, [], baseline=other_models, max_drops=["recall=0.02"])
    renamed = ["glioma", "meningioma", "normal", "pituitary"]
    other_classes = build_snapshot(models=[build_model(n, [48, 45, 50, 47], classes=renamed, negative="normal")
                                           for n in ("resnet18", "vit_tiny")], classes=renamed)
    with pytest.raises(MedauditError, match=r"only in report: \['no tumor'\], only in baseline: \['normal'\]"):
        run_gates(snap, [], baseline=other_classes, max_drops=["auc=0.01"])
    with pytest.raises(MedauditError, match="task differs"):
        run_gates(snap, [], baseline=build_snapshot(task="binary"), max_drops=["auc=0.01"])
    custom = build_snapshot()
    for m in custom["models"]:
        m["metrics"]["sharpness"] = mv(0.5)  # a metric this medaudit does not know
    with pytest.raises(MedauditError, match="no known direction for 'sharpness'"):
        run_gates(custom, [], baseline=copy.deepcopy(custom), max_drops=["sharpness=0.1"])
    assert run_gates(custom, ["sharpness>=0.5"]).passed  # requirements work on any metric


# ---------------------------------------------------------------- files and CLI


def _cli(*args):
    from medaudit.cli import main

    return CliRunner().invoke(main, ["gate", *map(str, args)])


@pytest.fixture
def report_file(tmp_path, snap):
    p = tmp_path / "report.json"
    p.write_text(json.dumps(snap), encoding="utf-8")
    return p


def test_load_snapshot_errors(tmp_path):
    with pytest.raises(MedauditError, match="file not found"):
        load_snapshot(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(MedauditError, match="not valid JSON"):
        load_snapshot(bad)
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(MedauditError, match="not a medaudit report.json"):
        load_snapshot(bad)
    bad.write_text('{"models": []}', encoding="utf-8")
    with pytest.raises(MedauditError, match="no schema_version"):
        load_snapshot(bad)


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


# ---------------------------------------------------------------- with the real metrics code


def test_end_to_end_with_compute_metrics():
    np = pytest.importorskip("numpy")
    try:
        from medaudit.metrics import compute_metrics
    except ImportError as exc:
        pytest.skip(f"medaudit.metrics.compute_metrics not available yet ({exc})")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    logits = rng.normal(0, 1, (120, 3))
    logits[np.arange(120), y] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["glioma", "no tumor", "pituitary"]
    metrics = json.loads(json.dumps(compute_metrics(y, probs, names, "multiclass", n_bootstrap=50, seed=0)))
    snap = build_snapshot(models=[{"name": "m", "metrics": metrics}], classes=names)
    pred = probs.argmax(1)
    recall = float((pred[y == 0] == 0).mean())
    rep = run_gates(snap, ["recall[glioma]>=0", "auc>=0.5", "accuracy>=0"], on="lower")
    r = rep.results[0]
    assert r.point == pytest.approx(recall) and r.value <= r.point and r.ci_method == "wilson"
    assert rep.passed and rep.results[1].metric == "auc_macro"
    strict = run_gates(snap, [f"recall[glioma]>={recall}"], on="lower")
    assert not strict.passed  # the lower bound is below the point estimate
