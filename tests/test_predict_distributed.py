"""``medaudit predict|report|cam`` under torchrun (gloo, CPU) against one process, on a 101-sample split.

101 divides by neither 2 nor 3, and with ``--batch-size 8`` the 13 batches do not either, so a
shard that padded, dropped or repeated a sample would change the predictions or fail the gather's
index check. Each torchrun start costs 20-40 s on a busy 2-core box (every rank imports torch), so
only the 3-rank predict runs in ``make test``; the rest are marked slow.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from medaudit import distributed as md
from medaudit.predictions import Predictions
from tests._torchrun import launch
from tests.test_train_loop import write_npz

BATCH = "8"


@pytest.fixture
def setup(tmp_path, tiny_checkpoint):
    data = write_npz(tmp_path / "d.npz", n=(8, 17, 101), size=16)
    return {"data": str(data), "model": str(tiny_checkpoint), "tmp": tmp_path}


def predict_args(s: dict, out: Path, *extra: str) -> list[str]:
    return ["predict", "--model", s["model"], "--data", s["data"], "--classes", "a,b,c", "--batch-size", BATCH,
            "-o", str(out), *extra]


def one_process(argv: list[str], monkeypatch) -> None:
    from click.testing import CliRunner

    from medaudit.cli import main

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def cache_entries(cache: Path) -> dict[str, Predictions]:
    return {p.name: Predictions.load(p) for p in sorted((cache / "predictions").glob("*.npz"))}


def test_batch_shards_cover_the_split_once_in_whole_batches():
    for n, bs, world in [(101, 8, 2), (101, 8, 3), (101, 64, 3), (5, 8, 3), (16, 8, 2), (1, 1, 4)]:
        shards = [md.batch_shard_range(n, bs, r, world) for r in range(world)]
        covered = np.concatenate([np.arange(lo, hi) for lo, hi in shards])
        assert np.array_equal(covered, np.arange(n)), (n, bs, world)
        assert all(lo % bs == 0 or lo == hi for lo, hi in shards)  # every shard starts a batch of one process
        sizes = [-(-(hi - lo) // bs) for lo, hi in shards]
        assert max(sizes) - min(sizes) <= 1


def test_lead_with_one_process_is_the_plain_call(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    seen = []
    assert md.lead(lambda a, b=0: seen.append(md.led_job()) or a + b, 2, b=3, device="cpu") == 5
    assert seen == [None] and md.led_job() is None


def check_like_one_process(s: dict, nproc: int, monkeypatch) -> None:
    tmp = s["tmp"]
    dist_cache, ref_cache = tmp / f"cache{nproc}", tmp / "cache-ref"
    rc, out, err = launch(predict_args(s, tmp / "dist.npz"), nproc=nproc, env={"MEDAUDIT_CACHE": str(dist_cache)})
    assert rc == 0, err[-3000:]
    assert out.count("ran: 101 samples") == 1  # rank 0 speaks for the job
    assert sorted(p.name for p in tmp.glob("*.npz")) == ["d.npz", "dist.npz"]  # one predictions file
    monkeypatch.setenv("MEDAUDIT_CACHE", str(ref_cache))
    one_process(predict_args(s, tmp / "ref.npz"), monkeypatch)
    dist_preds, ref = Predictions.load(tmp / "dist.npz"), Predictions.load(tmp / "ref.npz")
    assert list(dist_preds.sample_ids) == list(ref.sample_ids) and np.array_equal(dist_preds.y_true, ref.y_true)
    assert dist_preds.probs.dtype == ref.probs.dtype and np.array_equal(dist_preds.probs, ref.probs)
    assert dist_preds.provenance["distributed"] == {"world_size": nproc, "backend": "gloo",
                                                    "devices": ["cpu"] * nproc}
    assert "distributed" not in ref.provenance
    # The cache entry: the same key (file name) and the same probabilities as one process's.
    d_entries, r_entries = cache_entries(dist_cache), cache_entries(ref_cache)
    assert list(d_entries) == list(r_entries) and len(d_entries) == 1
    (key,) = d_entries
    assert np.array_equal(d_entries[key].probs, r_entries[key].probs)


def test_three_ranks_predict_exactly_what_one_process_predicts(setup, monkeypatch):
    check_like_one_process(setup, 3, monkeypatch)


@pytest.mark.slow
def test_two_ranks_predict_exactly_and_a_cache_hit_skips_on_every_rank(setup, monkeypatch):
    check_like_one_process(setup, 2, monkeypatch)
    cache = {"MEDAUDIT_CACHE": str(setup["tmp"] / "cache2")}
    rc, out, err = launch(predict_args(setup, setup["tmp"] / "again.npz"), nproc=2, env=cache)
    assert rc == 0 and out.count("cached: 101 samples") == 1, err[-3000:]


def report_args(s: dict, out: Path) -> list[str]:
    return ["report", "--models", s["model"], "--data", s["data"], "--classes", "a,b,c", "--batch-size", BATCH,
            "--no-bench", "--no-cam", "--format", "json", "--bootstrap", "50", "-o", str(out)]


@pytest.mark.slow
def test_report_under_two_ranks_is_the_one_process_report(setup, monkeypatch):
    tmp = setup["tmp"]
    rc, out, err = launch(report_args(setup, tmp / "dist"), nproc=2, env={"MEDAUDIT_CACHE": str(tmp / "c2")})
    assert rc == 0, err[-3000:]
    assert out.count("json: ") == 1
    assert sorted(p.name for p in tmp.iterdir() if p.is_dir() and p.name.startswith(("dist", "ref"))) == ["dist"]
    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp / "c1"))
    one_process(report_args(setup, tmp / "ref"), monkeypatch)
    dist_snap = json.loads((tmp / "dist" / "report.json").read_text())
    ref_snap = json.loads((tmp / "ref" / "report.json").read_text())
    assert dist_snap["run"]["distributed"] == {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
    assert "distributed" not in ref_snap["run"]
    # Every metric, interval, finding and section is the same (val and test were both sharded).
    assert {k: v for k, v in dist_snap.items() if k != "run"} == {k: v for k, v in ref_snap.items() if k != "run"}


@pytest.mark.slow
def test_cam_under_two_ranks_draws_the_tiles_once(setup):
    tmp = setup["tmp"]
    argv = ["cam", "--model", setup["model"], "--data", setup["data"], "--classes", "a,b,c", "--per-group", "1",
            "--batch-size", BATCH, "-o", str(tmp / "cams")]
    rc, out, err = launch(argv, nproc=2, env={"MEDAUDIT_CACHE": str(tmp / "c")})
    assert rc == 0, err[-3000:]
    assert out.count("tiles →") == 1
    assert json.loads((tmp / "cams" / "cams.json").read_text())["models"]


FAILING_RANK = textwrap.dedent("""
    import os, signal, sys, time
    import medaudit.predict as p
    from medaudit.cli import main

    real = p._forward_all

    def fail_in_the_pass(*args, **kwargs):
        if os.environ["RANK"] == "1":
            if os.environ["FAIL"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # hung for good: only a kill ends it
            time.sleep(600)
        return real(*args, **kwargs)

    p._forward_all = fail_in_the_pass
    main(sys.argv[1:], prog_name="medaudit")
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_rank_that_dies_or_hangs_mid_pass_ends_the_job_with_one_line(how, setup):
    script = setup["tmp"] / "failing_rank.py"
    script.write_text(FAILING_RANK)
    t0 = time.monotonic()
    rc, _, err = launch(predict_args(setup, setup["tmp"] / "p.npz"), script=script, timeout=120,
                        env={"FAIL": how, "MEDAUDIT_DIST_TIMEOUT": "3", "MEDAUDIT_CACHE": str(setup["tmp"] / "c")})
    elapsed = time.monotonic() - t0
    assert rc != 0 and elapsed < 90, (rc, elapsed, err[-2000:])
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    # A hung rank: rank 0's gather times out and says so. A killed one: the same, unless torchrun's agent
    # noticed the death first and stopped rank 0 itself (it then reports the killed rank).
    assert len(lines) == 1 or (how == "kill" and not lines and "exitcode: -9" in err), err[-3000:]
    assert all("stopped because another rank died or did not answer within 3 s" in line for line in lines)
    assert not re.search(r"File \".*medaudit/[^\"]*\.py\"", err)  # no traceback from medaudit
    assert not (setup["tmp"] / "p.npz").exists() and not (setup["tmp"] / "c").exists()  # nothing written


