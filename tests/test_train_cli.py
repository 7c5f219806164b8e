"""``medaudit train`` on the command line: bad input exits 2 with one line; Ctrl-C leaves a resumable state."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.models.checkpoint import load_checkpoint
from tests.test_train import write_npz


@pytest.fixture
def npz(tmp_path):
    return str(write_npz(tmp_path / "tiny.npz"))


def run(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


BASE = ("--model", "test_resnet", "--img-size", "16", "--in-chans", "1", "--batch-size", "8", "--device", "cpu", "-q")


def test_train_cli_writes_checkpoint(npz, tmp_path):
    out = tmp_path / "ck" / "m.pt"
    r = run("--data", npz, *BASE, "--epochs", "2", "--loss", "focal", "--augment", "basic", "-o", out)
    assert r.exit_code == 0, r.output
    assert "best: epoch" in r.output
    loaded = load_checkpoint(out)
    assert len(loaded.meta["history"]) == 2 and loaded.meta["training"]["loss"] == "focal"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--model", "resnet18x"), "Did you mean"),
        (("--loss", "bce"), "use --loss ce or focal"),
        (("--batch-size", "500"), "larger than the training split"),
        (("--select-by", "val_recall[nope]"), "no such class"),
        (("--class-weights", "1,2"), "needs 3 values"),
        (("--loss", "focal", "--focal-alpha", "0.3"), "only defined for 2 classes"),
        (("--focal-alpha", "0.3"), "only applies to --loss focal"),
        (("--mean", "a,b"), "--mean takes comma-separated numbers"),
        (("--warmup-epochs", "5"), "--warmup-epochs"),
        (("--optimizer", "sgd", "--momentum", "-1"), "--momentum must be in [0, 1)"),
        (("--scheduler", "multistep", "--milestones", "-3"), "--milestones are 0-based epochs"),
        (("--num-workers", "-1"), "--num-workers must be >= 0"),
        (("--sampler", "balanced", "--loss", "weighted-ce"), "drop --loss weighted-ce"),
        (("--classes", "a,b"), "--classes"),
    ],
)
def test_bad_input_exits_2(npz, tmp_path, extra, needle):
    r = run("--data", npz, *BASE, "--epochs", "1", *extra, "-o", tmp_path / "m.pt")
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "m.pt").exists()


def test_classes_and_task_are_recorded(npz, tmp_path):
    out = tmp_path / "m.pt"
    r = run("--data", npz, *BASE, "--epochs", "1", "--classes", "low,mid,high", "--task", "ordinal", "-o", out)
    assert r.exit_code == 0, r.output
    loaded = load_checkpoint(out)
    assert loaded.class_names == ["low", "mid", "high"] and loaded.task == "ordinal"
    assert loaded.meta["training"]["classes"] == ["low", "mid", "high"]


def test_focal_on_multilabel_says_use_bce(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2, np.arange(n) % 3 > 0], 1).astype(
            np.int8)
    np.savez(tmp_path / "ml.npz", **arrays)
    r = run("--data", tmp_path / "ml.npz", *BASE, "--epochs", "1", "--loss", "focal", "-o", tmp_path / "m.pt")
    assert r.exit_code == 2 and "use --loss bce" in r.output
    r = run("--data", tmp_path / "ml.npz", *BASE, "--epochs", "1", "--loss", "bce", "--class-weights", "auto",
            "--select-by", "val_loss", "-o", tmp_path / "m.pt")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "m.pt").task == "multilabel"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unwritable_output(npz, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = run("--data", npz, *BASE, "--epochs", "1", "-o", ro / "m.pt")
    finally:
        ro.chmod(0o700)
    assert r.exit_code == 2 and "not writable" in r.output


def test_missing_required_options(npz):
    r = run("--data", npz, "-q")
    assert r.exit_code == 2 and "needs --data, --model and -o" in r.output


def test_ctrl_c_leaves_resumable_state(npz, tmp_path, monkeypatch):
    import medaudit.train.loop as tr

    real = tr._Loop._train_epoch

    def interrupt_in_epoch_2(self, epoch, last):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, last)

    monkeypatch.setattr(tr._Loop, "_train_epoch", interrupt_in_epoch_2)
    out = tmp_path / "m.pt"
    r = run("--data", npz, *BASE, "--epochs", "3", "-o", out)
    assert r.exit_code == 130
    assert f"resume with: medaudit train --resume {tmp_path / 'm.last.pt'}" in r.output
    monkeypatch.setattr(tr._Loop, "_train_epoch", real)
    r = run("--resume", tmp_path / "m.last.pt", "--epochs", "7", "-q")
    assert r.exit_code == 0, r.output
    assert "ignoring --epochs" in r.output
    assert [h["epoch"] for h in load_checkpoint(out).meta["history"]] == [1, 2, 3]


def test_sigterm_stops_like_ctrl_c(npz, tmp_path, monkeypatch):
    """A scheduler's SIGTERM in epoch 2 leaves epoch 1 resumable, with the same message."""
    import signal

    import medaudit.train.loop as tr

    real = tr._Loop._train_epoch

    def sigterm_in_epoch_2(self, epoch, last):
        if epoch == 1:
            # Fail instead of killing pytest when no handler is installed.
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises during this sleep
        return real(self, epoch, last)

    monkeypatch.setattr(tr._Loop, "_train_epoch", sigterm_in_epoch_2)
    before = signal.getsignal(signal.SIGTERM)
    r = run("--data", npz, *BASE, "--epochs", "3", "-o", tmp_path / "m.pt")
    assert r.exit_code == 130, r.output
    assert f"resume with: medaudit train --resume {tmp_path / 'm.last.pt'}" in r.output
    assert signal.getsignal(signal.SIGTERM) is before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tiny.npz") == ["m.last.pt", "m.pt"]


def test_output_under_a_file_is_refused(npz, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = run("--data", npz, *BASE, "--epochs", "1", "-o", blocker / "m.pt")
    assert r.exit_code == 2 and "not writable" in r.output
