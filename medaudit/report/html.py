"""Jinja rendering of the report to one self-contained HTML string.

Templates come from a ChoiceLoader: the user's ``--template-dir`` first, then the
packaged ``medaudit.templates``; the packaged ones are also reachable as
``medaudit/<name>`` so a user template can extend the one it replaces. Autoescape is
on for everything. Images are embedded as ``data:`` URIs, so the HTML makes no request.
"""

from __future__ import annotations

import base64
import importlib.resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from medaudit.errors import MedauditError
from medaudit.report.context import build_context

ENTRY_TEMPLATE = "report.html.j2"
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
         ".webp": "image/webp"}
MAX_IMAGE_BYTES = 8 * 1024 * 1024


def packaged_template_dir() -> Path:
    """Folder of the packaged templates (``templates/`` in the source tree)."""
    return Path(str(importlib.resources.files("medaudit.templates")))


def template_dirs(template_dir: str | Path | None) -> list[Path]:
    """Template search path, user folder first; checks that the user folder exists.

    Parameters
    ----------
    template_dir : str or Path, optional
        The user's templates.

    Returns
    -------
    list of Path
        Resolved folders: ``template_dir`` (when given), then the packaged templates.

    Raises
    ------
    MedauditError
        (``param="template_dir"``) when ``template_dir`` is not a folder.
    """
    dirs = []
    if template_dir is not None:
        p = Path(template_dir)
        if not p.is_dir():
            raise MedauditError(f"{p}: not a folder; pass a folder of Jinja templates", param="template_dir")
        dirs.append(p.resolve())
    dirs.append(packaged_template_dir().resolve())
    return dirs


def make_env(template_dir: str | Path | None = None) -> jinja2.Environment:
    """A sandboxed Jinja environment with autoescape on and the user-then-packaged loader.

    Templates from ``--template-dir`` are untrusted: the immutable sandbox refuses attribute
    walks such as ``cycler.__init__.__globals__`` (which reach ``os``) and mutation of the context.
    """
    dirs = template_dirs(template_dir)
    packaged = jinja2.FileSystemLoader(str(dirs[-1]))
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader([str(d) for d in dirs]),
                                  jinja2.PrefixLoader({"medaudit": packaged})])
    return ImmutableSandboxedEnvironment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def data_uri(path: Path) -> str | None:
    """``data:`` URI of an image file, or ``None`` if it is missing, not an image or too large."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def make_embedder(root: Path) -> Any:
    """``embed(relative_path) -> data URI | None`` restricted to files inside ``root``.

    Paths come from the snapshot (CAM tiles, figures); an absolute path or one that
    escapes ``root`` (``../``) is refused, so a crafted report.json cannot pull
    arbitrary files into the report.
    """
    root = Path(root).resolve()

    def embed(rel: str) -> str | None:
        if not rel or Path(rel).is_absolute() or "://" in rel:
            return None
        p = (root / rel).resolve()
        if not p.is_relative_to(root):
            return None
        return data_uri(p)

    return embed


def render_html(snapshot: dict, asset_root: Path, *, template_dir: str | Path | None = None,
                target: str = "html") -> str:
    """Render the report HTML.

    Parameters
    ----------
    snapshot : dict
        A schema 1.x or 2.x snapshot; ``figures`` and CAM tile paths are relative to ``asset_root``.
    asset_root : Path
        Folder the relative image paths are resolved in (the report folder).
    template_dir : path, optional
        User templates that override or extend the packaged ones.
    target : {"html", "pdf"}
        ``"pdf"`` adds the PDF-only parts (TOC page numbers, sign-off entry in the TOC).

    Returns
    -------
    str
        The complete HTML document.

    Raises
    ------
    MedauditError
        A template that is missing, has a syntax error or uses a name the context lacks.
    """
    ctx = build_context(snapshot, make_embedder(asset_root), target=target)
    env = make_env(template_dir)
    try:
        return env.get_template(ENTRY_TEMPLATE).render(**ctx)
    except SecurityError as exc:
        raise MedauditError(f"template refused by the sandbox: {exc}", param="template_dir") from None
    except jinja2.TemplateNotFound as exc:
        raise MedauditError(f"template {exc.name!r} not found in the user or the packaged templates; "
                            "check the file name") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise MedauditError(f"template {exc.filename or exc.name}: line {exc.lineno}: {exc.message}; "
                            "fix the template syntax") from exc
    except jinja2.UndefinedError as exc:
        raise MedauditError(f"template error: {exc.message}; a custom template uses a name the report "
                            "context does not provide (see templates/README.md)") from exc
