"""Write a report folder atomically: build in a temporary sibling, rename at the end.

An interrupted or failed run leaves neither a half-written report nor the temporary
folder; an existing ``out_dir`` is replaced only at the final step.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.fileio import check_destination, replace_dir
from medaudit.report.figure_cache import figure_inputs, figure_key, read_figures, store_figures
from medaudit.report.html import render_html, template_dirs
from medaudit.report.plots import DPI, make_figures
from medaudit.snapshot import load_snapshot

FORMATS = ("html", "pdf", "json")
# Written into every report folder: marks it as ours, so a later run may replace it even when
# it holds no report.json (`medaudit render` writes HTML and PDF only by default), and lists the
# files written, so a file added by the user since is never deleted with the folder.
MARKER = ".medaudit-report"
# Folders of reports from before the manifest: what a report could have written at the top level.
_LEGACY_ENTRIES = frozenset({"report.json", "report.html", "report.pdf", "figures", "predictions", "cams", MARKER})
# Left behind by file browsers; deleting them loses nothing.
_BROWSER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The output formats asked for, normalised; checked before any work is done.

    Parameters
    ----------
    formats : iterable of str
        Names of :data:`FORMATS`, in any case, blanks ignored.

    Returns
    -------
    tuple of str
        Lower-case, repeats dropped, in the order given.

    Raises
    ------
    MedauditError
        (``param="formats"``) for an unknown name or none at all.
    """
    fm = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in fm if f not in FORMATS]
    if bad or not fm:
        raise MedauditError(f"{','.join(bad) or '(empty)'}: unknown format; use a comma list of {', '.join(FORMATS)}",
                            param="formats")
    return fm


def _safe_rel(name: str) -> Path:
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise MedauditError(f"extra file name {name!r}: must be a relative path inside the report folder")
    return rel


