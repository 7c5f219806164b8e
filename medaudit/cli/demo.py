"""`medaudit demo`: the end-to-end demo on built-in synthetic data."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors, progress_disabled


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports/demo"), show_default=True, help="Report folder.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=Path("checkpoints/demo"), show_default=True, help="Where the demo data and checkpoints go.")
@click.option("--no-bench", is_flag=True, help="Skip the efficiency measurements.")
@click.option("--quiet", is_flag=True)
@handle_errors
def demo(out_dir, work_dir, no_bench, quiet):
    """Generate synthetic brain-MRI-like data, train a CNN and a ViT briefly, write the full report.

    \b
    Example:
      medaudit demo --out reports/demo
    Takes a few minutes on 2 CPU cores; nothing is downloaded.
    """
    from medaudit.demo import run_demo

    result = run_demo(out_dir, work_dir=work_dir, bench=not no_bench, progress=not (quiet or progress_disabled()),
                      log=click.echo)
    click.echo("")
    for kind, path in result.report_paths.items():
        click.echo(f"{kind}: {path}")
