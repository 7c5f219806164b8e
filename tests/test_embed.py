"""Penultimate features: equal to timm's forward_head(pre_logits=True) and to torchvision's pooled
features, the model unchanged, cached by the features variant of the predictions cache key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medaudit.embed import classifier_head, compute_features, feature_positions, features_cached
from medaudit.models.checkpoint import load_checkpoint
from medaudit.models.factory import create_model
from medaudit.models.preprocess import Recipe, iter_batches


def test_timm_features_are_the_pre_logits(tiny_checkpoint, array_split):
    ld = load_checkpoint(tiny_checkpoint)
    ld.model.train()  # the caller's mode must come back
    positions = np.array([0, 3, 5, 7])
    feats = compute_features(ld, array_split, positions, device="cpu", batch_size=3)
    assert ld.model.training
    x = next(iter_batches(array_split, ld.recipe, 4, indices=positions))[0]
    with torch.no_grad():
        ld.model.eval()
        ref = ld.model.forward_head(ld.model.forward_features(x), pre_logits=True)
        logits = ld.model(x)
    assert feats.shape == (4, ref.shape[1])
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-4, atol=1e-5)
    # the logits are the head applied to these features
    head = classifier_head(ld.model)
    np.testing.assert_allclose(head(torch.from_numpy(feats)).detach().numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)


def test_torchvision_features_are_the_head_input(tiny_checkpoint, array_split):
    torch.manual_seed(1)
    model = create_model("tv:resnet18", 3, in_chans=3, img_size=16)
    ld = dataclasses.replace(load_checkpoint(tiny_checkpoint), _model=model,
                             recipe=Recipe(img_size=16, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3))
    assert classifier_head(model) is model.fc
    feats = compute_features(ld, array_split, np.arange(6), device="cpu")
    x = next(iter_batches(array_split, ld.recipe, 6))[0]
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        model.eval()
        ref = torch.flatten(trunk(x), 1)
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_features_are_cached_and_subsampled(tiny_checkpoint, array_split, tmp_path, monkeypatch):
    ld = load_checkpoint(tiny_checkpoint)
    ids, feats, cached = features_cached(ld, array_split, split_name="test", cache_dir=tmp_path, max_samples=8)
    assert not cached and feats.shape[0] == 8 and len(set(ids)) == 8
    assert list(ids) == [array_split.sample_ids[i] for i in feature_positions(len(array_split), 8)]
    assert len(list((tmp_path / "features").glob("*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("a cached entry must not run the model")

    monkeypatch.setattr("medaudit.embed.compute_features", boom)
    ids2, feats2, cached2 = features_cached(ld, array_split, split_name="test", cache_dir=tmp_path, max_samples=8)
    assert cached2 and np.array_equal(ids2, ids) and np.array_equal(feats2, feats)
    # a damaged entry is recomputed, not an error
    entry = next((tmp_path / "features").glob("*.npz"))
    entry.write_bytes(b"not a zip")
    monkeypatch.undo()
    _, feats3, cached3 = features_cached(ld, array_split, split_name="test", cache_dir=tmp_path, max_samples=8)
    assert not cached3 and np.allclose(feats3, feats, atol=1e-6)


def test_a_model_without_a_linear_head_is_a_one_line_error():
    from medaudit.errors import MedauditError

    with pytest.raises(MedauditError, match="no classifier head"):
        classifier_head(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))
