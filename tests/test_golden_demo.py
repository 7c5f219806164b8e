"""The demo's results are pinned in two layers, so that a refactor cannot change a single number
and a different CPU cannot fail the suite.

1. **Analysis, exact.** ``tests/golden/demo_inputs.json`` holds what the demo run handed to
   :func:`medaudit.audit.assemble_snapshot`: each model's validation and test predictions, its
   checkpoint, predictions and CAM blocks, the dataset block and the settings. The snapshot built
   from them must equal ``tests/golden/demo_snapshot.json``. Every analysis is a pure function of
   the predictions, so this layer gives the same result on every machine. Floats are compared
   to 1e-9 relative, which allows for NumPy's SIMD summation order and nothing more.
2. **The whole demo, structurally.** Training and inference are float32 kernels whose last bits
   depend on the CPU's instruction set: the same code on another Xeon moved one training loss by
   4e-7 and, through a barely trained model, the AUCs by 0.01. So the end-to-end run must give a
   snapshot of the same shape as the golden one (the same keys, the same undefined values) with
   the same data and settings, and its analysis must equal what ``assemble_snapshot`` makes of
   the run's own predictions. On the machine that wrote the files, it also matches them exactly.

Regenerate both files with ``python -m tests.test_golden_demo``, but only for a change that is
meant to alter results, and say so in the commit. ``--analysis-only`` keeps the stored inputs and
rewrites the snapshot, for a change to the analyses alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = GOLDEN_DIR / "demo_snapshot.json"
INPUTS = GOLDEN_DIR / "demo_inputs.json"
DEMO = dict(img_size=32, n_train=4, n_val=2, n_test=3, epoch_scale=0.2, bench=False, formats=("json",))
RTOL = 1e-9
# Filled by the demo run but not a pure function of predictions and settings.
MASKED_KEYS = ("run", "figures")  # figures: file names the report writer adds


def _normalised(snapshot: dict, root: Path | None = None) -> dict:
    snap = {k: v for k, v in snapshot.items() if k not in MASKED_KEYS}
    for m in snap.get("models") or []:
        m["checkpoint"]["sha256"] = "<sha256>"
        for epoch in m["checkpoint"].get("history") or []:
            epoch["epoch_time_s"] = "<seconds>"
    text = json.dumps(snap, sort_keys=True)
    return json.loads(text.replace(str(root), "<tmp>") if root is not None else text)


# -- the demo's inputs to assemble_snapshot, as JSON ------------------------------------------


def _preds_json(p) -> dict | None:
    if p is None:
        return None
    return {"model_name": p.model_name, "class_names": list(p.class_names), "task": p.task,
            "sample_ids": p.sample_ids.tolist(), "y_true": p.y_true.tolist(), "probs": p.probs.tolist(),
            "provenance": p.provenance,
            # the subgroup and patient analyses read these (hashed patient ids, never raw ones)
            "metadata": {k: v.tolist() for k, v in p.metadata.items()} if p.metadata else None,
            "patient_column": p.patient_column}


def _preds_from_json(d: dict | None):
    from medaudit.predictions import Predictions

    if d is None:
        return None
    return Predictions(model_name=d["model_name"], class_names=d["class_names"], task=d["task"],
                       sample_ids=np.asarray(d["sample_ids"]), y_true=np.asarray(d["y_true"]),
                       probs=np.asarray(d["probs"], dtype=np.float64), provenance=d["provenance"],
                       metadata={k: np.asarray(v) for k, v in d["metadata"].items()} if d.get("metadata") else None,
                       patient_column=d.get("patient_column"))


def capture_demo(root: Path) -> tuple[dict, dict]:
    """Run the demo; return (the inputs it gave assemble_snapshot as JSON, its normalised snapshot)."""
    import torch

    import medaudit.pipeline as pipeline
    from medaudit.demo import run_demo

    torch.set_num_threads(1)  # as in the test session (conftest)
    captured: dict = {}
    real = pipeline.assemble_snapshot

    def recording(results, **kw):
        captured["inputs"] = {
            "models": [{"preds": _preds_json(r.preds), "val_preds": _preds_json(r.val_preds),
                        "checkpoint": r.checkpoint, "prediction_info": r.prediction_info, "cam": r.cam}
                       for r in results],
            "dataset": kw["dataset"], "settings": dataclasses.asdict(kw["settings"]), "title": kw["title"],
            "author": kw.get("author"), "notes_markdown": kw.get("notes_markdown"),
            "robustness": kw.get("robustness"),  # the sweep's block, computed from saved predictions
            "external": kw.get("external"),  # the external cohorts' block, likewise
        }
        return real(results, **kw)

    pipeline.assemble_snapshot = recording
    try:
        run_demo(root / "report", work_dir=root / "work", log=lambda _: None, **DEMO)
    finally:
        pipeline.assemble_snapshot = real
    inputs = json.loads(json.dumps(captured["inputs"], sort_keys=True).replace(str(root), "<tmp>"))
    return inputs, _normalised(json.loads((root / "report" / "report.json").read_text()), root)


def snapshot_from_inputs(inputs: dict) -> dict:
    """What assemble_snapshot makes of the stored inputs (no model, no data, no machine dependence)."""
    from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot

    results = [ModelResult(preds=_preds_from_json(m["preds"]), val_preds=_preds_from_json(m["val_preds"]),
                           checkpoint=m["checkpoint"], prediction_info=m["prediction_info"], cam=m["cam"])
               for m in json.loads(json.dumps(inputs["models"]))]  # a copy: the snapshot must not alias them
    snap = assemble_snapshot(results, dataset=json.loads(json.dumps(inputs["dataset"])),
                             settings=AuditSettings(**inputs["settings"]), title=inputs["title"],
                             author=inputs["author"], notes_markdown=inputs["notes_markdown"], run=None,
                             robustness=json.loads(json.dumps(inputs.get("robustness"))),
                             external=json.loads(json.dumps(inputs.get("external"))))
    return _normalised(snap)


# -- comparison --------------------------------------------------------------------------------


def _diff(a, b, path="", *, rtol=0.0, shape_only=False) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}", rtol=rtol,
                               shape_only=shape_only)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in _diff(x, y, f"{path}[{i}]", rtol=rtol, shape_only=shape_only)]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if shape_only and (numbers or (isinstance(a, str) and isinstance(b, str))):
        return []  # values may differ; None versus a number, or a missing key, may not
    if numbers and (a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3)):
        return []
    return [] if a == b else [f"{path}: golden {str(a)[:80]} != now {str(b)[:80]}"]


def _report(diffs: list[str], what: str) -> str:
    return f"{len(diffs)} values differ from {what}:\n" + "\n".join(diffs[:30])


def test_the_analysis_of_the_stored_demo_predictions_is_unchanged():
    golden = json.loads(GOLDEN.read_text())
    diffs = _diff(golden, snapshot_from_inputs(json.loads(INPUTS.read_text())), rtol=RTOL)
    assert not diffs, _report(diffs, GOLDEN.name)


def test_the_whole_demo_has_the_golden_shape_and_its_own_analysis(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    stored_inputs = json.loads(INPUTS.read_text())
    inputs, now = capture_demo(tmp_path)
    assert inputs["settings"] == stored_inputs["settings"] and inputs["dataset"] == stored_inputs["dataset"]
    for new, old in zip(inputs["models"], stored_inputs["models"], strict=True):
        assert new["preds"]["sample_ids"] == old["preds"]["sample_ids"]
        assert new["preds"]["y_true"] == old["preds"]["y_true"]
    diffs = _diff(golden, now, shape_only=True)
    assert not diffs, _report(diffs, GOLDEN.name + " (shape)")
    # The written report holds exactly the analysis of the run's own predictions.
    diffs = _diff(snapshot_from_inputs(inputs), now, rtol=RTOL)
    assert not diffs, _report(diffs, "the analysis of this run's predictions")


if __name__ == "__main__":  # regenerate: python -m tests.test_golden_demo [--analysis-only]
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDAUDIT_CACHE"] = str(Path(tmp) / "cache")
        os.environ["MEDAUDIT_SALT"] = "medaudit-test-salt-0123456789"  # the test salt of tests/conftest.py
        if "--analysis-only" in sys.argv:
            inputs = json.loads(INPUTS.read_text())
        else:
            inputs, _ = capture_demo(Path(tmp))
            INPUTS.write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")
        GOLDEN.write_text(json.dumps(snapshot_from_inputs(inputs), indent=1, sort_keys=True) + "\n")
    sys.exit(0)
