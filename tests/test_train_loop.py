"""The training loop: checkpoint contract, exact resume, validation-only selection, freezing, silence by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medaudit.errors import MedauditError, MedauditWarning
from medaudit.models.checkpoint import load_checkpoint
from medaudit.models.weights import safe_torch_load
from medaudit.predictions import probabilities_from_logits
from medaudit.train.config import TrainConfig
from medaudit.train.loop import load_resume, resume_training, train, train_from_config


def write_npz(path, n=(40, 15, 12), k=3, size=16, seed=0, val=True):
    """MedMNIST-layout npz whose class is a bright vertical stripe (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in zip(("train", "val", "test"), n):
        if split == "val" and not val:
            continue
        y = np.arange(m) % k
        x = rng.integers(0, 60, size=(m, size, size), dtype=np.uint8)
        for c in range(k):
            x[y == c, :, c * size // k : (c + 1) * size // k] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y.reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def load(path):
    from medaudit.data import load_dataset

    return load_dataset(str(path))


@pytest.fixture
def ds(tmp_path):
    return load(write_npz(tmp_path / "tiny.npz"))


def cfg(**kw) -> TrainConfig:
    base = {"arch": "test_resnet", "img_size": 16, "in_chans": 1, "epochs": 3, "batch_size": 8, "lr": 3e-3,
            "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def quiet(_line):
    pass


def test_checkpoint_loads_with_history_and_selection(ds, tmp_path):
    out = tmp_path / "ck" / "m.pt"
    res = train(ds, cfg(), out, progress=False, log=quiet)
    loaded = load_checkpoint(out)  # the audit reads it without extra flags
    assert loaded.meta["selected_on"] == "val"
    assert loaded.class_names == ds.class_names and loaded.task == ds.task
    assert loaded.recipe.img_size == 16 and loaded.recipe.in_chans == 1
    hist = loaded.meta["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "val_recall", "lr", "epoch_time_s"):
        assert key in hist[0]
    training = loaded.meta["training"]
    assert training["val_source"] == "val" and training["best_epoch"] == res.best_epoch
    assert training["epochs_run"] == 3
    # The history's val AUC is sklearn's on the val outputs of the saved best model.
    from sklearn.metrics import roc_auc_score

    from medaudit.models.preprocess import iter_batches

    val = ds.split("val")
    with torch.no_grad():
        probs = torch.cat([loaded.model(x).softmax(1) for x, _, _ in iter_batches(val, loaded.recipe, 64)]).numpy()
    ref = roc_auc_score(val.labels, probs, multi_class="ovr")
    assert hist[res.best_epoch - 1]["val_auc"] == pytest.approx(ref, abs=1e-6)
    assert res.last_path.name == "m.last.pt" and load_checkpoint(res.last_path).meta["history"] == hist


@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema"])
def test_resume_is_exact(ds, tmp_path, ema):
    kw = {"epochs": 4, "augment": "strong", "scheduler": "multistep", "sampler": "balanced", "ema": ema}
    straight = train(ds, cfg(**kw), tmp_path / "a.pt", progress=False, log=quiet)

    class Stop(Exception):
        pass

    calls = []

    def stop_after_two(line):
        calls.append(line)
        if line.startswith("epoch 2/"):
            raise Stop

    with pytest.raises(Stop):
        train(ds, cfg(**kw), tmp_path / "b.pt", progress=False, log=stop_after_two)
    rcfg, state = load_resume(tmp_path / "b.last.pt")
    assert state["resume"]["epoch_done"] == 2
    lines = []
    resumed = train(ds, rcfg, tmp_path / "b.pt", resume=state, progress=False, log=lines.append)
    st = state["resume"]
    assert lines[0] == (f"resuming {rcfg.arch} after epoch 2 (best so far: epoch {st['best_epoch']}, "
                        f"{rcfg.select_by} {abs(st['best_score']):.4f})")
    a, b = safe_torch_load(tmp_path / "a.last.pt"), safe_torch_load(tmp_path / "b.last.pt")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    if ema:  # the file holds the average; the raw weights and the update count travel in the resume state
        assert a["resume"]["ema"]["updates"] == b["resume"]["ema"]["updates"] > 0
        for k, v in a["resume"]["ema"]["model_state_dict"].items():
            assert torch.equal(v, b["resume"]["ema"]["model_state_dict"][k]), k
        best_a, best_b = safe_torch_load(tmp_path / "a.pt"), safe_torch_load(tmp_path / "b.pt")
        for k, v in best_a["state_dict"].items():
            assert torch.equal(v, best_b["state_dict"][k]), k
    strip = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in straight.history]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in resumed.history]
    assert straight.best_epoch == resumed.best_epoch


def test_global_rng_untouched(ds, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(ds, cfg(epochs=1), tmp_path / "m.pt", progress=False, log=quiet)
    assert torch.equal(torch.rand(3), expected)


def test_selection_never_uses_test(tmp_path):
    """Garbage test labels and images change nothing; reading the test split would raise."""
    path = write_npz(tmp_path / "a.npz")
    ds_a = load(path)
    arrays = dict(np.load(path))
    rng = np.random.default_rng(1)
    arrays["test_labels"] = rng.integers(0, 3, size=arrays["test_labels"].shape)
    arrays["test_images"] = rng.integers(0, 256, size=arrays["test_images"].shape, dtype=np.uint8)
    np.savez(tmp_path / "b.npz", **arrays)
    ds_b = load(tmp_path / "b.npz")
    for d in (ds_a, ds_b):
        original = d.split

        def guarded(name, _orig=original):
            if name == "test":
                raise AssertionError("training read the test split")
            return _orig(name)

        d.split = guarded
    ra = train(ds_a, cfg(select_by="val_loss"), tmp_path / "a.pt", progress=False, log=quiet)
    rb = train(ds_b, cfg(select_by="val_loss"), tmp_path / "b.pt", progress=False, log=quiet)
    assert ra.best_epoch == rb.best_epoch
    sa, sb = safe_torch_load(tmp_path / "a.pt")["state_dict"], safe_torch_load(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_head_only_freezes_backbone(ds, tmp_path):
    from medaudit.models.factory import create_model

    torch.manual_seed(0)  # same init as the run (seed 0 inside the fork)
    init = create_model("test_resnet", 3, in_chans=1, img_size=16).state_dict()
    train(ds, cfg(epochs=1, finetune="head"), tmp_path / "h.pt", progress=False, log=quiet)
    after = safe_torch_load(tmp_path / "h.last.pt")["state_dict"]
    changed = {k for k in init if not torch.equal(init[k], after[k])}
    assert changed and all(k.startswith("fc.") for k in changed), sorted(changed)[:5]
    # BN running statistics of the frozen backbone were not updated either.
    assert not any("running_mean" in k for k in changed)


def test_carved_val_is_stratified_and_recorded(tmp_path):
    ds = load(write_npz(tmp_path / "noval.npz", n=(60, 0, 12), val=False))
    lines = []
    with pytest.warns(MedauditWarning, match=r"^no 'val' split in the data; carved: stratified 0.2 of 'train'"):
        train(ds, cfg(epochs=1, val_fraction=0.2), tmp_path / "m.pt", progress=False, log=lines.append)
    assert not any("val' split" in line for line in lines)  # warnings travel as warnings, not log lines
    training = load_checkpoint(tmp_path / "m.pt").meta["training"]
    assert training["val_source"].startswith("carved: stratified 0.2 of 'train'")
    assert training["n_val"] == 12 and training["n_train"] == 48  # 4 of each of the 3 classes


def test_weighted_and_focal_losses_run(ds, tmp_path):
    r = train(ds, cfg(epochs=1, loss="weighted-ce"), tmp_path / "w.pt", progress=False, log=quiet)
    training = load_checkpoint(r.best_path).meta["training"]
    assert training["class_weights_used"] == pytest.approx([1.0, 1.0, 1.0], rel=0.1)
    train(ds, cfg(epochs=1, loss="focal", focal_alpha=[1, 2, 1]), tmp_path / "f.pt", progress=False, log=quiet)


def test_nan_loss_stops_and_keeps_last_good(ds, tmp_path, monkeypatch):
    import medaudit.train.loop as tr

    out = tmp_path / "m.pt"
    train(ds, cfg(epochs=1), out, progress=False, log=quiet)
    good = safe_torch_load(tmp_path / "m.last.pt")["state_dict"]
    rcfg, state = load_resume(tmp_path / "m.last.pt")
    rcfg.epochs = 2
    state["resume"]["config"]["epochs"] = 2
    real = tr._Loop._target

    def poison(self, y):
        raise_at = getattr(self, "_n", 0)
        self._n = raise_at + 1
        if raise_at == 1:
            self.criterion = lambda z, t: torch.tensor(float("nan"), requires_grad=True)
        return real(self, y)

    monkeypatch.setattr(tr._Loop, "_target", poison)
    with pytest.raises(MedauditError, match=r"loss became nan at epoch 2, batch 2"):
        train(ds, rcfg, out, resume=state, progress=False, log=quiet)
    kept = safe_torch_load(tmp_path / "m.last.pt")["state_dict"]
    assert all(torch.equal(good[k], kept[k]) for k in good)


def test_nan_validation_outputs_stop_before_selection(ds, tmp_path, monkeypatch):
    """A finite training loss with eval-mode outputs that overflow (seen: EfficientNet, batch 2) is an error."""
    import medaudit.train.loop as tr

    out = tmp_path / "m.pt"
    real = tr._Loop.evaluate
    calls = []

    def diverge_in_epoch_2(self, split):
        loss, probs, y = real(self, split)
        calls.append(1)
        if len(calls) == 2:
            probs = probs.copy()
            probs[3] = np.nan
        return loss, probs, y

    monkeypatch.setattr(tr._Loop, "evaluate", diverge_in_epoch_2)
    with pytest.raises(MedauditError, match=r"validation outputs are NaN/inf for 1 of 15 images after epoch 2"):
        train(ds, cfg(epochs=3), out, progress=False, log=quiet)
    best = safe_torch_load(out)
    assert [h["epoch"] for h in best["history"]] == [1]  # written after epoch 1, never after the NaN epoch
    assert safe_torch_load(tmp_path / "m.last.pt")["resume"]["epoch_done"] == 1


def test_image_folder_streams_and_order_is_worker_independent(tmp_path):
    """Image folders go through a DataLoader; the seeded batch order does not depend on workers."""
    from medaudit.data import make_demo_dataset

    ds = load(make_demo_dataset(tmp_path / "demo", n_train=4, n_val=2, n_test=1, size=16))
    runs = []
    for workers in (0, 1):
        out = tmp_path / f"w{workers}.pt"
        train(ds, cfg(epochs=1, in_chans=3, num_workers=workers, augment="basic"), out, progress=False, log=quiet)
        runs.append(safe_torch_load(out)["state_dict"])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_weights_file_is_the_starting_point(ds, tmp_path):
    from medaudit.models.factory import create_model

    torch.manual_seed(42)  # different init from the run's seed 0
    src = create_model("test_resnet", 5, in_chans=1, img_size=16).state_dict()  # 5-class head: dropped on load
    torch.save(src, tmp_path / "w.pt")
    train(ds, cfg(epochs=1, finetune="head", weights=str(tmp_path / "w.pt")), tmp_path / "m.pt", progress=False,
          log=quiet)
    after = safe_torch_load(tmp_path / "m.last.pt")["state_dict"]
    assert all(torch.equal(src[k], after[k]) for k in src if not k.startswith("fc."))
    assert after["fc.weight"].shape[0] == 3


def test_head_only_on_a_pretrained_resnet_with_the_small_stem_is_refused(ds, tmp_path, monkeypatch):
    """The small stem's conv1 is random; freezing it under a pretrained backbone would train on noise."""
    import timm

    orig = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: orig(*a, **{**k, "pretrained": False}))  # "cached"
    with pytest.warns(Warning, match="first convolution starts from random weights"), \
            pytest.raises(MedauditError, match="^finetune head with pretrained weights at img_size 16.*small stem off"):
        train(ds, cfg(arch="resnet18", epochs=1, finetune="head", pretrained=True), tmp_path / "m.pt",
              progress=False, log=quiet)
    assert not list(tmp_path.glob("m*.pt"))
    res = train(ds, cfg(arch="resnet18", epochs=1, finetune="head", pretrained=True, small_stem=False),
                tmp_path / "s.pt", progress=False, log=quiet)  # the standard stem keeps the pretrained weights
    assert res.best_path.is_file()


def test_resume_into_another_output_without_its_best_checkpoint_is_refused(ds, tmp_path):
    train(ds, cfg(epochs=2), tmp_path / "m.pt", progress=False, log=quiet)
    rcfg, state = load_resume(tmp_path / "m.last.pt")
    rcfg.epochs = 3
    with pytest.raises(MedauditError, match=r"^out .*other.n\.pt: the resumed run's best checkpoint so far \(epoch \d\) "
                       "is not there") as exc:
        train(ds, rcfg, tmp_path / "other" / "n.pt", resume=state, progress=False, log=quiet)
    assert exc.value.param == "out"
    assert not (tmp_path / "other" / "n.pt").exists()


def test_interrupt_message_ignores_an_older_runs_state_of_the_same_name(ds, tmp_path, monkeypatch):
    import medaudit.train.loop as tr

    train(ds, cfg(epochs=1), tmp_path / "m.pt", progress=False, log=quiet)  # an older run: m.last.pt exists

    def interrupted(self, epoch, last):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr._Loop, "_train_epoch", interrupted)
    with pytest.raises(tr.TrainingInterrupted, match="no epoch had completed") as exc:
        train(ds, cfg(epochs=2, seed=5), tmp_path / "m.pt", progress=False, log=quiet)
    assert exc.value.last_path is None and exc.value.epoch == 1
    assert "--resume" not in str(exc.value)  # the command to resume with is the CLI's to say


def test_library_prints_nothing_by_default(ds, tmp_path, capsys):
    """No log callback: no epoch lines on stdout (the CLI passes its echo; a library caller opts in)."""
    train(ds, cfg(epochs=1), tmp_path / "m.pt")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_validation_probabilities_use_the_one_rule(ds, tmp_path, monkeypatch):
    """Validation scores come from predictions.probabilities_from_logits (float64), as the audit's do."""
    import medaudit.train.loop as tr

    calls = []

    def spy(logits, task):
        calls.append((np.asarray(logits).shape, task))
        return probabilities_from_logits(logits, task)

    monkeypatch.setattr(tr, "probabilities_from_logits", spy)
    res = train(ds, cfg(epochs=2), tmp_path / "m.pt", progress=False, log=quiet)
    assert calls == [((15, 3), "multiclass")] * 2  # one validation pass per epoch
    assert all(isinstance(h["val_auc"], float) for h in res.history)


def test_train_from_config_loads_the_data_it_names(tmp_path):
    path = write_npz(tmp_path / "tiny.npz")
    res = train_from_config(cfg(epochs=1, data=str(path)), tmp_path / "m.pt", progress=False, log=quiet)
    assert res.config.data == str(path) and load_checkpoint(res.best_path).meta["training"]["data"] == str(path)
    with pytest.raises(MedauditError, match="^data is not set") as exc:
        train_from_config(cfg(epochs=1), tmp_path / "n.pt")
    assert exc.value.param == "data"


def test_resume_training_keeps_the_saved_settings_and_takes_how_to_run(tmp_path, monkeypatch):
    """Resume: what is trained comes from NAME.last.pt; data location, device and workers from the caller."""
    import medaudit.train.loop as tr

    path = write_npz(tmp_path / "tiny.npz")
    real = tr._Loop._train_epoch

    def interrupt_in_epoch_2(self, epoch, last):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, last)

    monkeypatch.setattr(tr._Loop, "_train_epoch", interrupt_in_epoch_2)
    with pytest.raises(tr.TrainingInterrupted) as exc:
        train_from_config(cfg(epochs=3, data=str(path), lr=2e-3), tmp_path / "m.pt", progress=False, log=quiet)
    assert exc.value.last_path == tmp_path / "m.last.pt" and exc.value.saved_epoch == 1
    monkeypatch.setattr(tr._Loop, "_train_epoch", real)
    moved = tmp_path / "moved.npz"
    path.rename(moved)
    res = resume_training(exc.value.last_path, data=str(moved), device="cpu", num_workers=0, log=quiet)
    assert res.best_path == tmp_path / "m.pt"  # NAME.pt beside NAME.last.pt
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert res.config.lr == 2e-3 and res.config.data == str(moved) and res.config.num_workers == 0