def write_report(snapshot: dict, out_dir: str | Path, *, formats: Iterable[str] = ("html", "pdf", "json"),
                 template_dir: str | Path | None = None, extra_files: dict[str, Path] | None = None,
                 asset_root: str | Path | None = None, reuse_figures: bool = False,
                 figure_cache: str | Path | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``figures/*.png``, ``report.html`` and ``report.pdf`` into ``out_dir``.

    Parameters
    ----------
    snapshot : dict
        Schema-2.0 (or 1.0) snapshot (docs/report-schema.md); not modified. The written
        ``report.json`` has ``figures`` filled with the relative figure paths.
    out_dir : path
        Report folder; replaced as a whole at the end if it exists.
    formats : iterable of {"html", "pdf", "json"}
        Checked by :func:`check_formats`. Figures are always drawn: the HTML and PDF embed them,
        and a JSON-only report keeps them beside ``report.json`` for ``medaudit render`` and for
        readers of the JSON.
    template_dir : path, optional
        User templates overriding/extending the packaged ones.
    extra_files : dict, optional
        ``{relative name in the report: source path}`` copied in first (predictions
        CSVs, CAM tiles referenced by ``models[i].cam.tiles[].file``).
    asset_root : path, optional
        Folder holding CAM tiles not given in ``extra_files`` (the folder of an existing
        ``report.json``); referenced tiles found there are copied into the report.
    reuse_figures : bool
        With ``asset_root``: copy the figures listed in ``snapshot["figures"]`` from there
        instead of redrawing them (they are a pure function of the snapshot's numbers, and
        plotting is most of a re-render's time). Any missing file → all are redrawn.
    figure_cache : path, optional
        Folder of the figure cache (:mod:`medaudit.report.figure_cache`): figures drawn for the
        same numbers by an earlier run are copied from there, new ones are kept there.

    Returns
    -------
    dict
        ``{"json"|"html"|"pdf"|"figures": path}`` in the final ``out_dir``.

    Raises
    ------
    MedauditError
        Unknown format, an ``out_dir`` that is not an earlier report (:func:`check_output_dir`),
        an extra file that cannot be copied, a template error. Nothing is left behind.
    """
    fm = check_formats(formats)
    out_dir = Path(out_dir).resolve()
    check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for name, src in (extra_files or {}).items():
            dst = tmp / _safe_rel(name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(src, dst)
            except OSError as exc:
                raise MedauditError(f"{src}: cannot copy into the report as {name} ({exc})") from exc
        if asset_root is not None:
            _copy_tiles(snapshot, Path(asset_root), tmp)
        snap = copy.deepcopy(snapshot)
        reused = _reuse_figures(snap, Path(asset_root), tmp) if reuse_figures and asset_root is not None else None
        snap["figures"] = reused if reused is not None else _draw_figures(snap, tmp / "figures", figure_cache)
        written: dict[str, Path] = {"figures": out_dir / "figures"}
        if "json" in fm:
            (tmp / "report.json").write_text(json.dumps(snap, sort_keys=True, indent=2) + "\n", encoding="utf-8")
            written["json"] = out_dir / "report.json"
        if "html" in fm:
            html = render_html(snap, tmp, template_dir=template_dir, target="html")
            (tmp / "report.html").write_text(html, encoding="utf-8")
            written["html"] = out_dir / "report.html"
        if "pdf" in fm:
            html = render_html(snap, tmp, template_dir=template_dir, target="pdf")
            from medaudit.report.pdf import render_pdf  # WeasyPrint: 2 s to import, for PDFs only

            render_pdf(html, tmp / "report.pdf", allowed_dirs=template_dirs(template_dir))
            written["pdf"] = out_dir / "report.pdf"
        _write_manifest(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _copy_tiles(snapshot: dict, root: Path, dst_root: Path) -> None:
    """Copy CAM tiles referenced by the snapshot from ``root`` (only paths inside it)."""
    root = root.resolve()
    for m in snapshot.get("models") or []:
        for t in (m.get("cam") or {}).get("tiles") or []:
            rel = t.get("file")
            if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue
            src = (root / rel).resolve()
            dst = dst_root / rel
            if src.is_relative_to(root) and src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def check_output_dir(out_dir: str | Path) -> None:
    """Refuse a report folder whose replacement would destroy anything but an earlier report.

    The report folder is replaced as a whole, so it must be new, empty, or a previous
    medaudit report (it holds ``report.json`` or the :data:`MARKER` file); the current
    folder or ``~/Documents`` is an error, and so is a path that cannot be made
    (:func:`medaudit.fileio.check_destination`).

    Parameters
    ----------
    out_dir : str or Path

    Raises
    ------
    MedauditError
        (``param="out_dir"``) naming the folder.
    """
    out_dir = check_destination(out_dir, param="out_dir")  # creatable and writable, a folder if it exists
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not ((out_dir / "report.json").is_file() or (out_dir / MARKER).is_file()):
        raise MedauditError(
            f"{out_dir}: folder is not empty and holds no earlier medaudit report; it would be replaced "
            "as a whole, so choose a new or empty folder", param="out_dir"
        )
    unknown = _unknown_files(out_dir)
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise MedauditError(
            f"{out_dir}: holds files the earlier report did not write ({shown}); the folder is replaced as a "
            "whole, so move them out or choose another folder", param="out_dir"
        )


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() or not p.is_dir()}


def _write_manifest(folder: Path) -> None:
    files = sorted(_files_under(folder) - {MARKER})
    manifest = {"written_by": "medaudit", "note": "this folder is replaced as a whole by the next run; "
                "files not listed here are never deleted with it", "files": files}
    (folder / MARKER).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _unknown_files(out_dir: Path) -> list[str]:
    """Files in an earlier report folder that its manifest does not list (sorted).

    Folders written before the manifest existed: anything outside the names a report writes."""
    try:
        manifest = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
        listed = set(manifest["files"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        listed = None
    found = {f for f in _files_under(out_dir) if Path(f).name not in _BROWSER_LITTER} - {MARKER}
    if listed is None:
        return sorted(f for f in found if f.split("/", 1)[0] not in _LEGACY_ENTRIES)
    return sorted(found - listed)


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    # Checked again at the end: the folder may have been replaced by a file during a long run.
    if out_dir.exists() and not out_dir.is_dir():
        raise MedauditError(f"{out_dir}: exists and is not a folder; choose another output path", param="out_dir")
    replace_dir(tmp, out_dir)


def _draw_figures(snap: dict, fig_dir: Path, cache_dir: str | Path | None) -> dict[str, str]:
    """Figures of the snapshot's figure inputs, through the figure cache when one is given."""
    inputs = figure_inputs(snap)
    if cache_dir is None:
        return make_figures(inputs, fig_dir)
    key = figure_key(inputs, DPI)
    found = read_figures(Path(cache_dir), key, fig_dir)
    if found is None:
        found = make_figures(inputs, fig_dir)
        store_figures(Path(cache_dir), key, fig_dir, found)
    return found


def _reuse_figures(snap: dict, root: Path, tmp: Path) -> dict[str, str] | None:
    """Copy the snapshot's saved figures; None when any is missing or outside ``root``."""
    figs = snap.get("figures") or {}
    if not figs:
        return None
    root = root.resolve()
    sources = {}
    for rel in figs.values():
        src = (root / _safe_rel(rel)).resolve()
        if root not in src.parents or not src.is_file():
            return None
        sources[rel] = src
    for rel, src in sources.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
    return dict(figs)


def render_from_snapshot(snapshot_path: str | Path, out_dir: str | Path, *,
                         formats: Iterable[str] = ("html", "pdf"), template_dir: str | Path | None = None,
                         redraw_figures: bool = False) -> dict[str, Path]:
    """Re-render a saved ``report.json`` (``medaudit render``); needs no model or data.

    CAM tiles and the saved figures are read from the snapshot's folder and copied into
    ``out_dir``; figures are redrawn from the snapshot's numbers only when some are missing
    or ``redraw_figures`` is set (after editing the snapshot by hand).

    Parameters
    ----------
    snapshot_path : str or Path
        A ``report.json`` of a readable schema version (:func:`medaudit.snapshot.load_snapshot`).
    out_dir : str or Path
        The new report folder; not the snapshot's own folder.
    formats : iterable of {"html", "pdf", "json"}
    template_dir : str or Path, optional
        User templates overriding/extending the packaged ones.
    redraw_figures : bool
        Draw the figures anew instead of copying the saved ones.

    Returns
    -------
    dict
        As :func:`write_report`.

    Raises
    ------
    MedauditError
        An unreadable snapshot (naming the file), ``out_dir`` being the snapshot's folder
        (``param="out_dir"``), or as :func:`write_report`.
    """
    path = Path(snapshot_path)
    # Hand-made snapshots may lack models: the sections then say "not available".
    snapshot = load_snapshot(path, require_models=False)
    if Path(out_dir).resolve() == path.resolve().parent:
        raise MedauditError(f"{out_dir}: is the folder of the snapshot itself; choose a new output folder",
                            param="out_dir")
    return write_report(snapshot, out_dir, formats=formats, template_dir=template_dir, asset_root=path.parent,
                        reuse_figures=not redraw_figures)
