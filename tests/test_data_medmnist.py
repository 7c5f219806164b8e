"""MedMNIST names/label maps and the download path (against a local HTTP server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from medaudit.data import load_dataset, medmnist
from medaudit.errors import MedauditError

pytestmark = pytest.mark.filterwarnings("ignore::medaudit.errors.MedauditWarning")


def test_label_maps_and_tasks():
    assert len(medmnist.KNOWN) == 12 and set(medmnist.MD5) == set(medmnist.KNOWN) == set(medmnist.N_SAMPLES)
    assert medmnist.class_names("breastmnist") == ["malignant", "normal_benign"]
    assert medmnist.class_names("pneumoniamnist") == ["normal", "pneumonia"]
    assert medmnist.class_names("tissuemnist")[0] == "collecting_duct_connecting_tubule"
    assert len(medmnist.class_names("chestmnist")) == 14 and medmnist.task_of("chestmnist") == "multilabel"
    assert medmnist.task_of("retinamnist") == "ordinal" and medmnist.task_of("bloodmnist") == "multiclass"
    for name in medmnist.KNOWN:
        assert all(len(h) == 32 for h in medmnist.MD5[name])
        assert len(set(medmnist.class_names(name))) == len(medmnist.class_names(name))
    assert medmnist.known_name_from_stem("PneumoniaMNIST_128") == "pneumoniamnist"
    assert medmnist.known_name_from_stem("mnist") is None


def test_parse_spec():
    assert medmnist.parse_spec("medmnist:breastmnist") == ("breastmnist", 28)
    assert medmnist.parse_spec("medmnist:BreastMNIST@64") == ("breastmnist", 64)
    assert medmnist.file_name("breastmnist", 64) == "breastmnist_64.npz"
    with pytest.raises(MedauditError, match="known 2D datasets: bloodmnist, breastmnist"):
        medmnist.parse_spec("medmnist:nosuchmnist")
    with pytest.raises(MedauditError, match="size must be one of 28, 64, 128, 224"):
        medmnist.parse_spec("medmnist:breastmnist@32")


def _toy_npz(path):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 6), ("val", 2), ("test", 4)):
        arrays[f"{s}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % 2)[:, None].astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/files/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def test_download_good_file_then_load(tmp_path, server):
    served, base = server
    (served / "files").mkdir()
    md5 = _toy_npz(served / "files" / "breastmnist_64.npz")
    root = tmp_path / "cache"
    path = medmnist.fetch("breastmnist", 64, root=root, base_url=base, md5=md5, timeout=10)
    assert path == root / "breastmnist_64.npz"
    assert path.read_bytes() == (served / "files" / "breastmnist_64.npz").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["breastmnist_64.npz"]  # no temp files left


def test_download_md5_mismatch_leaves_nothing(tmp_path, server):
    served, base = server
    (served / "files").mkdir()
    _toy_npz(served / "files" / "breastmnist.npz")
    root = tmp_path / "cache"
    with pytest.raises(MedauditError, match="has MD5 .* expected 0{32}; .*nothing was saved"):
        medmnist.fetch("breastmnist", root=root, base_url=base, md5="0" * 32, timeout=10)
    assert list(root.iterdir()) == []


def test_download_http_error_and_offline(tmp_path, server, monkeypatch):
    _, base = server
    with pytest.raises(MedauditError, match=r"download failed .*place it at .*pathmnist\.npz"):
        medmnist.fetch("pathmnist", root=tmp_path / "c", base_url=base, timeout=10)
    assert list((tmp_path / "c").iterdir()) == []
    monkeypatch.setenv("MEDAUDIT_OFFLINE", "1")
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "empty"))
    with pytest.raises(MedauditError, match=r"MEDAUDIT_OFFLINE is set; download https://zenodo\.org/records/10519652"):
        load_dataset("medmnist:dermamnist@128")


def test_medmnist_spec_loads_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path))
    monkeypatch.setenv("MEDAUDIT_OFFLINE", "1")
    _toy_npz(tmp_path / "pneumoniamnist.npz")
    ds = load_dataset("medmnist:pneumoniamnist")
    assert ds.spec == "medmnist:pneumoniamnist" and ds.class_names == ["normal", "pneumonia"]
    assert [len(s) for s in ds.splits.values()] == [6, 2, 4] and ds.task == "binary"
