"""The persistent image hash cache: an unchanged folder is decoded once, a changed file again."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import medaudit.data.base as base
import medaudit.data.scan as scan
from medaudit.cli import main
from medaudit.data import load_dataset
from medaudit.data.hashcache import RACY_NS, HashCache, default_hash_cache_dir, rehash
from medaudit.errors import MedauditWarning


def _folder(root, n_per_class=4, side=12, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(n_per_class):
                Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(d / f"{k}.png")
    Image.fromarray(np.zeros((side, side, 3), np.uint8), "RGB").save(root / "test" / "a" / "rgb.png")
    _age(root)
    return root


def _age(root, seconds=100):
    """Set every file's mtime in the past: just-written files are racy and rightly not trusted."""
    past = time.time_ns() - seconds * 1_000_000_000
    for p in root.rglob("*.png"):
        os.utime(p, ns=(past, past))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A cache folder per test, so the files found there are this test's."""
    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp_path / "cache"))


def _scan(root):
    ds = load_dataset(str(root))
    return {name: (s.content_hashes(), *s.perceptual_hashes(), s.image_stats()) for name, s in ds.splits.items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0]
        np.testing.assert_array_equal(a[k][1], b[k][1])
        np.testing.assert_array_equal(a[k][2], b[k][2])
        assert a[k][3] == b[k][3]


def test_second_scan_decodes_nothing_and_gives_the_same_results(tmp_path, count_decodes):
    root = _folder(tmp_path / "d")
    first = _scan(root)
    assert len(count_decodes) == 17
    count_decodes.clear()
    second = _scan(root)
    assert count_decodes == []
    _same(first, second)
    # The cached values are those a fresh decode gives (not just self-consistent).
    with rehash():
        fresh = _scan(root)
    assert len(count_decodes) == 17
    _same(first, fresh)


def test_a_changed_file_is_decoded_again(tmp_path, count_decodes):
    root = _folder(tmp_path / "d")
    before = _scan(root)
    target = root / "test" / "b" / "2.png"
    Image.fromarray(np.full((12, 12), 7, np.uint8)).save(target)  # same size on disk is not required
    past = time.time_ns() - 50 * 1_000_000_000
    os.utime(target, ns=(past, past))  # an mtime set back to the past still changes mtime_ns and ctime
    count_decodes.clear()
    after = _scan(root)
    assert count_decodes == [str(target)]
    ids = load_dataset(str(root)).split("test").sample_ids
    k = ids.index("test/b/2.png")
    assert after["test"][0][k] != before["test"][0][k]
    assert [h for i, h in enumerate(after["test"][0]) if i != k] == [h for i, h in enumerate(before["test"][0]) if i != k]


def test_racy_entries_are_not_trusted(tmp_path, count_decodes):
    root = _folder(tmp_path / "d")
    now = time.time_ns() + RACY_NS  # mtime after the cache write: changed in the same tick, maybe
    racy = root / "train" / "a" / "0.png"
    os.utime(racy, ns=(now, now))
    _scan(root)
    count_decodes.clear()
    _scan(root)
    assert count_decodes == [str(racy)]


