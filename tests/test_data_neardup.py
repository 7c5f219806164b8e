"""Near-duplicates: the pHash against an independent DCT (and imagehash when installed), the
multi-index search against brute force, the thresholds on re-encoded copies versus different
images of one class, the single decode pass, and the within/across counting rule.

``python -m tests.test_data_neardup`` prints the distance and correlation distributions the
thresholds were chosen from (medaudit/data/neardup.py) and times the search on 50k hashes.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import scipy.fftpack
from click.testing import CliRunner
from PIL import Image

from medaudit.data import Dataset, Split, load_dataset
from medaudit.data.demo import DEMO_CLASSES, render_slice
from medaudit.data.images import perceptual_signature
from medaudit.data.inspect import format_inspection, inspect_dataset
from medaudit.data.neardup import (
    MAX_DISTANCE,
    MIN_CORRELATION,
    find_near_duplicates,
    hamming_pairs,
    near_duplicate_pairs,
    popcount64,
    thumbnail_correlation,
)

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


# -- the hash ------------------------------------------------------------------------------------


def _reference_phash(im: Image.Image) -> int:
    """imagehash.phash written out from its definition: full 2-D DCT by scipy.fftpack."""
    pixels = np.asarray(im.convert("L").resize((32, 32), Image.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
    return int("".join("1" if b else "0" for b in (low > np.median(low)).ravel()), 2)


def _images():
    rng = np.random.default_rng(5)
    out = [Image.fromarray(render_slice(np.random.default_rng([9, i]), DEMO_CLASSES[i % 4], s)[0])
           for i, s in enumerate((16, 28, 64, 100, 128, 200))]
    out.append(Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)))  # RGB, not square
    out.append(Image.fromarray(rng.integers(0, 256, (7, 9), dtype=np.uint8)))  # smaller than 32
    return out


def test_phash_matches_the_definition():
    for im in _images():
        h, thumb = perceptual_signature(im)
        assert h == _reference_phash(im)
        assert bin(h).count("1") == 32  # median split of 64 distinct values
        grey = np.asarray(im.convert("L").resize((32, 32), Image.LANCZOS), dtype=float)
        assert thumb.shape == (16, 16) and thumb.dtype == np.uint8
        assert np.abs(thumb - grey.reshape(16, 2, 16, 2).mean(axis=(1, 3))).max() <= 0.5


def test_phash_matches_imagehash():
    imagehash = pytest.importorskip("imagehash")
    for im in _images():
        assert perceptual_signature(im)[0] == int(str(imagehash.phash(im)), 16)


def test_flat_image_hashes_to_its_dc_bit_only():
    # Every AC coefficient of a flat image is 0 (the median), the DC one is positive: only the
    # first (most significant) bit is set; floating-point noise must not decide the other 63.
    for value in (1, 128, 255):
        h, thumb = perceptual_signature(Image.new("L", (50, 37), value))
        assert h == 1 << 63 and (thumb == value).all()
    assert perceptual_signature(Image.new("L", (8, 8), 0))[0] == 0  # DC 0 is not above the median 0


# -- the search ----------------------------------------------------------------------------------


def _brute(a, b, k):
    d = popcount64(a[:, None] ^ (a if b is None else b)[None, :])
    ia, ib = np.nonzero(d <= k)
    if b is None:
        keep = ia < ib
        ia, ib = ia[keep], ib[keep]
    return ia, ib, d[ia, ib]


@pytest.mark.parametrize("k", [0, 1, 4, 6, 9])
def test_hamming_pairs_equal_brute_force(k):
    rng = np.random.default_rng(k)
    base = rng.integers(0, 2**64 - 1, 400, dtype=np.uint64, endpoint=True)
    flips = np.zeros(400, np.uint64)
    for i in range(400):  # near copies at distances 0..k+2, so some fall just outside
        for bit in rng.choice(64, rng.integers(0, k + 3), replace=False):
            flips[i] |= np.uint64(1) << np.uint64(bit)
    a = np.concatenate([base, base[:30], base[:5] ^ flips[:5]])  # exact and near repeats inside a
    b = base ^ flips
    for other in (None, b):
        got = hamming_pairs(a, other, max_distance=k)
        want = _brute(a, other, k)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert len(got[0]) > 0


@pytest.mark.parametrize("block", [7, 1 << 19])
def test_near_duplicate_pairs_are_confirmed_block_by_block(monkeypatch, block):
    import medaudit.data.neardup as nd

    rng = np.random.default_rng(3)
    thumbs = rng.integers(0, 256, (60, 256), dtype=np.uint8)
    hashes = np.zeros(300, np.uint64)  # one cluster: every pair is a pHash candidate
    hashes[150:] = np.uint64(1)
    th = thumbs[rng.integers(0, 60, 300)]  # repeats correlate 1, others ~0
    seen = []
    corr = nd.thumbnail_correlation
    monkeypatch.setattr(nd, "_BLOCK", block)
    monkeypatch.setattr(nd, "thumbnail_correlation", lambda a, b: seen.append(len(a)) or corr(a, b))
    got = nd.near_duplicate_pairs(hashes, th, max_distance=2)
    ia, ib, d = _brute(hashes, None, 2)
    r = corr(th[ia], th[ib])
    keep = r >= nd.MIN_CORRELATION
    for key, want in (("ia", ia[keep]), ("ib", ib[keep]), ("distance", d[keep]), ("correlation", r[keep])):
        np.testing.assert_array_equal(got[key], want)
    assert 0 < keep.sum() < len(ia)
    if block == 7:  # the candidates of one block (<= 299 pairs per hash) are correlated, never all 44,850
        assert max(seen) < 310 and sum(seen) == len(ia)


def test_popcount_without_numpy_bitwise_count(monkeypatch):
    x = np.random.default_rng(0).integers(0, 2**64 - 1, (50, 3), dtype=np.uint64, endpoint=True)
    want = np.array([[bin(int(v)).count("1") for v in row] for row in x])
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(popcount64(x), want)


def test_thumbnail_correlation_against_numpy_and_flat_is_nan():
    rng = np.random.default_rng(1)
    ta, tb = (rng.integers(0, 256, (20, 256), dtype=np.uint8) for _ in range(2))
    tb[0] = ta[0] // 2 + 10  # an affine copy: r = 1
    want = [np.corrcoef(x.astype(float), y.astype(float))[0, 1] for x, y in zip(ta, tb)]
    np.testing.assert_allclose(thumbnail_correlation(ta, tb), want, rtol=1e-12)
    assert thumbnail_correlation(ta[:1], tb[:1])[0] == pytest.approx(1.0, abs=1e-3)  # uint8 rounding
    flat = np.full((1, 256), 7, np.uint8)
    assert np.isnan(thumbnail_correlation(flat, flat)[0])


# -- the thresholds: copies versus different images -----------------------------------------------


def _jpeg(x, q=70):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _resize(x, f):
    h, w = x.shape
    return np.asarray(Image.fromarray(x).resize((round(w * f), round(h * f)), Image.BICUBIC))


def _level(x, add=0.0, gain=1.0):
    return np.clip(np.rint(x * gain + add), 0, 255).astype(np.uint8)


def _shift(x, dx, dy):
    out = np.zeros_like(x)
    h, w = x.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


COPIES = {
    "jpeg q=70": _jpeg,
    "resized 0.5x": lambda x: _resize(x, 0.5),
    "resized 1.5x": lambda x: _resize(x, 1.5),
    "brightness +20": lambda x: _level(x, add=20),
    "gain 1.2": lambda x: _level(x, gain=1.2),
    "gain 0.8": lambda x: _level(x, gain=0.8),
    "0.75x + jpeg + 10": lambda x: _level(_jpeg(_resize(x, 0.75)), add=10),
}
SHIFTS = {"shifted 2 px": lambda x: _shift(x, 2, 1), "shifted 4 px": lambda x: _shift(x, 3, -3)}


def _demo(size, n_per_class, split=0):
    return [render_slice(np.random.default_rng([0, split, ci, i]), c, size)[0]
            for ci, c in enumerate(DEMO_CLASSES) for i in range(n_per_class)]


def _signatures(images):
    sig = [perceptual_signature(Image.fromarray(x)) for x in images]
    return np.array([h for h, _ in sig], dtype=np.uint64), np.stack([t.ravel() for _, t in sig])


def _matched(originals, copies):
    """Per copy: is it a confirmed near-duplicate of its own original?"""
    p = near_duplicate_pairs(*_signatures(originals), *_signatures(copies))
    found = np.zeros(len(copies), bool)
    found[p["ib"][p["ia"] == p["ib"]]] = True
    return found


@pytest.mark.parametrize("size", [64, 128])
def test_re_encoded_resized_and_relevelled_copies_are_found(size):
    originals = _demo(size, 10)
    for name, make in COPIES.items():
        found = _matched(originals, [make(x) for x in originals])
        assert found.all(), f"{name}: {np.flatnonzero(~found)} not found"


def test_different_slices_of_one_class_are_not_near_duplicates():
    # The hard negative: one head template, one lesion region per class; pHash alone (distance
    # <= 6) pairs many of them, the thumbnail correlation must reject every pair.
    for size in (64, 128):
        train, test = _demo(size, 60, split=0), _demo(size, 15, split=2)
        sig_train, sig_test = _signatures(train), _signatures(test)
        ia, ib, _ = hamming_pairs(sig_train[0], sig_test[0], max_distance=MAX_DISTANCE)
        assert len(ia) > 0  # the hash alone would flag some: the case is hard
        assert len(near_duplicate_pairs(*sig_train, *sig_test)["ia"]) == 0
        assert len(near_duplicate_pairs(*sig_train)["ia"]) == 0


def test_shifted_copies_are_documented_as_missed():
    # pHash is not shift-invariant; the module docstring says so. If this starts passing, the
    # docstring (and the report's wording) should change.
    originals = _demo(64, 5)
    for make in SHIFTS.values():
        assert not _matched(originals, [make(x) for x in originals]).any()


# -- splits: one decode pass, counting rule --------------------------------------------------------


def _write(path, x):
    Image.fromarray(x).save(path)


def _folder(tmp_path):
    """train: a, b, c, a-as-jpeg (a near copy inside train); test: a (pixel copy), jpeg of b
    (near copy), d (new), brightened d (near copy inside test)."""
    a, b, c, d = (render_slice(np.random.default_rng([3, i]), "glioma", 96)[0] for i in range(4))
    root = tmp_path / "ds"
    for split in ("train", "test"):
        for cls in ("x", "y"):
            (root / split / cls).mkdir(parents=True)
    _write(root / "train" / "x" / "a.png", a)
    _write(root / "train" / "x" / "b.png", b)
    _write(root / "train" / "y" / "c.png", c)
    Image.fromarray(a).save(root / "train" / "y" / "a_jpeg.jpg", quality=70)
    _write(root / "test" / "x" / "a_copy.png", a)
    Image.fromarray(b).save(root / "test" / "x" / "b_jpeg.jpg", quality=70)
    _write(root / "test" / "y" / "d.png", d)
    _write(root / "test" / "y" / "d_bright.png", _level(d, add=20))
    return root


def test_counting_rule_and_examples(tmp_path):
    ds = load_dataset(str(_folder(tmp_path)))
    near = find_near_duplicates(ds.splits)
    assert near["max_distance"] == MAX_DISTANCE and near["min_correlation"] == MIN_CORRELATION
    # train: a ~ a_jpeg; test: d ~ d_bright; across: a_copy (pixel-identical to train/a, and near
    # to train/a_jpeg) and b_jpeg.
    assert near["within"] == {"train": {"n_pairs": 1, "n_samples": 2}, "test": {"n_pairs": 1, "n_samples": 2}}
    across = near["across"]["train/test"]
    assert across["n"] == 2 and across["n_pixel_identical"] == 1 and near["leakage"] is True
    assert [(e["a"], e["b"]) for e in across["examples"]] == [("train/x/b.png", "test/x/b_jpeg.jpg")]
    e = across["examples"][0]
    assert e["split_a"] == "train" and e["split_b"] == "test" and 0 <= e["distance"] <= MAX_DISTANCE
    assert e["correlation"] >= MIN_CORRELATION
    pairs = {(x["a"], x["b"]) for x in near["examples"]}
    assert pairs == {("train/x/b.png", "test/x/b_jpeg.jpg"), ("train/x/a.png", "train/y/a_jpeg.jpg"),
                     ("test/y/d.png", "test/y/d_bright.png")}
    assert near["examples"][0]["split_b"] == "test"  # across-split pairs first
    json.dumps(near)
    # each example carries the two 16x16 thumbnails the report shows, as PNG data URIs
    import base64
    import io

    from PIL import Image

    hashes, thumbs = ds.splits["test"].perceptual_hashes()
    uri_b = e["thumbnails"][1]
    assert uri_b.startswith("data:image/png;base64,") and len(uri_b) < 4096
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri_b.split(",", 1)[1]))))
    row = ds.splits["test"].sample_ids.index(e["b"])
    np.testing.assert_array_equal(decoded.ravel(), thumbs[row])
    # The pixel-identical copy is what duplicates already counts.
    assert inspect_dataset(ds)["duplicates"]["across"] == {"train/test": 1}


def test_one_decode_per_image(tmp_path, monkeypatch):
    ds = load_dataset(str(_folder(tmp_path)))
    calls = []
    real = Split._decode

    def counting(self, i):
        calls.append((self.name, i))
        return real(self, i)

    monkeypatch.setattr(Split, "_decode", counting)
    inspect_dataset(ds)
    for s in ds.splits.values():
        s.content_hashes(), s.perceptual_hashes(), s.fingerprint()
    assert sorted(calls) == sorted({(n, i) for n, s in ds.splits.items() for i in range(len(s))})


def test_array_split_signatures_equal_file_ones(tmp_path):
    x = np.stack(_demo(32, 2))
    split = Split(name="test", sample_ids=[f"test/{i}" for i in range(len(x))], labels=np.zeros(len(x), np.int64),
                  class_names=["a", "b"], array=x)
    h, t = split.perceptual_hashes()
    want = _signatures(list(x))
    np.testing.assert_array_equal(h, want[0])
    np.testing.assert_array_equal(t, want[1])
    h[0] = 0  # a copy: the cache is not changed through it
    assert split.perceptual_hashes()[0][0] == want[0][0]


def test_cli_lists_near_duplicates_across_splits(tmp_path):
    from medaudit.cli import main

    res = CliRunner().invoke(main, ["data", "inspect", str(_folder(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "across splits (samples of the later split): train/test 2 (1 pixel-identical)" in res.output
    assert "WARNING: near-identical images occur in more than one split (leakage)" in res.output
    assert "train/test: train/x/b.png ~ test/x/b_jpeg.jpg (pHash distance" in res.output
    assert "patients: not checked" in res.output


def test_format_without_near_duplicates_block():
    ds = Dataset(spec="x", class_names=["a", "b"], task="binary", splits={"test": Split(
        name="test", sample_ids=["t/0", "t/1"], labels=np.array([0, 1]), class_names=["a", "b"],
        array=np.stack(_demo(32, 1)[:2]))})
    s = inspect_dataset(ds)
    assert s["near_duplicates"]["leakage"] is False and s["near_duplicates"]["across"] == {}
    s.pop("near_duplicates"), s.pop("patients")  # an older summary still formats
    assert "near-duplicates" not in format_inspection(s)


# -- the numbers behind the thresholds (python -m tests.test_data_neardup) ------------------------


def _stats(v) -> str:
    v = np.asarray(v, dtype=float)
    return (f"min {v.min():5.3g}  p5 {np.percentile(v, 5):5.3g}  median {np.median(v):5.3g}  "
            f"p95 {np.percentile(v, 95):5.3g}  max {v.max():5.3g}")


def _print_distributions() -> None:
    from pathlib import Path

    sets = {f"demo {s}px": _demo(s, 50 if s < 256 else 25) for s in (64, 128, 256)}
    for name in ("pneumoniamnist", "breastmnist"):
        path = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / f"{name}.npz"
        if path.is_file():
            sets[f"{name} 28px"] = list(np.load(path)["test_images"][:200])
    for name, images in sets.items():
        h, t = _signatures(images)
        print(f"== {name}: {len(images)} images")
        for cname, make in {**COPIES, **SHIFTS}.items():
            ch, ct = _signatures([make(x) for x in images])
            d = popcount64(h ^ ch)
            r = thumbnail_correlation(t, ct)
            ok = (d <= MAX_DISTANCE) & (r >= MIN_CORRELATION)
            print(f"  copy {cname:18s} distance {_stats(d)} | r {_stats(r)} | found {ok.mean():.3f}")
        d = popcount64(h[:, None] ^ h[None, :])[np.triu_indices(len(h), 1)]
        iu = np.triu_indices(len(h), 1)
        r = thumbnail_correlation(t[iu[0]], t[iu[1]])
        same = np.asarray([images[i].tobytes() == images[j].tobytes() for i, j in zip(*iu)])
        d, r = d[~same], r[~same]
        print(f"  different images   distance {_stats(d)} | r {_stats(r)} | <=4 {np.mean(d <= 4):.4f} "
              f"<=6 {np.mean(d <= 6):.4f} | confirmed {np.mean((d <= MAX_DISTANCE) & (r >= MIN_CORRELATION)):.5f}")
    rng = np.random.default_rng(0)
    bits = np.argsort(rng.random((50_000, 64)), axis=1)[:, :32].astype(np.uint64)
    balanced = np.bitwise_or.reduce(np.uint64(1) << bits, axis=1)  # 32 bits set, like real pHashes
    for k in (4, MAX_DISTANCE):
        t0 = time.perf_counter()
        n = len(hamming_pairs(balanced, max_distance=k)[0])
        print(f"search within 50,000 random balanced hashes, distance <= {k}: {time.perf_counter() - t0:.2f} s "
              f"({n} pairs)")


if __name__ == "__main__":
    _print_distributions()
