"""Gate expressions: ``[MODEL:]METRIC[CLASS] OP VALUE`` and ``[MODEL:]METRIC[CLASS]=MAX_DROP``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medaudit.errors import MedauditError
from medaudit.gate import parse_gate, parse_max_drop


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


@pytest.mark.parametrize("text, char", [
    ("recall>=٠.٩", "٠"),          # Arabic-Indic digits: float("٠.٩") == 0.9
    ("recall>=０.９", "０"),        # fullwidth digits: float("０.９") == 0.9
    ("recall>=0.٩", "٩"),          # ASCII start, another script's digit after the point
    ("auc>=1e٣", "٣"),             # in the exponent
    ("recall>=-٩", "٩"),           # after a sign
    ("recall>=٩٠%", "٩"),
])
def test_non_ascii_digits_are_refused(text, char):
    with pytest.raises(MedauditError) as exc:
        parse_gate(text)
    msg = str(exc.value)
    assert f"{char!r}" in msg and "ASCII digit" in msg and "\n" not in msg
    with pytest.raises(MedauditError, match="ASCII digit"):
        parse_max_drop(text.replace(">=", "="))


def test_float_alone_would_accept_them():
    # Why the parser checks: Python's float() reads digits of every script.
    assert float("٠.٩") == float("０.９") == 0.9


def test_non_ascii_digits_in_names_are_fine():
    g = parse_gate("m٣:recall[٣]>=0.9")
    assert (g.model, g.cls, g.threshold) == ("m٣", "٣", 0.9)


def test_cli_refuses_non_ascii_digits_in_one_line(tmp_path):
    import json

    from click.testing import CliRunner

    from medaudit.cli import main
    from tests.snapshot_factory import build_snapshot

    path = tmp_path / "report.json"
    path.write_text(json.dumps(build_snapshot()), encoding="utf-8")
    res = CliRunner().invoke(main, ["gate", str(path), "-r", "recall>=٠.٩"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert line == ("Error: --require 'recall>=٠.٩': '٠' (U+0660) at position 8 is not an ASCII digit; "
                    "write numbers with the digits 0-9")
