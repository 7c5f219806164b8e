"""The predictions cache: a damaged or altered entry is a miss with a warning, rewritten (issue 19)."""

from __future__ import annotations

import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.errors import MedauditWarning
from medaudit.models.checkpoint import load_checkpoint, save_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe
from medaudit.predict import predict_cached
from medaudit.predictions import Predictions

CORRUPTIONS = ("truncated", "empty", "flipped", "altered", "garbage")


def _member_data_offset(path, member: str) -> tuple[int, int]:
    """(offset, size) of a zip member's stored bytes, from its local header."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def corrupt(path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif kind == "flipped":  # bytes inside the compressed probabilities
        start, size = _member_data_offset(path, "probs.npy")
        raw = bytearray(data)
        for i in range(start + size // 2, start + size // 2 + 4):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif kind == "altered":  # a valid zip, one probability changed, the old checksum kept
        with np.load(path, allow_pickle=False) as f:
            members = {k: f[k] for k in f.files}
        assert "checksum" in members
        members["probs"] = members["probs"].copy()
        members["probs"][0, 0] = min(1.0, members["probs"][0, 0] + 1e-3)
        np.savez_compressed(path, **members)
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None  # nothing a zip check could see
    else:
        raise AssertionError(kind)


def _run(loaded, split, tmp_path):
    cache_dir = tmp_path / "cache"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        preds, hit = predict_cached(loaded, split, split_name="test", dataset_spec="mem", cache_dir=cache_dir,
                                    device="cpu")
    return preds, hit, [w for w in seen if issubclass(w.category, MedauditWarning)]


def _same(a: Predictions, b: Predictions) -> bool:
    return (a.sample_ids.tolist() == b.sample_ids.tolist() and np.array_equal(a.y_true, b.y_true)
            and np.array_equal(a.probs, b.probs) and a.class_names == b.class_names and a.task == b.task)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_damaged_entry_is_a_miss_with_one_warning_and_is_rewritten(tiny_checkpoint, array_split, tmp_path,
                                                                      kind):
    loaded = load_checkpoint(tiny_checkpoint)
    clean, hit, warned = _run(loaded, array_split, tmp_path)
    assert not hit and not warned
    (entry,) = (tmp_path / "cache").glob("*.npz")
    corrupt(entry, kind)
    again, hit, warned = _run(loaded, array_split, tmp_path)
    assert not hit and len(warned) == 1
    text = str(warned[0].message)
    assert str(entry) in text and "running inference again and rewriting it" in text
    assert _same(again, clean)
    assert _same(Predictions.load(entry, require_checksum=True), clean)  # rewritten, valid
    third, hit, warned = _run(loaded, array_split, tmp_path)
    assert hit and not warned and _same(third, clean)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary files left


def test_an_altered_entry_is_named_as_such(tiny_checkpoint, array_split, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    _run(loaded, array_split, tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    corrupt(entry, "altered")
    _, _, warned = _run(loaded, array_split, tmp_path)
    assert "do not match the checksum" in str(warned[0].message)


def test_an_entry_without_a_checksum_is_a_quiet_miss_and_is_upgraded(tiny_checkpoint, array_split, tmp_path):
    """What an older medaudit wrote under the same key: not trusted, not worth a warning."""
    loaded = load_checkpoint(tiny_checkpoint)
    clean, _, _ = _run(loaded, array_split, tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    with np.load(entry, allow_pickle=False) as f:
        members = {k: f[k] for k in f.files if k != "checksum"}
    members["probs"] = np.full_like(members["probs"], 1 / members["probs"].shape[1])  # would be visible if used
    np.savez_compressed(entry, **members)
    again, hit, warned = _run(loaded, array_split, tmp_path)
    assert not hit and not warned and _same(again, clean)
    with np.load(entry, allow_pickle=False) as f:
        assert "checksum" in f.files
    assert _run(loaded, array_split, tmp_path)[1]


def test_an_unwritable_entry_warns_and_the_pass_still_returns(tiny_checkpoint, array_split, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    clean, _, _ = _run(loaded, array_split, tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.unlink()
    entry.mkdir()  # a folder where the entry belongs: neither readable nor replaceable
    (entry / "keep.txt").write_text("not ours")
    again, hit, warned = _run(loaded, array_split, tmp_path)
    assert not hit and _same(again, clean)
    texts = [str(w.message) for w in warned]
    assert len(texts) == 2 and "is a folder" in texts[0] and "could not write the predictions cache entry" in texts[1]
    assert (entry / "keep.txt").read_text() == "not ours"  # nothing of the user's deleted


# -- end to end: `medaudit report` ------------------------------------------------------------


CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def demo_and_checkpoint(tmp_path_factory):
    from medaudit.data import make_demo_dataset

    root = tmp_path_factory.mktemp("cache_e2e")
    data = make_demo_dataset(root / "data", n_train=2, n_val=2, n_test=3, size=32)
    torch.manual_seed(3)
    ckpt = save_checkpoint(root / "r18.pt", create_model("resnet18", 4, img_size=32), arch="resnet18",
                           class_names=CLASSES, task="multiclass", recipe=Recipe(img_size=32), small_stem=True)
    return data, ckpt


def _report(data, ckpt, out):
    res = CliRunner().invoke(main, ["report", "--models", str(ckpt), "--data", str(data), "--bootstrap", "20",
                                    "--no-bench", "--no-cam", "--format", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    snap = json.loads((out / "report.json").read_text())
    return res.output, snap


def _test_entry(cache_dir):
    for entry in (cache_dir / "predictions").glob("*.npz"):
        with np.load(entry, allow_pickle=False) as f:
            if json.loads(str(f["header"]))["provenance"]["split"] == "test":
                return entry
    raise AssertionError("no cache entry of the test split")


@pytest.mark.parametrize("kind", ("truncated", "flipped", "altered"))
def test_report_recovers_from_a_damaged_cache_entry(demo_and_checkpoint, tmp_path, monkeypatch, kind):
    data, ckpt = demo_and_checkpoint
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDAUDIT_CACHE", str(cache))
    out1, clean = _report(data, ckpt, tmp_path / "clean")
    assert "Warning" not in out1 and not clean["run"]["predictions"]["r18"]["cached"]
    entry = _test_entry(cache)
    corrupt(entry, kind)
    out2, snap = _report(data, ckpt, tmp_path / "after")
    assert out2.count("Warning: predictions cache entry") == 1 and str(entry) in out2, out2
    assert "Traceback" not in out2
    # the test split ran again; its numbers are those of the clean run
    assert not snap["run"]["predictions"]["r18"]["cached"]
    del clean["run"], snap["run"]
    assert json.dumps(snap, sort_keys=True) == json.dumps(clean, sort_keys=True)
    assert Predictions.load(entry, require_checksum=True).n_samples == 3 * len(CLASSES)
    out3, again = _report(data, ckpt, tmp_path / "third")
    assert "Warning" not in out3 and again["run"]["predictions"]["r18"]["cached"]
