"""Figures kept between runs, so a report over cached predictions does not draw them again.

A report's figures are a pure function of three things: the snapshot's numbers (every key but
``run``, which holds timings and the command line, and ``figures`` itself), the drawing code
(the bytes of the modules that draw) and the rendering stack (matplotlib's and numpy's versions,
the DPI). The cache key is a sha256 of all three; :func:`figure_inputs` is what the drawing code
is given, so it cannot read anything the key leaves out. Drawing was a fifth of a warm
50k-image report's time (benchmarks/results/cpu-2026-12-03.md).

An entry is one JSON file, ``$MEDAUDIT_CACHE/figures/<key>.json``: the key again and, per
figure, its PNG in base64 with the PNG's sha256. An entry is used only when its key matches and
every PNG matches its sha256 and starts with the PNG signature; anything else (truncated, edited,
unreadable) is reported by one :class:`~medaudit.errors.MedauditWarning`, redrawn and rewritten.
That catches damage, not a forger who rewrites the file and its hashes: the cache folder is
trusted as much as the user's own files, like the predictions cache. A PNG is only ever embedded
as an image (a ``data:image/png`` URI or a file beside the report), never run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import warnings
from pathlib import Path

from medaudit.errors import MedauditWarning
from medaudit.fileio import code_digest, read_json_entry, write_json_entry

# The modules whose code decides what a figure looks like (plots.py and what it draws with).
DRAWING_MODULES = ("medaudit.report.plots", "medaudit.report.format", "medaudit.report.robustness_context",
                   "medaudit.report.subgroup_context")
NOT_FIGURE_INPUTS = ("run", "figures")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMAT = 1


def figure_inputs(snapshot: dict) -> dict:
    """The part of ``snapshot`` figures are drawn from: all of it but ``run`` and ``figures``."""
    return {k: v for k, v in snapshot.items() if k not in NOT_FIGURE_INPUTS}


def figure_key(inputs: dict, dpi: int) -> str:
    """sha256 of the figures' inputs (:func:`figure_inputs`), the drawing code and ``dpi``."""
    code = code_digest(DRAWING_MODULES, ("matplotlib", "numpy"))
    h = hashlib.sha256(f"medaudit-figures/{FORMAT}/dpi={dpi}/{code}\0".encode())
    h.update(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def read_figures(cache_dir: Path, key: str, fig_dir: Path) -> dict[str, str] | None:
    """Write the cached figures of ``key`` into ``fig_dir``; ``{key: "figures/<key>.png"}``, or
    None when there is no entry or it is damaged (one warning: it will be redrawn)."""
    file = Path(cache_dir) / f"{key}.json"
    entry, problem = read_json_entry(file, FORMAT, key, "these figures")
    if entry is None:  # None, None: no entry yet (store_figures says why it cannot write)
        return _refuse(file, problem) if problem else None
    if not isinstance(entry.get("figures"), dict):
        return _refuse(file, "it is not an entry for these figures")
    try:
        pngs = {}
        for name, fig in entry["figures"].items():
            if not (isinstance(name, str) and name.replace("_", "").isalnum()):
                return _refuse(file, f"figure name {name!r} is not a plain name")
            png = base64.b64decode(fig["png"], validate=True)
            if not png.startswith(PNG_SIGNATURE) or hashlib.sha256(png).hexdigest() != fig["sha256"]:
                return _refuse(file, f"figure {name} does not match its sha256")
            pngs[name] = png
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        return _refuse(file, f"it cannot be read ({type(exc).__name__})")
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        (fig_dir / f"{name}.png").write_bytes(png)
    return {name: f"figures/{name}.png" for name in pngs}


def store_figures(cache_dir: Path, key: str, fig_dir: Path, figures: dict[str, str]) -> None:
    """Keep the figures just drawn into ``fig_dir`` under ``key``; a folder that cannot be
    written only warns (the next run draws them again)."""
    file = Path(cache_dir) / f"{key}.json"
    try:
        entry = {"format": FORMAT, "key": key, "figures": {}}
        for name in figures:
            png = (fig_dir / f"{name}.png").read_bytes()
            entry["figures"][name] = {"sha256": hashlib.sha256(png).hexdigest(),
                                      "png": base64.b64encode(png).decode("ascii")}
        write_json_entry(file, entry)
    except OSError as exc:
        warnings.warn(f"could not write the figure cache {file} ({exc.strerror or exc}); the next report "
                      "will draw its figures again", MedauditWarning, stacklevel=2)


def _refuse(file: Path, why: str) -> None:
    warnings.warn(f"ignoring the cached figures {file}: {why}; they are drawn again and the entry rewritten",
                  MedauditWarning, stacklevel=3)
    return None
