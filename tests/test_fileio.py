"""Atomic writes: complete files only, nothing left behind on failure, normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from medaudit.fileio import atomic_path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_file_gets_the_default_mode_not_mkstemps_0600(tmp_path):
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.bin").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~_umask()


def test_an_existing_target_keeps_its_mode(tmp_path):
    target = tmp_path / "private.pt"
    target.write_bytes(b"old")
    target.chmod(0o600)  # the user's choice is kept on overwrite
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failure_leaves_neither_target_nor_temp_file(tmp_path):
    (tmp_path / "keep.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "keep.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "keep.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


def test_checkpoints_and_predictions_use_it(tmp_path, tiny_checkpoint):
    import numpy as np

    from medaudit.predictions import Predictions

    p = Predictions("m", ["a", "b"], "binary", ["s0", "s1"], [0, 1], [[0.9, 0.1], [0.2, 0.8]]).save(tmp_path / "p.npz")
    for f in (tiny_checkpoint, p):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_umask(), f
    assert np.load(p, allow_pickle=False)["y_true"].tolist() == [0, 1]


# -- sweeping what killed processes left -----------------------------------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_entries_of_exited_processes_only(tmp_path):
    from medaudit.fileio import _host_tag, staging_dir, sweep_stale

    host = _host_tag()
    dead = tmp_path / f".report.tmp-{_dead_pid()}-{host}-abc"
    dead.mkdir()
    (dead / "half.html").write_text("x")
    dead_file = tmp_path / f".report.tmp-{_dead_pid()}-{host}-x.tmp"
    dead_file.write_text("x")
    live = tmp_path / f".report.tmp-{os.getpid()}-{host}-def"
    live.mkdir()
    other_host = tmp_path / f".report.tmp-{_dead_pid()}-0000beef-ghi"
    other_host.mkdir()
    user_file = tmp_path / ".report.tmp-notes.md"  # not in our naming form: never touched
    user_file.write_text("mine")
    removed = sweep_stale(tmp_path, ".report.tmp-")
    assert sorted(removed) == sorted([dead, dead_file])
    assert live.is_dir() and other_host.is_dir() and user_file.read_text() == "mine"
    fresh = staging_dir(".report.tmp-", tmp_path)
    assert fresh.is_dir() and fresh.name.startswith(f".report.tmp-{os.getpid()}-{host}-")


def test_atomic_write_sweeps_a_killed_writers_temp_file(tmp_path):
    from medaudit.fileio import _host_tag

    orphan = tmp_path / f".model.pt.tmp-{_dead_pid()}-{_host_tag()}-q1.tmp"
    orphan.write_bytes(b"half a checkpoint")
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# -- checks before the work -------------------------------------------------------------------


def test_require_regular_file_refuses_fifos_folders_and_missing(tmp_path):
    from medaudit.errors import MedauditError
    from medaudit.fileio import require_regular_file

    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    with pytest.raises(MedauditError, match="not a regular file"):
        require_regular_file(fifo, param="data")
    with pytest.raises(MedauditError, match="is a folder"):
        require_regular_file(tmp_path)
    with pytest.raises(MedauditError, match="no such file"):
        require_regular_file(tmp_path / "nope.npz")
    (tmp_path / "ok.npz").write_bytes(b"x")
    (tmp_path / "link.npz").symlink_to(tmp_path / "ok.npz")
    assert require_regular_file(tmp_path / "link.npz") == tmp_path / "link.npz"


def test_check_destination_refuses_paths_that_cannot_be_made(tmp_path):
    from medaudit.errors import MedauditError
    from medaudit.fileio import check_destination

    (tmp_path / "afile").write_text("x")
    with pytest.raises(MedauditError, match="is a file, so no folder"):
        check_destination(tmp_path / "afile" / "sub")
    with pytest.raises(MedauditError, match="exists and is not a folder"):
        check_destination(tmp_path / "afile")
    with pytest.raises(MedauditError, match="not writable"):
        check_destination(Path("/proc/medaudit-x"))
    with pytest.raises(MedauditError, match="is a folder"):
        check_destination(tmp_path, kind="file")
    assert check_destination(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the write probe is removed
