"""Weight EMA (``medaudit train --ema``): the update by hand, against timm's ModelEmaV3, and in the training loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.checkpoint import load_checkpoint
from medaudit.models.weights import safe_torch_load
from medaudit.train.config import TrainConfig
from medaudit.train.ema import WeightEma, ema_decay_at, first_step_weight
from medaudit.train.loop import train
from tests.test_train_loop import cfg, load, quiet, write_npz


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x):
        return self.bn(self.fc(x))


def _set(model: Tiny, w, b, mean, var, tracked):
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([w], dtype=torch.float32))
        model.fc.bias.fill_(b)
        model.bn.running_mean.fill_(mean)
        model.bn.running_var.fill_(var)
        model.bn.num_batches_tracked.fill_(tracked)


def test_update_by_hand_on_a_tiny_model():
    """d_1 = 0 copies the model; then ema + (1 - d) (model - ema) on parameters and BN statistics;
    num_batches_tracked (an integer buffer) is copied."""
    m = Tiny()
    _set(m, [1.0, 2.0], 0.5, 0.0, 1.0, 0)
    ema = WeightEma(m, decay=0.75, warmup=False)
    _set(m, [3.0, -1.0], 1.5, 2.0, 5.0, 7)
    ema.update(m)  # first update: the model itself
    sd = ema.module.state_dict()
    assert sd["fc.weight"].tolist() == [[3.0, -1.0]] and sd["bn.num_batches_tracked"].item() == 7
    _set(m, [7.0, 3.0], -0.5, 4.0, 1.0, 9)
    ema.update(m)  # 0.75 * old + 0.25 * new
    sd = ema.module.state_dict()
    assert sd["fc.weight"].tolist() == [[0.75 * 3 + 0.25 * 7, 0.75 * -1 + 0.25 * 3]]
    assert sd["fc.bias"].item() == pytest.approx(0.75 * 1.5 + 0.25 * -0.5)
    assert sd["bn.running_mean"].item() == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert sd["bn.running_var"].item() == pytest.approx(0.75 * 5 + 0.25 * 1)
    assert sd["bn.num_batches_tracked"].item() == 9
    assert ema.updates == 2
    # The model is not changed, and the copy has no gradients and stays in eval mode.
    assert m.fc.weight.tolist() == [[7.0, 3.0]]
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training


def test_warmup_decay_closed_form():
    # 1 - (1 + s)^(-2/3) with s = step - 1, capped at the decay; the first step copies.
    assert ema_decay_at(1, 0.999, True) == 0.0 and ema_decay_at(1, 0.999, False) == 0.0
    assert ema_decay_at(2, 0.999, True) == pytest.approx(1 - 2 ** (-2 / 3))  # 0.370
    assert ema_decay_at(9, 0.999, True) == pytest.approx(1 - 9 ** (-2 / 3))
    assert ema_decay_at(10**6, 0.999, True) == 0.999 and ema_decay_at(5, 0.9, False) == 0.9
    # The first step's weight: the product of the later decays.
    for n, warm in [(1, True), (2, False), (50, True), (80, False), (300, True)]:
        ref = math.prod(ema_decay_at(t, 0.999, warm) for t in range(2, n + 1))
        assert first_step_weight(n, 0.999, warm) == pytest.approx(ref, rel=1e-12)
    assert first_step_weight(80, 0.999, False) == pytest.approx(0.999 ** 79)


def _conv_bn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("warmup,decay", [(True, 0.99), (False, 0.9)])
def test_matches_timm_model_ema_v3(warmup, decay):
    """Same state dict as timm.utils.ModelEmaV3 (step passed, buffers averaged) over a few SGD steps."""
    from timm.utils import ModelEmaV3

    model = _conv_bn()
    ours = WeightEma(model, decay, warmup)
    exact = ModelEmaV3(model, decay=decay, use_warmup=warmup, foreach=False)
    fast = ModelEmaV3(model, decay=decay, use_warmup=warmup)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 7):
        model.train()
        x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.update(model)
        exact.update(model, step=step)
        fast.update(model, step=step)
        mine, ref, ref_fast = ours.module.state_dict(), exact.module.state_dict(), fast.module.state_dict()
        for k, v in mine.items():
            assert torch.equal(v, ref[k]), (step, k)
            assert torch.allclose(v.double(), ref_fast[k].double(), rtol=1e-6, atol=1e-7), (step, k)
    # The average is not the model (the test would pass trivially if the decay were ignored).
    assert not torch.equal(mine["0.weight"], model.state_dict()["0.weight"])
    assert not torch.equal(mine["1.running_mean"], model.state_dict()["1.running_mean"])


def test_state_round_trip_is_bit_exact():
    model = _conv_bn()
    ema = WeightEma(model, 0.9, True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    ema.update(model)
    ema.update(model)
    other = WeightEma(_conv_bn(seed=5), 0.9, True)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2 and other.current_decay() == ema.current_decay()
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, other.module.state_dict()[k]), k


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_ema_decay_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(MedauditError, match=r"^ema_decay must be in \(0, 1\)") as exc:
        TrainConfig(arch="resnet18", ema=True, ema_decay=bad).validate()
    assert exc.value.param == "ema_decay"


def test_a_decay_that_would_keep_the_first_weights_warns(tmp_path):
    ds = load(write_npz(tmp_path / "t.npz"))
    # 2 epochs x 5 steps: 0.999^9 of the average is still the first step's weights.
    with pytest.warns(MedauditWarning, match=r"^ema_decay 0.999 without warm-up over about 10 optimizer steps: the "
                                             r"first step's weights keep 99% of the average"):
        train(ds, cfg(epochs=2, ema=True, ema_warmup=False), tmp_path / "m.pt", progress=False, log=quiet)


def test_loop_validates_selects_and_saves_the_average(tmp_path):
    """--ema leaves training itself unchanged (same raw weights, bit for bit), validates the average, and saves it."""
    ds = load(write_npz(tmp_path / "t.npz"))
    plain = train(ds, cfg(epochs=2), tmp_path / "plain.pt", progress=False, log=quiet)
    ema = train(ds, cfg(epochs=2, ema=True, ema_decay=0.9), tmp_path / "ema.pt", progress=False, log=quiet)
    raw_plain = safe_torch_load(plain.last_path)["state_dict"]
    last = safe_torch_load(ema.last_path)
    raw = last["resume"]["ema"]["model_state_dict"]
    for k, v in raw_plain.items():
        assert torch.equal(v, raw[k]), k
    # The file's weights are the average, not the raw model.
    assert any(not torch.equal(v, last["state_dict"][k]) for k, v in raw.items() if v.is_floating_point())
    steps = last["resume"]["ema"]["updates"]
    assert steps == 2 * 5  # 40 training images, batch 8
    # The history scores the saved (averaged) weights: recompute the best epoch's val AUC from the checkpoint.
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from medaudit.models.preprocess import iter_batches

    loaded = load_checkpoint(ema.best_path)
    val = ds.split("val")
    with torch.no_grad():
        probs = torch.cat([loaded.model(x).double().softmax(1) for x, _, _ in iter_batches(val, loaded.recipe, 64)])
    ref = roc_auc_score(np.asarray(val.labels), probs.numpy(), multi_class="ovr")
    assert ema.history[ema.best_epoch - 1]["val_auc"] == pytest.approx(ref, abs=1e-6)
    training = loaded.meta["training"]
    assert training["ema"] is True and training["ema_decay"] == 0.9
    rec = training["ema_record"]
    assert rec["decay"] == 0.9 and rec["warmup"] is True and rec["updates"] == 5 * ema.best_epoch
    assert rec["first_step_weight"] == pytest.approx(math.prod(ema_decay_at(t, 0.9, True)
                                                               for t in range(2, rec["updates"] + 1)))
    assert load_checkpoint(plain.best_path).meta["training"]["ema_record"] is None


def test_cli_offers_ema_and_refuses_a_bad_decay_in_one_line(tmp_path):
    from click.testing import CliRunner

    from medaudit.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "none.npz"), "--model", "test_resnet", "--ema",
                                  "--ema-decay", "1.5", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and r.output.strip() == "Error: --ema-decay must be in (0, 1) (got 1.5)"
    help_text = CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output
    assert "--ema " in help_text and "--ema-warmup / --no-ema-warmup" in help_text