def test_damaged_cache_warns_and_is_rebuilt(tmp_path, count_decodes):
    root = _folder(tmp_path / "d")
    first = _scan(root)
    files = sorted(default_hash_cache_dir().glob("*.npz"))
    assert len(files) == 2
    with np.load(files[0]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["sha"] = arrays["sha"].copy()
    arrays["sha"][0, 0] ^= 1  # a poisoned hash without a fresh checksum
    np.savez(files[0], **arrays)
    files[1].write_bytes(b"not a zip")
    count_decodes.clear()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        again = _scan(root)
    msgs = [str(x.message) for x in w if issubclass(x.category, MedauditWarning)]
    assert len(msgs) == 2 and any("checksum" in m for m in msgs), msgs
    assert len(count_decodes) == 17
    _same(first, again)
    count_decodes.clear()
    _scan(root)  # rewritten: trusted again
    assert count_decodes == []


def test_unwritable_cache_folder_only_warns(tmp_path, monkeypatch, count_decodes):
    root = _folder(tmp_path / "d")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MEDAUDIT_CACHE", str(blocker))  # a file where the folder should be
    with pytest.warns(MedauditWarning, match="could not write the image hash cache"):
        _scan(root)


def test_stale_format_is_ignored_quietly(tmp_path, monkeypatch, count_decodes):
    root = _folder(tmp_path / "d")
    _scan(root)
    monkeypatch.setattr("medaudit.data.hashcache.DECODER_VERSION", 99)
    count_decodes.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _scan(root)
    assert len(count_decodes) == 17


def test_split_with_its_own_decoder_is_not_cached(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d")

    class Inverted(base.Split):
        def _decode(self, i):
            im, mode = super()._decode(i)
            return Image.eval(im, lambda v: 255 - v), mode

    plain = load_dataset(str(root)).split("test")
    inv = Inverted(name="test", sample_ids=plain.sample_ids, labels=plain.labels, class_names=plain.class_names,
                   paths=plain.paths)
    plain.content_hashes()
    assert inv._hash_cache_tag() is None
    assert inv.content_hashes() != load_dataset(str(root)).split("test").content_hashes()


def test_cache_file_validation_names_the_problem(tmp_path):
    paths = [tmp_path / "x.png"]
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(paths[0])
    cache = HashCache.open(paths, split="s", tag="pixels", directory=tmp_path / "c")
    cache.lookup(0)
    cache.store(0, "ab" * 32, 5, np.zeros(256, np.uint8), (4, 4), "L")
    cache.save()
    with np.load(cache.file) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta["n"] == 1 and meta["tag"] == "pixels"
    arrays["thumbs"] = arrays["thumbs"].astype(np.int16)
    np.savez(cache.file, **arrays)
    with pytest.warns(MedauditWarning, match="unusable"):
        HashCache.open(paths, split="s", tag="pixels", directory=tmp_path / "c")


def test_cli_rehash_decodes_again(tmp_path, count_decodes):
    root = _folder(tmp_path / "d")
    runner = CliRunner()
    r1 = runner.invoke(main, ["data", "inspect", str(root), "--json"])
    assert r1.exit_code == 0, r1.output
    count_decodes.clear()
    r2 = runner.invoke(main, ["data", "inspect", str(root), "--json"])
    assert r2.exit_code == 0 and count_decodes == []
    r3 = runner.invoke(main, ["data", "inspect", str(root), "--json", "--rehash"])
    assert r3.exit_code == 0 and len(count_decodes) == 17
    assert json.loads(r1.output) == json.loads(r2.output) == json.loads(r3.output)
    count_decodes.clear()
    runner.invoke(main, ["data", "inspect", str(root), "--json"])  # --rehash does not stick
    assert count_decodes == []


def test_worker_scan_matches_the_sequential_one(tmp_path):
    root = _folder(tmp_path / "d", n_per_class=3)
    (root / "train" / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    split = load_dataset(str(root)).split("train")
    idx = list(range(len(split)))
    seq = list(scan.scan_files(split, idx, workers=0))
    par = list(scan.scan_files(split, idx, workers=2))
    assert [isinstance(r, str) for r in seq] == [isinstance(r, str) for r in par] and sum(
        isinstance(r, str) for r in seq) == 1
    for a, b in zip(seq, par):
        if isinstance(a, str):
            assert a == b and "bad.png" in a
        else:
            assert a[0] == b[0] and a[1] == b[1] and a[3:] == b[3:]
            np.testing.assert_array_equal(a[2], b[2])


def test_report_offers_rehash():
    out = CliRunner().invoke(main, ["report", "--help"]).output
    assert "--rehash" in out and "hash cache" in out


def _worker_signal_handlers(_):
    import signal

    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_scan_workers_die_on_sigterm_and_leave_ctrl_c_to_the_parent(tmp_path):
    """The command's SIGTERM-as-Ctrl-C handler must not reach the pool's workers (they could survive terminate)."""
    import multiprocessing
    import signal

    from medaudit.cli._common import sigterm_as_interrupt

    root = _folder(tmp_path / "d", n_per_class=3)
    split = load_dataset(str(root)).split("train")
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1, initializer=scan._scan_init, initargs=(split,)) as pool:
            term, intr = pool.apply(_worker_signal_handlers, (0,))
        assert (term, intr) == (signal.SIG_DFL, signal.SIG_IGN)
        list(scan.scan_files(split, list(range(len(split))), workers=2))  # a finished scan: workers joined
        gen = scan.scan_files(split, list(range(len(split))), workers=2)
        next(gen)
        gen.close()  # a consumer that stops early: the pool is terminated and joined, nothing left behind
    assert multiprocessing.active_children() == []
