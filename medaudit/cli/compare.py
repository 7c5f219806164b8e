"""`medaudit compare`: compare saved predictions of 2+ models on the same samples."""

from __future__ import annotations

import json
from pathlib import Path

import click

from medaudit.cli._common import handle_errors


@click.command()
@click.argument("predictions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--negative-class", "negative_classes", multiple=True,
              help="A 'healthy' class (repeatable). Default: auto-detected (normal, notumor, healthy, ...).")
@click.option("--positive-class", default=None, help="Binary tasks: the disease class.")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(0, 100000),
              help="Paired bootstrap resamples for CIs of differences (0 = none).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write {comparisons, findings} as JSON to this file.")
@handle_errors
def compare(predictions, negative_classes, positive_class, bootstrap, seed, json_path):
    """Compare models from saved predictions files (.npz from `medaudit predict`).

    Prints error-set overlap (who gets which samples wrong), McNemar and DeLong tests with
    Holm adjustment, and paired-bootstrap intervals of the differences.

    \b
    Example:
      medaudit compare preds/resnet18.npz preds/vit_tiny.npz --negative-class normal
    """
    from medaudit.audit import AuditSettings, resolve_negative_classes
    from medaudit.compare import compare_models, format_comparison_table
    from medaudit.findings import comparison_findings
    from medaudit.predictions import Predictions

    if len(predictions) < 2:
        raise click.UsageError("give at least two predictions files to compare")
    preds = [Predictions.load(p) for p in predictions]
    ref = preds[0]
    settings = AuditSettings(bootstrap=bootstrap, seed=seed, negative_classes=list(negative_classes) or None,
                             positive_class=positive_class)
    negatives, source = resolve_negative_classes(ref.class_names, ref.task, settings)
    comparisons = compare_models(preds, negative_classes=negatives, n_bootstrap=bootstrap, seed=seed)
    findings = comparison_findings(comparisons, [])
    click.echo(f"Negative (healthy) classes: {', '.join(negatives) or 'none'} ({source})\n")
    click.echo(format_comparison_table(comparisons))
    click.echo("Findings:")
    for f in findings:
        click.echo(f"  [{f['level']}] {f['text']}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"comparisons": comparisons, "findings": findings}
        json_path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                             encoding="utf-8")
        click.echo(f"\nWrote {json_path}")
