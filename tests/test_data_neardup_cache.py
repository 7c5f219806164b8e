"""The near-duplicate pair cache: a second search over the same hashes reads it, a damaged or edited
file is refused (one warning) and rewritten, a cached pair is re-checked before it counts, other
data or thresholds use another entry, ``--rehash`` does not read it, an unwritable folder only warns."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from medaudit.data import hashcache, neardup
from medaudit.data.neardup import cached_near_duplicate_pairs, near_duplicate_pairs
from medaudit.errors import MedauditWarning


def _planted(seed=0, n=300, copies=12):
    """Random hashes and thumbnails with ``copies`` planted near-duplicates (a few bits and a little
    noise away from an earlier image)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    t = rng.integers(0, 256, (n, 256)).astype(np.uint8)
    for k in range(copies):
        src, dst = k, n - 1 - k
        h[dst] = h[src] ^ np.uint64(int(rng.integers(0, 64)) and (1 << int(rng.integers(0, 64))))
        t[dst] = np.clip(t[src].astype(int) + rng.integers(-2, 3, 256), 0, 255)
    return h, t


def _equal(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "neardup"


def _count_searches(monkeypatch):
    calls = []
    real = neardup.near_duplicate_pairs
    monkeypatch.setattr(neardup, "near_duplicate_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_second_search_reads_the_cache_and_equals_the_search(cache, monkeypatch):
    h, t = _planted()
    calls = _count_searches(monkeypatch)
    first = cached_near_duplicate_pairs(h, t)
    assert len(first["ia"]) == 12 and len(calls) == 1
    again = cached_near_duplicate_pairs(h.copy(), t.copy())
    assert len(calls) == 1  # read, not searched
    _equal(again, near_duplicate_pairs(h, t))
    _equal(first, again)
    # across two sets too
    a, b = (h[:150], t[:150]), (h[150:], t[150:])
    across = cached_near_duplicate_pairs(*a, *b)
    assert len(calls) == 2
    _equal(cached_near_duplicate_pairs(*a, *b), across)
    assert len(calls) == 2
    _equal(across, near_duplicate_pairs(*a, *b))


def test_other_data_or_thresholds_use_another_entry(cache, monkeypatch):
    h, t = _planted()
    calls = _count_searches(monkeypatch)
    cached_near_duplicate_pairs(h, t)
    t2 = t.copy()
    t2[0, 0] ^= 1  # one thumbnail pixel
    cached_near_duplicate_pairs(h, t2)
    cached_near_duplicate_pairs(h, t, max_distance=4)
    cached_near_duplicate_pairs(h[:150], t[:150], h[150:], t[150:])
    cached_near_duplicate_pairs(h[150:], t[150:], h[:150], t[:150])  # swapped sides
    assert len(calls) == 5 and len(list(cache.glob("*.npz"))) == 5


def _only_file(cache):
    (f,) = cache.glob("*.npz")
    return f


@pytest.mark.parametrize("damage", ["garbage", "forged_pair", "repeated_pair", "out_of_range", "other_key"])
def test_damaged_or_edited_cache_is_refused_and_rewritten(cache, monkeypatch, damage):
    h, t = _planted()
    truth = cached_near_duplicate_pairs(h, t)
    f = _only_file(cache)
    if damage == "garbage":
        f.write_bytes(b"not a zip")
    else:
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "forged_pair":  # two unrelated images claimed to be near-duplicates
            arrays["ia"], arrays["ib"] = np.r_[arrays["ia"], 50], np.r_[arrays["ib"], 60]
            arrays["distance"], arrays["correlation"] = np.r_[arrays["distance"], 0], np.r_[arrays["correlation"], 1.0]
        elif damage == "repeated_pair":
            arrays = {k: np.r_[v, v[-1:]] if k != "key" else v for k, v in arrays.items()}
        elif damage == "out_of_range":
            arrays["ib"] = arrays["ib"].copy()
            arrays["ib"][-1] = len(h)
        else:
            arrays["key"] = np.frombuffer(b"0" * 64, dtype=np.uint8)
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)
    calls = _count_searches(monkeypatch)
    with pytest.warns(MedauditWarning, match="near-duplicate cache .* is unusable"):
        got = cached_near_duplicate_pairs(h, t)
    assert len(calls) == 1
    _equal(got, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _equal(cached_near_duplicate_pairs(h, t), truth)  # rewritten: read quietly
    assert len(calls) == 1


def test_a_cache_may_hide_pairs_but_the_values_are_recomputed(cache):
    h, t = _planted()
    truth = cached_near_duplicate_pairs(h, t)
    f = _only_file(cache)
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays = {k: v if k == "key" else v[1:] for k, v in arrays.items()}  # one pair dropped
    arrays["correlation"] = np.ones_like(arrays["correlation"])  # wrong values
    arrays["distance"] = np.zeros_like(arrays["distance"])
    with open(f, "wb") as fh:
        np.savez(fh, **arrays)
    got = cached_near_duplicate_pairs(h, t)
    assert len(got["ia"]) == len(truth["ia"]) - 1  # trusted for completeness, as the hash cache is
    np.testing.assert_array_equal(got["distance"], truth["distance"][1:])
    np.testing.assert_array_equal(got["correlation"], truth["correlation"][1:])


def test_rehash_does_not_read_it(cache, monkeypatch):
    h, t = _planted()
    calls = _count_searches(monkeypatch)
    cached_near_duplicate_pairs(h, t)
    with hashcache.rehash():
        cached_near_duplicate_pairs(h, t)
    assert len(calls) == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only folder")
def test_unwritable_cache_folder_only_warns(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.parent.chmod(0o500)
    try:
        h, t = _planted()
        with pytest.warns(MedauditWarning, match="could not write the near-duplicate cache"):
            got = cached_near_duplicate_pairs(h, t)
        _equal(got, near_duplicate_pairs(h, t))
    finally:
        cache.parent.chmod(0o700)


def test_unwritable_cache_file_location_only_warns(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the folder should be")
    h, t = _planted()
    with pytest.warns(MedauditWarning, match="could not write the near-duplicate cache"):
        got = cached_near_duplicate_pairs(h, t)
    _equal(got, near_duplicate_pairs(h, t))
