"""``medaudit train`` under torchrun (2 gloo ranks on the CPU) against one process on the same global batches.

Each run is a real ``python -m torch.distributed.run --nproc-per-node 2 -m medaudit train`` subprocess;
the reference is :func:`medaudit.train.loop.train` in this process with world size 1, so the
comparison fails if the sampler, the gradient averaging, the validation gather or the BatchNorm
synchronisation is wrong. Each torchrun start costs about 20 s on a busy 2-core box (three Python
processes importing torch), so all but the LayerNorm exactness and the batch-size error are marked slow.
"""

from __future__ import annotations

import re
import signal
import textwrap
import time
from pathlib import Path

import pytest
import torch

from medaudit.models.weights import safe_torch_load
from medaudit.train.config import TrainConfig
from medaudit.train.loop import resume_training, train
from tests._torchrun import launch
from tests.test_train_loop import load, write_npz


def torchrun(args: list[str], *, nproc: int = 2, script: Path | None = None, env: dict | None = None,
             timeout: float = 120, wait: bool = True):
    """``medaudit train ARGS`` under torchrun (with ``script``: ``SCRIPT ARGS``)."""
    return launch(args if script is not None else ["train", *args], nproc=nproc, script=script, env=env,
                  timeout=timeout, wait=wait)


def cli_args(cfg: TrainConfig, out: Path) -> list[str]:
    args = ["--data", cfg.data, "--model", cfg.arch, "--img-size", str(cfg.img_size), "--in-chans",
            str(cfg.in_chans), "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--optimizer",
            cfg.optimizer, "--lr", str(cfg.lr), "--device", "cpu", "--augment", cfg.augment, "-o", str(out)]
    return args + (["--sync-bn"] if cfg.sync_bn else [])


def reference(cfg: TrainConfig, out: Path, monkeypatch) -> dict:
    """The same config trained by one process here; returns its NAME.last.pt."""
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    train(load(cfg.data), cfg, out)
    return safe_torch_load(out.with_name(out.stem + ".last.pt"))


def max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture
def data(tmp_path) -> str:
    # 32 training images = 4 global batches of 8; 11 validation images: shards of 6 and 5.
    return str(write_npz(tmp_path / "d.npz", n=(32, 11, 4), size=32))


def vit_cfg(data: str, **kw) -> TrainConfig:
    base = dict(arch="test_vit", data=data, img_size=32, in_chans=1, epochs=2, batch_size=8, optimizer="sgd",
                lr=0.05, device="cpu", augment="basic")
    return TrainConfig(**{**base, **kw})


def test_two_ranks_train_a_layernorm_vit_exactly_as_one_process(data, tmp_path, monkeypatch):
    """Global batch 8 = 2 ranks x 4: same weights as 1 process x 8 (augmentation drawn for the global batch)."""
    cfg = vit_cfg(data)
    rc, out, err = torchrun(cli_args(cfg, tmp_path / "dist" / "m.pt"))
    assert rc == 0, err
    dist_last = safe_torch_load(tmp_path / "dist" / "m.last.pt")
    ref_last = reference(cfg, tmp_path / "ref" / "m.pt", monkeypatch)
    assert max_weight_diff(dist_last["state_dict"], ref_last["state_dict"]) < 1e-5  # measured 4.5e-8
    for d, r in zip(dist_last["history"], ref_last["history"], strict=True):
        assert d["world_size"] == 2 and r["world_size"] == 1
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc"):
            assert d[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), key
    training = safe_torch_load(tmp_path / "dist" / "m.pt")["training"]
    assert training["world_size"] == 2 and training["dist_backend"] == "gloo" and training["n_val"] == 11
    # Rank 0 speaks for the job: one line per epoch, one summary.
    assert out.count("best: epoch") == 1 and out.count("epoch 1/2") == 1


def test_the_global_batch_must_divide_over_the_ranks(data, tmp_path):
    rc, out, err = torchrun(cli_args(vit_cfg(data, batch_size=7), tmp_path / "m.pt"))
    assert rc != 0
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert lines and all("--batch-size 7 is the global batch" in line and "multiple of 2" in line for line in lines)
    assert not re.search(r"File \".*medaudit/[^\"]*\.py\"", err)  # no traceback from medaudit (torchrun has its own)


