"""TrainConfig: the one source of the training settings (defaults, choices, help), checks that name the field."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from medaudit.errors import MedauditError
from medaudit.train.config import AUGMENT_LEVELS, LOSSES, TrainConfig, runtime_fields


def test_lr_schedules():
    c = TrainConfig(arch="x", lr=1.0, epochs=100, scheduler="multistep")
    assert [c.lr_at(e) for e in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    c = TrainConfig(arch="x", lr=1.0, epochs=10, scheduler="cosine", warmup_epochs=1)
    assert c.lr_at(0) == pytest.approx(0.5) and c.lr_at(1) == pytest.approx(1.0)
    assert c.lr_at(9) < 0.05


@pytest.mark.parametrize(
    ("settings", "param", "needle"),
    [
        ({"optimizer": "rmsprop"}, "optimizer", "optimizer must be one of adam, adamw, sgd (got 'rmsprop')"),
        ({"loss": "hinge"}, "loss", "loss must be one of ce, focal, weighted-ce, bce (got 'hinge')"),
        ({"in_chans": 2}, "in_chans", "in_chans must be one of 1, 3 (got '2')"),
        ({"task": "regression"}, "task", "task must be one of binary, multiclass, multilabel, ordinal"),
        ({"resize": "fit"}, "resize", "resize must be one of stretch, pad, crop"),
        ({"epochs": 0}, "epochs", "epochs must be >= 1 (got 0)"),
        ({"warmup_epochs": 3, "epochs": 3}, "warmup_epochs", "warmup_epochs must be in [0, epochs) = [0, 3) (got 3)"),
        ({"select_by": "val_f1"}, "select_by", "select_by must be one of val_auc, val_loss, val_acc or val_recall"),
        ({"focal_alpha": [0.3]}, "focal_alpha", "focal_alpha only applies to the focal loss (got loss ce)"),
        ({"sampler": "balanced", "class_weights": "auto"}, "sampler", "drop the class weights (auto) or the sampler"),
        ({"class_weights": "1,x"}, "class_weights", "class_weights must be auto, none or w1,w2,... (got '1,x')"),
    ],
)
def test_validate_names_the_field_at_fault(settings, param, needle):
    """Messages name the field in its Python spelling and carry it as ``param`` (the CLI shows the flag)."""
    with pytest.raises(MedauditError) as exc:
        TrainConfig(arch="x", **settings).validate()
    assert needle in str(exc.value) and exc.value.param == param
    assert "--" not in str(exc.value)  # option spellings belong to the CLI


def test_choices_live_in_the_config():
    """validate checks exactly the choices the CLI offers: the augment levels and loss names are the config's."""
    from medaudit.train import augment, losses

    choices = {f.name: f.metadata["choices"] for f in fields(TrainConfig) if f.metadata["choices"] is not None}
    assert choices["augment"] is AUGMENT_LEVELS and choices["loss"] is LOSSES is losses.LOSSES
    for level in AUGMENT_LEVELS:
        augment.Augmenter(level, [0.5], [0.25])
        TrainConfig(arch="x", augment=level).validate()
    with pytest.raises(MedauditError, match="augment must be one of") as exc:
        augment.Augmenter("extreme", [0.5], [0.25])
    assert exc.value.param == "augment"


def test_every_field_is_declared_with_setting():
    """Each field becomes a CLI option, so each is declared with ``setting()`` (a plain ``field()`` has no metadata)."""
    for f in fields(TrainConfig):
        assert set(f.metadata) == {"help", "flag", "choices", "runtime", "path"}, f.name


def test_resume_training_takes_exactly_the_runtime_fields():
    """A resumed run takes how to run from its caller: resume_training's settings are the config's runtime fields."""
    from medaudit.train.loop import resume_training

    kw_only = {n for n, p in inspect.signature(resume_training).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert kw_only - {"progress", "log"} == {f.name for f in runtime_fields()} == {"data", "device", "num_workers"}


def test_round_trip_through_the_checkpoint_dict():
    c = TrainConfig(arch="resnet18", data="d.npz", classes=["a", "b"], milestones=[3, 6], focal_alpha=[0.2, 0.8],
                    loss="focal")
    d = c.to_dict()
    assert list(d)[:4] == ["arch", "data", "classes", "task"]  # field order: the report's appendix order
    assert TrainConfig.from_dict({**d, "best_epoch": 3}) == c  # run outcomes in the record are ignored
