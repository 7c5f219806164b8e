"""The installed wheel, not only the editable install: every package, the templates, the console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy the tracked files")
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the tracked files (the source tree stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = dist.glob("medaudit-*.whl")
    return whl


def test_wheel_holds_every_module_and_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "medaudit").rglob("*.py") if "__pycache__" not in p.parts}
    assert not modules - names, f"missing from the wheel: {sorted(modules - names)}"
    templates = {f"medaudit/templates/{p.relative_to(ROOT / 'templates').as_posix()}"
                 for p in (ROOT / "templates").rglob("*") if p.is_file() and p.suffix in (".j2", ".css", ".py")}
    assert not templates - names, f"templates missing from the wheel: {sorted(templates - names)}"


def test_installed_wheel_runs_without_the_source_tree(wheel, tmp_path):
    """Unpack the wheel and import it with site disabled, so the editable install cannot answer."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import medaudit, medaudit.cli\n"
        "assert medaudit.__file__.startswith(sys.argv[1]), medaudit.__file__\n"
        "from medaudit.report.html import make_env, packaged_template_dir\n"
        "assert str(packaged_template_dir()).startswith(sys.argv[1]), packaged_template_dir()\n"
        "make_env().get_template('report.html.j2')\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(medaudit.cli.main, ['report', '--help'])\n"
        "assert r.exit_code == 0 and 'Example' in r.output, r.output\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-S", "-c", code, str(target), deps], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