@pytest.mark.slow
def test_sigterm_stops_every_rank_and_another_world_size_resumes_exactly(data, tmp_path, monkeypatch):
    """SIGTERM to torchrun (as SLURM or Kubernetes send it) stops both ranks with the last epoch saved;
    one process resumes that state and ends with the weights of an uninterrupted one-process run."""
    cfg = vit_cfg(data, epochs=6)
    out = tmp_path / "dist" / "m.pt"
    last = out.with_name("m.last.pt")
    proc = torchrun(cli_args(cfg, out), wait=False)
    deadline = time.monotonic() + 90
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    saved = safe_torch_load(last)["resume"]["epoch_done"]
    assert 1 <= saved < 6, "the run ended before it could be interrupted; give it more epochs"
    assert err.count("resume with: medaudit train --resume") == 1  # rank 0 says it, once
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    resumed = resume_training(last, out)
    assert [h["world_size"] for h in resumed.history] == [2] * saved + [1] * (6 - saved)
    ref_last = reference(cfg, tmp_path / "ref" / "m.pt", monkeypatch)
    assert max_weight_diff(safe_torch_load(last)["state_dict"], ref_last["state_dict"]) < 1e-5


FAILING_RANK = textwrap.dedent("""
    import os, signal, sys, time
    import medaudit.train.loop as tr
    from medaudit.cli import main

    real = tr._Loop._train_epoch

    def fail_in_epoch_2(self, epoch, last):
        if epoch == 1 and self.ctx.rank == 1:
            if os.environ["FAIL"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # hung for good: only a kill ends it
            time.sleep(600)
        return real(self, epoch, last)

    tr._Loop._train_epoch = fail_in_epoch_2
    main(sys.argv[1:], prog_name="medaudit")
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_rank_that_dies_or_hangs_ends_the_job_with_an_error(how, data, tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    t0 = time.monotonic()
    rc, _, err = torchrun(["train", *cli_args(vit_cfg(data, epochs=3), tmp_path / "m.pt")], script=script,
                          env={"FAIL": how, "MEDAUDIT_DIST_TIMEOUT": "3"}, timeout=120)
    elapsed = time.monotonic() - t0
    assert rc != 0 and elapsed < 90, (rc, elapsed, err[-2000:])
    assert safe_torch_load(tmp_path / "m.last.pt")["resume"]["epoch_done"] == 1  # epoch 1 stays resumable


def bn_cfg(data: str, **kw) -> TrainConfig:
    return vit_cfg(data, arch="resnet18", img_size=16, augment="none", **kw)


@pytest.mark.slow
def test_two_ranks_with_sync_bn_train_a_batchnorm_resnet_as_one_process(tmp_path, monkeypatch):
    """BatchNorm with --sync-bn normalises over the global batch: the same training as one process.
    Without it each rank normalises its own 4 images, which is a different (not wrong) training."""
    data = str(write_npz(tmp_path / "d.npz", n=(32, 11, 4), size=16))
    ref_last = reference(bn_cfg(data), tmp_path / "ref" / "m.pt", monkeypatch)
    diffs = {}
    for sync in (True, False):
        rc, _, err = torchrun(cli_args(bn_cfg(data, sync_bn=sync), tmp_path / f"dist{sync}" / "m.pt"), timeout=240)
        assert rc == 0, err
        diffs[sync] = max_weight_diff(safe_torch_load(tmp_path / f"dist{sync}" / "m.last.pt")["state_dict"],
                                      ref_last["state_dict"])
    assert diffs[True] < 1e-4  # measured 1.3e-5 after 8 SGD steps
    assert diffs[False] > 1e-2  # measured 0.25: the comparison can tell the difference


@pytest.mark.slow
def test_world_size_one_is_the_single_process_run(data, tmp_path, monkeypatch):
    """torchrun --nproc-per-node 1 opens no process group: bit for bit the run of `medaudit train`."""
    cfg = vit_cfg(data, epochs=1)
    rc, _, err = torchrun(cli_args(cfg, tmp_path / "one" / "m.pt"), nproc=1)
    assert rc == 0, err
    ref_last = reference(cfg, tmp_path / "ref" / "m.pt", monkeypatch)
    one = safe_torch_load(tmp_path / "one" / "m.last.pt")
    assert all(torch.equal(one["state_dict"][k], ref_last["state_dict"][k]) for k in ref_last["state_dict"])
    assert one["training"]["world_size"] == 1 and one["training"]["dist_backend"] is None
