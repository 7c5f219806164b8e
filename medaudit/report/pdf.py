"""PDF rendering with WeasyPrint and a locked-down URL fetcher.

The report HTML embeds every image as a ``data:`` URI, so rendering needs no network
and no file outside the template folders. :class:`LockedURLFetcher` enforces that:
``data:`` URIs and files inside the allowed folders are served, anything else
(``file:///etc/passwd``, ``http://...``) is refused and recorded in ``refused``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import weasyprint
from weasyprint.urls import URLFetcher, URLFetcherResponse

from medaudit.errors import MedauditError


class LockedURLFetcher(URLFetcher):
    """Serves ``data:`` URIs and files under ``allowed_dirs``; refuses everything else.

    Written for the WeasyPrint >= 68 fetcher API: ``fetch(url, headers)`` returns a
    ``URLFetcherResponse``.

    Parameters
    ----------
    allowed_dirs : list of Path
        Folders whose files may be served (the template folders).

    Attributes
    ----------
    requested : list of str
        Every URL WeasyPrint asked for (``data:`` URIs shortened).
    refused : list of str
        The URLs that were refused.
    """

    def __init__(self, allowed_dirs: list[Path]) -> None:
        # No protocol handlers are used: fetch() below never calls urllib.
        super().__init__(allowed_protocols=("data", "file"), allow_redirects=False, fail_on_errors=False)
        self.allowed = [Path(d).resolve() for d in allowed_dirs]
        self.requested: list[str] = []
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> Any:
        self.requested.append(url if not url.startswith("data:") else url[:40])
        if url.startswith("data:"):
            return super().fetch(url, headers)  # decoded in memory by urllib's DataHandler
        parts = urlsplit(url)
        if parts.scheme == "file" and parts.netloc in ("", "localhost"):
            path = Path(unquote(parts.path)).resolve()
            if any(path.is_relative_to(d) for d in self.allowed) and path.is_file():
                return URLFetcherResponse(path.as_uri(), path.read_bytes(), status=200)
        self.refused.append(url)
        raise ValueError(f"medaudit: refused to fetch {url!r} (only data: URIs and template files are allowed)")


def make_fetcher(allowed_dirs: list[Path]) -> LockedURLFetcher:
    """A :class:`LockedURLFetcher` serving ``data:`` URIs and the files under ``allowed_dirs``."""
    return LockedURLFetcher(allowed_dirs)


def render_pdf(html: str, out_path: Path, *, allowed_dirs: list[Path],
               base_url: Path | None = None) -> LockedURLFetcher:
    """Write ``html`` as a PDF with WeasyPrint.

    Parameters
    ----------
    html : str
        The report rendered with ``target="pdf"``.
    out_path : Path
        PDF file to write.
    allowed_dirs : list of Path
        Folders relative references may be served from (the template folders).
    base_url : Path, optional
        Folder relative URLs in ``html`` resolve against (default: the first allowed folder).

    Returns
    -------
    LockedURLFetcher
        The fetcher used, with ``requested`` and ``refused`` lists (for audit/tests).
    """
    fetcher = make_fetcher(allowed_dirs)
    base = Path(base_url or allowed_dirs[0]).resolve()
    # WeasyPrint logs every refused fetch as a warning; our fetcher records them instead.
    wlog = logging.getLogger("weasyprint")
    level = wlog.level
    wlog.setLevel(logging.ERROR)
    try:
        doc = weasyprint.HTML(string=html, base_url=base.as_uri() + "/", url_fetcher=fetcher)
        doc.write_pdf(out_path)
    except OSError as exc:
        raise MedauditError(f"{out_path}: could not write the PDF ({exc}); check the output folder") from exc
    finally:
        wlog.setLevel(level)
    return fetcher
