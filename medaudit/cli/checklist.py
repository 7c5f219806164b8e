"""``medaudit checklist``: reporting checklists (CLAIM 2024, TRIPOD+AI, STARD-AI) filled from a report.json."""

from __future__ import annotations

from pathlib import Path

import click

from medaudit.cli._common import handle_errors

FORMATS = ("md", "html", "csv")


@click.command()
@click.argument("snapshot", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", default="md", show_default=True, type=click.Choice(FORMATS),
              help="md (Markdown tables), html (a page linking each item to report.html's sections) or csv.")
@click.option("--checklist", "checklists", multiple=True, metavar="NAME",
              help="claim2024, tripod-ai or stard-ai (repeatable). Default: those the report was made with "
                   "(--checklist of medaudit report), else all three.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (atomically) instead of printing.")
@handle_errors
def checklist(snapshot: Path, fmt: str, checklists: tuple[str, ...], out: Path | None) -> None:
    """Fill reporting checklists from SNAPSHOT (a report.json): each item says filled, partly or
    needs the author, with the value and the report section it comes from.

    \b
    Example:
      medaudit checklist reports/brain/report.json --format md --checklist claim2024
    Reads the snapshot only (no model, no data); item numbers not verified against the published
    checklists are marked.
    """
    from medaudit.checklists import NAMES, check_names, requested
    from medaudit.checklists.output import to_csv, to_markdown
    from medaudit.fileio import atomic_path, check_output_file
    from medaudit.snapshot import load_snapshot

    names = check_names([c.strip() for c in checklists])
    if out is not None:
        check_output_file(out, inputs=(snapshot,), param="out")
    snap = load_snapshot(snapshot, require_models=False)
    names = names or requested(snap) or list(NAMES)
    if fmt == "html":
        from medaudit.report.checklist_page import checklists_page
        from medaudit.report.context import SECTIONS

        text = checklists_page(snap, [sid for sid, _ in SECTIONS], names)
    else:
        from medaudit.checklists import fill_all

        tables = fill_all(snap, names)
        text = to_markdown(tables) if fmt == "md" else to_csv(tables)
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    click.echo(f"{fmt}: {out}")
