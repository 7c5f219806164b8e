"""`medaudit robustness`: the corruption sweep alone (the report's Robustness section, without CAMs or timing)."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled
from medaudit.cli.report import _severities


@click.command()
@click.option("--models", "models", required=True, multiple=True, type=click.Path(path_type=Path), help="Checkpoints (repeat the option or list several after it).")
@click.argument("more_models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="Data spec: image folder, .npz, medmnist:NAME[@SIZE] or CSV manifest.")
@click.option("--split", default="test", show_default=True)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder (report.html, report.pdf, report.json).")
@click.option("--corruptions", "robustness", default="default", show_default=True, help="'default' (all 13) or a comma list, e.g. gaussian_noise,contrast_down,jpeg.")
@click.option("--samples", "robustness_samples", default=500, show_default=True, type=int, help="Stratified subsample of the split.")
@click.option("--severities", "robustness_severities", default="1,2,3,4,5", show_default=True, help="Severities among 1-5.")
@click.option("--names", default=None, help="Comma-separated display names, one per model.")
@click.option("--classes", default=None, help="Class names for data with integer labels, comma-separated.")
@click.option("--negative-class", "negative_classes", multiple=True, help="A 'healthy' class (repeatable). Default: auto-detected.")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(0, 100000), help="Resamples of the paired intervals.")
@click.option("--seed", default=0, show_default=True, type=int, help="Subsample, corruption draws and bootstrap.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 65536))
@click.option("--no-cache", is_flag=True, help="Re-run inference even if cached predictions exist.")
@click.option("--amp/--no-amp", default=True, show_default=True)
@click.option("--format", "formats", default="html,pdf,json", show_default=True)
@click.option("--quiet", is_flag=True)
@handle_errors
def robustness(models, more_models, data_spec, split, out_dir, robustness, robustness_samples, robustness_severities,
               names, classes, negative_classes, bootstrap, seed, device, batch_size, no_cache, amp, formats, quiet):
    """Sweep corruptions x severities and write a report with the Robustness section.

    \b
    Example:
      medaudit robustness --models checkpoints/resnet18.pt checkpoints/vit_tiny.pt \\
          --data data/brain_mri --negative-class notumor --corruptions contrast_down,jpeg -o reports/robust
    Each (checkpoint, data, corruption, severity) pass is cached; Grad-CAM and timing are skipped.
    The snapshot gates like any report: medaudit gate report.json --require "max_drop(recall[glioma], robustness)<=0.1".
    """
    from medaudit.audit import AuditSettings
    from medaudit.pipeline import ReportOptions, run_report

    opts = ReportOptions(
        checkpoints=list(models) + list(more_models), data_spec=data_spec, out_dir=out_dir,
        names=[n.strip() for n in names.split(",")] if names else None,
        classes=[c.strip() for c in classes.split(",")] if classes else None,
        settings=AuditSettings(split=split, bootstrap=bootstrap, seed=seed,
                               negative_classes=list(negative_classes) or None),
        device=device, batch_size=batch_size, amp=amp, use_cache=not no_cache, bench=False, cam=False,
        formats=tuple(formats.split(",")), progress=not (quiet or progress_disabled()),
        robustness=robustness, robustness_samples=robustness_samples,
        robustness_severities=_severities(robustness_severities),
    )
    _, paths = run_report(opts)
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
