"""The PDF renderer fetches nothing but data: URIs and template files; user templates are
loaded first; snapshot paths cannot pull files from outside the report folder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from medaudit.errors import MedauditError
from medaudit.report.html import make_embedder, render_html, template_dirs
from medaudit.report.pdf import render_pdf
from tests.snapshot_factory import minimal_snapshot

EVIL = '<script>alert(1)</script><img src="file:///etc/passwd">'


@pytest.fixture(scope="module")
def evil_render(tmp_path_factory):
    tdir = tmp_path_factory.mktemp("tpl")
    # A user template extending the packaged one, with hostile references in HTML and CSS.
    (tdir / "report.html.j2").write_text(
        '{% extends "medaudit/report.html.j2" %}\n'
        '{% block css %}{{ super() }}\n.cover { background: url(http://127.0.0.1:1/x.png); }{% endblock %}\n'
        '{% block cover %}<p id="custom">CUSTOM COVER</p><img src="file:///etc/passwd">'
        '<img src="http://127.0.0.1:1/beacon.png"><img src="logo.png">{{ super() }}{% endblock %}\n',
        encoding="utf-8")
    # A file inside the template folder may be used (e.g. a logo).
    shutil.copy(Path(__file__).parent.parent / "templates" / "__init__.py", tdir / "logo.png")
    snap = minimal_snapshot()
    snap["dataset"]["class_names"] = ["normal", EVIL]
    snap["title"] = "Audit file:///etc/passwd"
    html = render_html(snap, tmp_path_factory.mktemp("root"), template_dir=tdir, target="pdf")
    pdf = tmp_path_factory.mktemp("out") / "r.pdf"
    fetcher = render_pdf(html, pdf, allowed_dirs=template_dirs(tdir), base_url=tdir)
    return {"html": html, "pdf": pdf, "fetcher": fetcher, "tdir": tdir}


def test_fetcher_refuses_file_and_http(evil_render):
    f = evil_render["fetcher"]
    assert "file:///etc/passwd" in f.requested and "file:///etc/passwd" in f.refused
    assert any(u.startswith("http://127.0.0.1:1/beacon.png") for u in f.refused)
    assert any(u.startswith("http://127.0.0.1:1/x.png") for u in f.refused)
    # the template-folder file was served, not refused
    logo = (evil_render["tdir"] / "logo.png").resolve().as_uri()
    assert logo in f.requested and logo not in f.refused


def test_pdf_has_no_passwd_content(evil_render):
    data = evil_render["pdf"].read_bytes()
    assert data.startswith(b"%PDF") and b"root:x:0:0" not in data
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(evil_render["pdf"]), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert "CUSTOM COVER" in text and "root:x:0" not in text


def test_user_template_first_and_class_name_escaped(evil_render):
    html = evil_render["html"]
    assert '<p id="custom">CUSTOM COVER</p>' in html  # user template took precedence
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert "not available" in html  # empty snapshot: sections say so instead of failing


def test_embedder_stays_inside_root(tmp_path):
    root = tmp_path / "rep"
    (root / "cams").mkdir(parents=True)
    (root / "cams" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    embed = make_embedder(root)
    assert embed("cams/a.png").startswith("data:image/png;base64,")
    for bad in ("../secret.png", str(tmp_path / "secret.png"), "file:///etc/passwd", "/etc/passwd",
                "cams/missing.png", "cams/../../secret.png"):
        assert embed(bad) is None, bad


def test_cam_tile_outside_report_is_not_embedded(tmp_path):
    from tests.snapshot_factory import make_snapshot

    snap = make_snapshot()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nSECRETBYTES")
    snap["models"][0]["cam"]["tiles"][0]["file"] = "../secret.png"
    snap["models"][1]["cam"]["tiles"][0]["file"] = str(secret)
    root = tmp_path / "rep"
    root.mkdir()
    html = render_html(snap, root)
    assert "image not available: ../secret.png" in html
    import base64

    assert base64.b64encode(secret.read_bytes()).decode()[:16] not in html


def test_bad_template_dir_and_syntax(tmp_path):
    with pytest.raises(MedauditError, match="nope: not a folder") as exc:
        render_html(minimal_snapshot(), tmp_path, template_dir=tmp_path / "nope")
    assert exc.value.param == "template_dir"
    (tmp_path / "report.html.j2").write_text("{% if %}", encoding="utf-8")
    with pytest.raises(MedauditError, match="report.html.j2"):
        render_html(minimal_snapshot(), tmp_path, template_dir=tmp_path)
    json.dumps(minimal_snapshot())  # the minimal snapshot is plain JSON


def test_a_custom_template_cannot_run_code(tmp_path):
    """The issue's example: Jinja's unsandboxed globals reach os.popen through cycler."""
    marker = tmp_path / "pwned"
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.html.j2").write_text(
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}")
    with pytest.raises(MedauditError, match="refused by the sandbox"):
        render_html(minimal_snapshot(), tmp_path, template_dir=tmp_path / "tpl")
    assert not marker.exists()


def test_images_in_notes_are_plain_text_neither_fetched_nor_linked():
    from medaudit.report.context import render_markdown

    html = render_markdown('See ![scan](http://evil.example/x.png?u=1&v=2) and ![](https://e.x/y.png).')
    assert "<img" not in html and "<a " not in html and "href" not in html
    assert "[image: scan (http://evil.example/x.png?u=1&amp;v=2)]" in html
    assert "[image: image (https://e.x/y.png)]" in html
    assert '<a href="https://ok.example">ok</a>' in render_markdown("[ok](https://ok.example)"), "links stay links"

