"""``medaudit data inspect SPEC``: splits, class counts, image sizes/modes, duplicates and leakage."""

from __future__ import annotations

import json

import click

from medaudit.cli._common import handle_errors
from medaudit.cli._rehash import rehash_option
from medaudit.tasks import TASKS


@click.group("data")
def data() -> None:
    """Inspect data sources given to --data (folders, .npz, .csv, medmnist:NAME[@SIZE]).

    \b
    Example:
      medaudit data inspect data/brain_mri
    """


@data.command("inspect")
@click.argument("spec")
@click.option("--classes", default=None, help="Comma-separated class names in label order (overrides folder names).")
@click.option("--task", type=click.Choice(TASKS), default=None, help="Declare the task (ordinal is never detected).")
@click.option("--patient-col", "patient_col", default=None, help="Metadata column of patient ids, hashed on load (default: patient_id when present); patients in two splits are listed by hash.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (keys sorted).")
@rehash_option
@handle_errors
def inspect(spec: str, classes: str | None, task: str | None, patient_col: str | None, as_json: bool) -> None:
    """Summarise SPEC: decodes every image, so unreadable files are reported by name.

    \b
    Examples:
      medaudit data inspect data/brain_mri
      medaudit data inspect pneumoniamnist.npz --json > summary.json
    Prints splits, class counts, image sizes/modes, duplicate and near-duplicate images within
    and across splits, and patients found in two splits (train/test leakage).
    """
    from medaudit.data import inspect_dataset, load_dataset
    from medaudit.data.inspect import format_inspection

    class_list = [c.strip() for c in classes.split(",")] if classes else None
    # Problems worth a word (an empty class, odd split sizes) arrive as MedauditWarnings, which
    # handle_errors shows as "Warning: ..." lines on stderr, as every command does.
    summary = inspect_dataset(load_dataset(spec, classes=class_list, task=task, patient_col=patient_col))
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(format_inspection(summary))
