"""Atomic writes: complete files only, nothing left behind on failure, normal permissions."""

from __future__ import annotations

import os
import stat

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
