"""The ``medaudit`` command line: a click group whose subcommands load lazily.

Each subcommand lives in its own module under ``medaudit/cli/`` and only imports the
library (and torch) when it runs, so ``medaudit --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

from medaudit import __version__

# name -> "module:attribute"; listed in the order shown by --help.
COMMANDS = {
    "demo": "medaudit.cli.demo:demo",
    "train": "medaudit.cli.train:train",
    "predict": "medaudit.cli.predict:predict",
    "report": "medaudit.cli.report:report",
    "robustness": "medaudit.cli.robustness:robustness",
    "render": "medaudit.cli.render:render",
    "compare": "medaudit.cli.compare:compare",
    "gate": "medaudit.cli.gate:gate",
    "checklist": "medaudit.cli.checklist:checklist",
    "cam": "medaudit.cli.cam:cam",
    "bench": "medaudit.cli.bench:bench",
    "convert": "medaudit.cli.convert:convert",
    "data": "medaudit.cli.data:data",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medaudit")
def main() -> None:
    """Audit medical image classifiers.

    \b
    Typical use:
      medaudit train  --data DATA --model resnet18 -o checkpoints/r18.pt
      medaudit report --models checkpoints/r18.pt checkpoints/vit.pt --data DATA
      medaudit gate   reports/NAME/report.json --require "recall[glioma]>=0.95" --on lower
    """
