"""``medaudit train`` on the command line: options from the config, bad input exits 2 with one line naming the
option, warnings on stderr, Ctrl-C leaves a resumable state."""

from __future__ import annotations

import os
import time
from dataclasses import MISSING, fields

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.cli.train import train as train_command
from medaudit.models.checkpoint import load_checkpoint
from medaudit.train.config import TrainConfig
from tests.test_train_loop import write_npz


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
    assert loaded.meta["training"]["in_chans"] == 1 and loaded.recipe.in_chans == 1  # the choice "1" as an int


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--model", "resnet18x"), "Did you mean"),
        (("--loss", "bce"), "Error: --loss bce is for multi-label data; this dataset is multiclass"),
        (("--batch-size", "500"), "Error: --batch-size 500 is larger than the training split"),
        (("--select-by", "val_recall[nope]"), "Error: --select-by val_recall[nope]: no such class"),
        (("--class-weights", "1,2"), "Error: --class-weights needs 3 values (got 2)"),
        (("--loss", "focal", "--focal-alpha", "0.3"), "Error: --focal-alpha: a single value is only defined for 2"),
        (("--focal-alpha", "0.3"), "Error: --focal-alpha only applies to the focal loss (got loss ce)"),
        (("--mean", "a,b"), "Error: --mean takes comma-separated numbers (got 'a,b')"),
        (("--milestones", "1,x"), "Error: --milestones takes comma-separated integers (got '1,x')"),
        (("--warmup-epochs", "5"), "Error: --warmup-epochs must be in [0, epochs) = [0, 1) (got 5)"),
        (("--optimizer", "sgd", "--momentum", "-1"), "Error: --momentum must be in [0, 1)"),
        (("--scheduler", "multistep", "--milestones", "-3"), "Error: --milestones are 0-based epochs"),
        (("--num-workers", "-1"), "Error: --num-workers must be >= 0"),
        (("--sampler", "balanced", "--loss", "weighted-ce"), "Error: --sampler balanced already balances classes"),
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
    assert r.exit_code == 2 and "--loss focal is for single-label data; this dataset is multi-label: use bce" in r.output
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
    assert r.exit_code == 2 and f"Error: -o {ro / 'm.pt'}: output folder is not writable" in r.output


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
    r = run("--resume", tmp_path / "m.last.pt", "--epochs", "7", "--model", "resnet18", "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    # --device is how to run (used); --epochs and --model are the saved run's (ignored, said on stderr).
    assert "Warning: --resume uses the saved settings; ignoring --model, --epochs" in r.stderr
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


def test_options_come_from_the_config():
    """One option per TrainConfig field, named by the field (``param`` finds it), with the field's default and choices."""
    options = {p.name: p for p in train_command.params}
    for f in fields(TrainConfig):
        opt = options[f.name]
        choices = f.metadata["choices"]
        if choices is not None:
            assert list(opt.type.choices) == [str(c) for c in choices], f.name
        if f.default is MISSING:  # required (arch) or a list default (mean, std): not given keeps the config's
            assert opt.default is None, f.name
        else:
            assert opt.default == (f.default if choices is None or f.default is None else str(f.default)), f.name
        assert opt.help == f.metadata["help"], f.name
    assert [p.opts[0] for p in train_command.params][:8] == [
        "--data", "--classes", "--task", "--model", "-o", "--img-size", "--in-chans", "--resize"]
    assert [p.opts[0] for p in train_command.params][-3:] == ["--num-workers", "--resume", "-q"]


def test_help_shows_the_config_defaults():
    r = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for line in ("--in-chans [1|3]", "--optimizer [adam|adamw|sgd]", "[default: 0.001]", "--small-stem / --standard-stem",
                 "--amp / --no-amp", "[default: amp]", "--task [binary|multiclass|multilabel|ordinal]"):
        assert line in r.output, line


def test_warnings_reach_stderr_also_when_quiet(tmp_path):
    """Library warnings (no val split: a carve of train) are one ``Warning:`` line on stderr; -q keeps stdout to the
    result line."""
    path = write_npz(tmp_path / "noval.npz", n=(40, 0, 12), val=False)
    r = run("--data", path, *BASE, "--epochs", "1", "-o", tmp_path / "m.pt")
    assert r.exit_code == 0, r.output
    assert "Warning: no 'val' split in the data; carved: stratified 0.1 of 'train'" in r.stderr
    assert r.stdout.startswith("best: epoch 1 (val_auc ") and r.stdout.count("\n") == 1
    loud = run("--data", path, *BASE[:-1], "--epochs", "1", "-o", tmp_path / "n.pt")
    assert "epoch 1/1" in loud.stdout and "Warning: no 'val' split" not in loud.stdout
