"""`medaudit compare` on damaged or non-file inputs: a one-line error, exit 2 (issue 19)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.predictions import Predictions


def _save(tmp_path, name, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1.0, 1.0], size=30)
    y = (np.arange(30) % 2).astype(np.int64)
    return Predictions(name, ["normal", "disease"], "binary", [f"s{i}" for i in range(30)], y, probs).save(
        tmp_path / f"{name}.npz")


@pytest.fixture
def pair(tmp_path):
    return _save(tmp_path, "a", 0), _save(tmp_path, "b", 1)


def _compare(*paths):
    return CliRunner().invoke(main, ["compare", *map(str, paths), "--bootstrap", "0"])


def test_two_good_files_compare(pair, tmp_path):
    res = CliRunner().invoke(main, ["compare", *map(str, pair), "--bootstrap", "0", "--json",
                                    str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "c.json").read_text())["comparisons"]


@pytest.mark.parametrize("kind,needle", [
    ("empty", "is empty (0 bytes)"),
    ("truncated", "is truncated or damaged"),
    ("garbage", "is not a valid .npz (zip) file"),
])
def test_a_damaged_file_is_one_line_naming_it(pair, kind, needle):
    a, b = pair
    data = a.read_bytes()
    a.write_bytes({"empty": b"", "truncated": data[: len(data) // 3],
                   "garbage": np.random.default_rng(1).bytes(500)}[kind])
    res = _compare(a, b)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {a}: {needle}")
    assert "re-run `medaudit predict`" in lines[0]
    assert "Traceback" not in res.output and "Aborted" not in res.output and "pickle" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_object_arrays_stay_refused_as_pickled(pair, tmp_path):
    a, b = pair
    with np.load(a, allow_pickle=False) as f:
        m = {k: f[k] for k in f.files}
    m["sample_ids"] = m["sample_ids"].astype(object)
    np.savez(a, **m)
    res = _compare(a, b)
    assert res.exit_code == 2 and f"Error: {a}: holds pickled (object) arrays" in res.output, res.output


def test_a_fifo_is_refused_not_read(pair, tmp_path):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    res = _compare(fifo, pair[1])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == f"Error: {fifo}: not a regular file (a pipe, socket or device); give a file"
