"""Shared fixtures: small synthetic data, tiny checkpoints, an isolated predictions cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Never touch the user's ~/.cache from tests; keep progress bars quiet.
    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "medaudit-cache"))
    monkeypatch.setenv("MEDAUDIT_QUIET", "1")
    # Patient-id hashing: a fixed test salt, never the user's ~/.config/medaudit/salt.
    monkeypatch.setenv("MEDAUDIT_SALT", "medaudit-test-salt-0123456789")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tests use tiny models: one thread is fastest, and two threads on a busy 2-core box
    # spin-wait (a step measured 100x slower).
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def count_decodes(monkeypatch):
    """The image files decoded in this process, in order (medaudit.data.base.decode_image calls)."""
    import medaudit.data.base as base

    calls = []
    real = base.decode_image

    def counting(path, **kw):
        calls.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(base, "decode_image", counting)
    return calls


class ArraySplit:
    """A minimal in-memory split with the data-split interface (for tests of model code)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "test"):
        self.name = name
        self.array = images
        self.labels = labels
        self.sample_ids = [f"{name}/{i}" for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.array.tobytes() + self.labels.tobytes()).hexdigest()

    def load_image(self, i):
        from PIL import Image

        return Image.fromarray(self.array[i])


@pytest.fixture
def array_split():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 3, size=20).astype(np.int64)
    return ArraySplit(images, labels)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A random-init resnet18 (small stem) checkpoint for 3 classes at 16 px."""
    import torch

    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    torch.manual_seed(0)
    model = create_model("resnet18", 3, in_chans=1, img_size=16)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, arch="resnet18", class_names=["a", "b", "c"], task="multiclass",
                    recipe=Recipe(img_size=16, in_chans=1, mean=(0.5,), std=(0.25,)), small_stem=True)
    return path
