"""``medaudit render``: re-render a saved report.json to HTML/PDF (no models or data needed)."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors


@click.command()
@click.argument("snapshot", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (replaced atomically if it exists).")
@click.option("--format", "formats", default="html,pdf", show_default=True,
              help="Comma list of html, pdf, json.")
@click.option("--template-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of Jinja templates that override or extend the packaged ones (see templates/README.md).")
@click.option("--redraw-figures", is_flag=True, help="Redraw the figures from the snapshot's numbers instead of reusing the saved PNGs.")
@handle_errors
def render(snapshot: Path, out_dir: Path, formats: str, template_dir: Path | None, redraw_figures: bool) -> None:
    """Render SNAPSHOT (a report.json) into OUT as report.html and/or report.pdf.

    \b
    Example:
      medaudit render reports/brain/report.json -o reports/brain-restyled --template-dir my_templates
    Needs no model or data: the snapshot and its saved figures and CAM tiles are enough.
    """
    from medaudit.report import render_from_snapshot

    written = render_from_snapshot(snapshot, out_dir, formats=formats.split(","), template_dir=template_dir,
                                   redraw_figures=redraw_figures)
    for kind in ("html", "pdf", "json"):
        if kind in written:
            click.echo(f"{kind}: {written[kind]}")
