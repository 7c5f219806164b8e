"""benchmarks/gpu_check.sh (issue 21): its --dry-run runs the GPU check's code end to end on the CPU.

The figures of a dry run mean nothing (8 images, 32 px); what is checked is that every part runs, prints
finite positive figures in the stated format, that the ratios are the quotients of the figures printed,
that the bare loop computes what medaudit computes, and that nothing is written into the repository.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
NUM = r"([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _results_listing() -> set[str]:
    return {p.name for p in (ROOT / "benchmarks" / "results").iterdir()}


def _positive(text: str) -> float:
    v = float(text)
    assert math.isfinite(v) and v > 0, text
    return v


def _summary_rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1] in ("memory", "jpeg"):
            rows[(cells[0], cells[1])] = cells
    return rows


def _check_summary(out: str) -> dict:
    rows = _summary_rows(out)
    assert set(rows) == {(a, s) for a in ("resnet18", "vit_tiny_patch16_224") for s in ("memory", "jpeg")}, out
    for (_arch, source), cells in rows.items():
        medaudit, bare = _positive(cells[2]), _positive(cells[3])
        ratio = _positive(cells[4].rstrip("x"))
        assert ratio == pytest.approx(medaudit / bare, abs=0.006)  # the quotient of the two figures shown
        assert cells[5] == (">= 0.9x" if source == "memory" else ">= 0.7x")
        assert cells[6] == "not judged (dry run)"
    return rows


def test_dry_run_prints_every_figure_without_writing_into_the_repository(tmp_path):
    before = _results_listing()
    out_file = tmp_path / "dry.md"
    done = _run("--dry-run", "--skip", "commands,torchrun", "--out", str(out_file))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert _results_listing() == before
    # The results file holds what was printed (written line by line, so a cut-short run keeps its lines).
    assert out_file.read_text(encoding="utf-8") == out
    assert f"results written to {out_file}" in out
    rows = _check_summary(out)
    assert all(cells[7] == "not run" for cells in rows.values())

    bare = [_positive(v) for v in re.findall(rf"^bare loop: {NUM} img/s \(batch 4, ", out, flags=re.M)]
    assert len(bare) == 2
    # The bare loop's probabilities are medaudit's (fp32 on the CPU): a baseline computing something else would fail.
    diffs = [float(v) for v in re.findall(rf"max \|dprob\| {NUM} \(tolerance 0\.0001\)", out)]
    assert len(diffs) == 2 and max(diffs) <= 1e-4
    assert len(re.findall(rf"^medaudit (?:memory|jpeg): {NUM} img/s \(8 images", out, flags=re.M)) == 4

    pipes = re.findall(rf"^pipeline medaudit ([0-9]+) workers(?: \(medaudit default\))?: {NUM} img/s", out,
                       flags=re.M)
    assert pipes and "0" in {w for w, _ in pipes}  # medaudit's rule: no workers for 8 files
    assert all(_positive(r) for _, r in pipes)
    dec = re.search(rf"^pipeline decode_jpeg cpu: {NUM} img/s; its input differs from medaudit's by mean {NUM}, "
                    rf"max {NUM} grey levels", out, flags=re.M)
    assert dec, out
    _positive(dec.group(1))
    assert float(dec.group(2)) < 1.0  # same libjpeg-turbo decode and antialiased resize on the CPU
    assert re.search(r"^fastest pipeline: (medaudit, [0-9]+ workers|decode_jpeg on cpu) \(", out, flags=re.M)
    assert "failed sections: none" in out
    assert "medaudit predict command" not in out and "torchrun train smoke" not in out  # skipped parts


@pytest.mark.slow
def test_full_dry_run_runs_the_predict_command_and_a_torchrun_train(tmp_path):
    done = _run("--dry-run", "--out", str(tmp_path / "dry.md"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    rows = _check_summary(out)
    # Commands run for the first architecture only in a dry run (a process start costs seconds on the CPU).
    for source in ("memory", "jpeg"):
        m = re.search(rf"^medaudit predict command {source}: pass {NUM} img/s \({NUM} s\), whole command {NUM} s",
                      out, flags=re.M)
        assert m, out
        rate, pass_s, whole = (_positive(g) for g in m.groups())
        assert pass_s < whole
        assert rows[("resnet18", source)][7].startswith(f"{rate:.1f} (")
        assert rows[("vit_tiny_patch16_224", source)][7] == "not run"
    m = re.search(r"^torchrun train smoke: ok \(exit 0, 16 images, 1 epoch, batch 8, world size 1, ", out, flags=re.M)
    assert m, out


def test_bad_skip_and_missing_gpu_are_one_line_errors(tmp_path):
    done = _run("--skip", "commands,bogus", "--out", str(tmp_path / "x.md"), timeout=60)
    assert done.returncode != 0 and "--skip bogus: not one of commands,pipeline,torchrun" in done.stderr
    assert "Traceback" not in done.stderr
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real check would run")
    done = _run("--out", str(tmp_path / "y.md"), timeout=60)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "y.md").exists()


def test_a_failing_section_is_reported_and_the_others_still_run(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    lenient = gpu_check.Sections(strict=False)
    with lenient.run("first"):
        raise ValueError("boom")
    ran = []
    with lenient.run("second"):
        ran.append(True)
    assert lenient.failed == ["first"] and ran == [True]
    assert "FAILED: ValueError: boom" in capsys.readouterr().out
    with pytest.raises(ValueError), gpu_check.Sections(strict=True).run("strict"):
        raise ValueError("boom")
    # Verdicts: judged against the targets on a GPU, never in a dry run; no bare loop -> no ratio.
    rows = [{"arch": "a", "source": "memory", "medaudit": 95.0, "bare": 100.0, "command": 80.0},
            {"arch": "a", "source": "jpeg", "medaudit": 69.0, "bare": 100.0, "command": None},
            {"arch": "b", "source": "jpeg", "medaudit": 50.0, "bare": None, "command": None}]
    table = gpu_check.summary(rows, dry_run=False)
    assert "| a | memory | 95.0 | 100.0 | 0.95x | >= 0.9x | met | 80.0 (0.80x) |" in table
    assert "| a | jpeg | 69.0 | 100.0 | 0.69x | >= 0.7x | NOT met | not run |" in table
    assert "| b | jpeg | 50.0 | — | — | >= 0.7x | no bare loop | not run |" in table
    assert all("not judged (dry run)" in line for line in gpu_check.summary(rows[:2], dry_run=True)[2:])
