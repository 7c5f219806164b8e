"""Architecture facts kept between runs: the same numbers as counting, no model built on a hit."""

from __future__ import annotations

import json
import warnings

import pytest

from medaudit.bench import count_flops
from medaudit.errors import MedauditWarning
from medaudit.models.checkpoint import load_checkpoint
from medaudit.models.factory import model_summary
from medaudit.models.facts import facts_key, model_facts


def _counted(loaded) -> dict:
    r = loaded.recipe
    return {**model_summary(loaded.model, loaded.arch), **count_flops(loaded.model, (1, r.in_chans, r.img_size, r.img_size))}


def test_facts_are_the_counted_ones_and_a_hit_builds_no_model(tiny_checkpoint, tmp_path):
    first = model_facts(load_checkpoint(tiny_checkpoint, lazy=True), tmp_path)
    assert first == _counted(load_checkpoint(tiny_checkpoint))
    lazy = load_checkpoint(tiny_checkpoint, lazy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_facts(lazy, tmp_path) == first
    assert lazy._model is None, "a cached entry answered, so the model was never built"
    assert model_facts(lazy) == first and lazy._model is not None  # no cache folder: counted


@pytest.mark.parametrize("damage", [
    lambda e: "{not json",
    lambda e: json.dumps({**e, "key": "0" * 64}),
    lambda e: json.dumps({**e, "facts": {**e["facts"], "params": -5}}),
    lambda e: json.dumps({**e, "facts": {**e["facts"], "flops": True}}),
    lambda e: json.dumps({**e, "facts": {k: v for k, v in e["facts"].items() if k != "macs"}}),
])
def test_a_damaged_entry_warns_once_and_is_recounted(tiny_checkpoint, tmp_path, damage):
    loaded = load_checkpoint(tiny_checkpoint, lazy=True)
    good = model_facts(loaded, tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text(damage(json.loads(entry.read_text())))
    with pytest.warns(MedauditWarning, match="model facts cache entry .* is unusable") as caught:
        assert model_facts(load_checkpoint(tiny_checkpoint, lazy=True), tmp_path) == good
    assert len([w for w in caught if issubclass(w.category, MedauditWarning)]) == 1
    assert json.loads(entry.read_text())["facts"] == good  # rewritten


def test_the_key_names_the_checkpoint_and_the_input_size(tiny_checkpoint, tmp_path):
    import dataclasses

    loaded = load_checkpoint(tiny_checkpoint, lazy=True)
    bigger = dataclasses.replace(loaded, recipe=dataclasses.replace(loaded.recipe, img_size=32))
    other = dataclasses.replace(loaded, sha256="f" * 64)
    renamed = dataclasses.replace(loaded, arch="resnet34")  # a .safetensors sidecar edited, same weights file
    assert len({facts_key(loaded), facts_key(bigger), facts_key(other), facts_key(renamed)}) == 4


def test_a_lazy_checkpoint_reports_a_mismatched_state_on_first_use(tiny_checkpoint, tmp_path):
    import torch

    from medaudit.errors import MedauditError

    obj = torch.load(tiny_checkpoint, weights_only=True)
    obj["state_dict"].pop(next(iter(obj["state_dict"])))
    broken = tmp_path / "broken.pt"
    torch.save(obj, broken)
    with pytest.raises(MedauditError, match="weights do not match the architecture"):
        load_checkpoint(broken)
    lazy = load_checkpoint(broken, lazy=True)  # the file and its metadata are fine
    with pytest.raises(MedauditError, match="weights do not match the architecture"):
        lazy.model  # noqa: B018  (building is the point)
