"""The demo's snapshot, outside ``run``, is pinned: a refactor must not change a single number.

``tests/golden/demo_snapshot.json`` was written by the code before the architecture step (issue 14)
with ``python -m tests.test_golden_demo``; rewrite it only for a change that is meant to alter
results, and say so in the commit. Only what a run cannot reproduce is masked: the temporary
folder, the training epochs' wall times and the checkpoint digests that include them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "demo_snapshot.json"
DEMO = dict(img_size=32, n_train=4, n_val=2, n_test=3, epoch_scale=0.2, bench=False, formats=("json",))


def _normalised(snapshot: dict, root: Path) -> dict:
    snap = {k: v for k, v in snapshot.items() if k != "run"}
    for m in snap["models"]:
        m["checkpoint"]["sha256"] = "<sha256>"
        for epoch in m["checkpoint"].get("history") or []:
            epoch["epoch_time_s"] = "<seconds>"
    return json.loads(json.dumps(snap, sort_keys=True).replace(str(root), "<tmp>"))


def demo_snapshot(root: Path) -> dict:
    import torch

    from medaudit.demo import run_demo

    torch.set_num_threads(1)  # as in the test session (conftest): results are exact for one thread count
    run_demo(root / "report", work_dir=root / "work", log=lambda _: None, **DEMO)
    return _normalised(json.loads((root / "report" / "report.json").read_text()), root)


def _diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: golden {str(a)[:80]} != now {str(b)[:80]}"]


def test_demo_snapshot_is_unchanged(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    now = demo_snapshot(tmp_path)
    diffs = _diff(golden, now)
    assert not diffs, f"{len(diffs)} values differ from {GOLDEN.name}:\n" + "\n".join(diffs[:30])


if __name__ == "__main__":  # regenerate: python -m tests.test_golden_demo
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDAUDIT_CACHE"] = str(Path(tmp) / "cache")
        GOLDEN.write_text(json.dumps(demo_snapshot(Path(tmp)), indent=1, sort_keys=True) + "\n")
    sys.exit(0)
