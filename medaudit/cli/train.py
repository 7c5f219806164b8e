"""``medaudit train``: train a CNN or ViT and write a checkpoint the audit reads without flags.

The run's options are generated from :class:`~medaudit.train.config.TrainConfig`, one per field
with the field's default, choices and help: a new setting is one new field, nothing here.
"""

from __future__ import annotations

import functools
import sys
import types
import typing
import warnings
from dataclasses import MISSING, Field, fields
from typing import Any

import click

from medaudit.cli._common import handle_errors, progress_disabled
from medaudit.errors import MedauditError, MedauditWarning

# Shown first, before -o: what to train on and which model; then the recipe in field order.
_LEADING = ("data", "classes", "task", "arch")


@functools.cache
def _config_fields() -> dict[str, tuple[Field, type, bool]]:
    """Each TrainConfig field with its value type and whether it is a list (``list[float] | None`` -> float, True).

    Imported here, not at module level: the config needs numpy (through the preprocessing
    recipe), and ``medaudit --help`` loads this module only to list the command.
    """
    from medaudit.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in fields(TrainConfig):
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        is_list = typing.get_origin(hint) is list
        out[f.name] = (f, typing.get_args(hint)[0] if is_list else hint, is_list)
    return out


def _config_option(name: str) -> click.Option:
    """The option of one config field, named by the field (so an error's ``param`` finds its flag)."""
    f, kind, is_list = _config_fields()[name]
    decl = f.metadata["flag"] or "--" + name.replace("_", "-")
    # A list is given as comma-separated text, parsed afterwards; not given (None) keeps the field's default.
    default = None if is_list or f.default is MISSING else f.default
    kwargs: dict[str, Any] = {"help": f.metadata["help"], "show_default": default is not None}
    if f.metadata["choices"] is not None:
        # As text: click < 8.2 compares choices as strings; the value is converted back when the config is built.
        kwargs["type"] = click.Choice([str(c) for c in f.metadata["choices"]])
        default = None if default is None else str(default)
    elif f.metadata["path"]:
        kwargs["type"] = click.Path(dir_okay=False)
    elif kind is bool:
        if "/" not in decl:  # "--on/--off" pairs are flags already
            kwargs["is_flag"] = True
    elif not is_list:
        kwargs["type"] = kind
    return click.Option([decl, name], default=default, **kwargs)


class _ConfigCommand(click.Command):
    """A command whose options are its own plus one per TrainConfig field, made on first use.

    The config's options go first (``_LEADING``), then ``-o``, then the remaining fields in
    field order, then the command's other options.
    """

    @property
    def params(self) -> list[click.Parameter]:
        if self._params is None:
            own = {p.name: p for p in self._own_params}
            rest = [name for name in _config_fields() if name not in _LEADING]
            self._params = [*map(_config_option, _LEADING), own.pop("out"), *map(_config_option, rest), *own.values()]
        return self._params

    @params.setter
    def params(self, own: list[click.Parameter]) -> None:
        self._own_params, self._params = own, None


def _comma_list(name: str, text: str, kind: type) -> list:
    try:
        return [kind(v.strip()) for v in text.split(",")]
    except ValueError:
        what = {float: "numbers", int: "integers"}.get(kind, "values")
        raise MedauditError(f"{name} takes comma-separated {what} (got '{text}')", param=name) from None


def _config_from_options(settings: dict[str, Any]):
    """The TrainConfig of a new run from the options' values; options not given keep the config's defaults."""
    from medaudit.train.config import TrainConfig

    values = {}
    for name, raw in settings.items():
        f, kind, is_list = _config_fields()[name]
        if raw is None or (is_list and not raw):
            continue
        if is_list:
            values[name] = _comma_list(name, raw, kind)
        else:
            values[name] = kind(raw) if f.metadata["choices"] is not None else raw
    return TrainConfig(**values)


def _warn_ignored_settings(ctx: click.Context) -> None:
    """A resumed run keeps its saved settings: say which of the options given are not used."""
    settings = {name for name, (f, _, _) in _config_fields().items() if not f.metadata["runtime"]}
    given = [p.opts[0] for p in ctx.command.params
             if p.name in settings and ctx.get_parameter_source(p.name) not in (click.core.ParameterSource.DEFAULT, None)]
    if given:
        warnings.warn(f"--resume uses the saved settings; ignoring {', '.join(given)}", MedauditWarning, stacklevel=2)


def _silent(_line: str) -> None:
    """``log`` under --quiet: no epoch lines (warnings still show, through handle_errors)."""


@click.command(cls=_ConfigCommand)
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Best checkpoint, e.g. checkpoints/r18.pt "
              "(NAME.last.pt, the resumable state, is written beside it every epoch).")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue a run from its NAME.last.pt.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or epoch lines.")
@click.pass_context
@handle_errors
def train(ctx: click.Context, out: str | None, resume: str | None, quiet: bool, **settings) -> None:
    """Train a classifier reproducibly; select on validation; write a medaudit checkpoint.

    \b
    Example (MedMNIST protocol):
      medaudit train --data breastmnist.npz --model resnet18 --img-size 28 --epochs 100 \\
        --batch-size 128 --scheduler multistep -o checkpoints/r18.pt
    """
    from medaudit.distributed import is_main_process
    from medaudit.train.loop import TrainingInterrupted, resume_training, train_from_config  # torch: only to run
    from medaudit.train.state import score_text

    main = is_main_process()  # under torchrun rank 0 speaks for the job; errors still show on every rank
    if not main:
        warnings.simplefilter("ignore", MedauditWarning)  # inside handle_errors' catch_warnings: restored after
    run = {"progress": not (quiet or progress_disabled()), "log": _silent if quiet else click.echo}
    try:
        if resume:
            _warn_ignored_settings(ctx)
            runtime = {name: settings[name] for name, (f, _, _) in _config_fields().items() if f.metadata["runtime"]}
            result = resume_training(resume, out, **runtime, **run)
        else:
            if not settings["data"] or not settings["arch"] or not out:
                raise MedauditError("medaudit train needs --data, --model and -o/--out (or --resume NAME.last.pt)")
            result = train_from_config(_config_from_options(settings), out, **run)
    except TrainingInterrupted as exc:
        hint = f"; resume with: medaudit train --resume {exc.last_path}" if exc.last_path is not None else ""
        if main:
            click.echo(f"{exc}{hint}", err=True)
        sys.exit(130)
    if main:
        click.echo(f"best: epoch {result.best_epoch} ({score_text(result.config.select_by, result.best_score)}) -> "
                   f"{result.best_path}; resumable state: {result.last_path}")
