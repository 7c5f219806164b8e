"""Every `medaudit …` command shown in the README and docs/ parses: its options exist and take
the values shown (parsed by click, not run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from medaudit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def _commands(path: Path) -> list[str]:
    """`medaudit …` lines inside fenced code blocks: backslash continuations and YAML plain
    scalars continued on more-indented lines are joined; synopses (``[...]``, ``...``) skipped."""
    text = path.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        cmd, indent = None, 0
        for raw in re.sub(r"\\\n\s*", " ", block).splitlines():
            body = raw.split(" #")[0].rstrip()
            depth = len(body) - len(body.lstrip())
            line = body.strip().removeprefix("- ").removeprefix("run: ").strip()
            launched = re.search(r"\btorchrun\b.*?(?:-m|--no-python) (medaudit .*)", line)
            line = launched.group(1) if launched else line  # `torchrun ... -m medaudit train ...`
            if cmd is not None and depth > indent and line and not raw.strip().startswith("- "):
                cmd += " " + line
                continue
            if cmd is not None:
                out.append(cmd)
            cmd, indent = (line, depth) if line.startswith("medaudit ") else (None, 0)
        if cmd is not None:
            out.append(cmd)
    return [c for c in out if "..." not in c and " [" not in c and "…" not in c]


CASES = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in _commands(p)]


def test_the_docs_show_commands():
    assert len(CASES) >= 15 and {c.split()[1] for _, c in CASES} >= {"report", "gate", "train", "convert"}


@pytest.mark.parametrize("where,command", CASES)
def test_documented_command_parses(where, command):
    args = shlex.split(command)[1:]
    cmd, path = main, ["medaudit"]
    while isinstance(cmd, click.Group):  # `medaudit data inspect …`
        name, args = args[0], args[1:]
        cmd = cmd.get_command(click.Context(cmd), name)
        assert cmd is not None, f"{where}: `{command}`: no command {name!r}"
        path.append(name)
    try:
        cmd.make_context(" ".join(path), list(args))
    except click.UsageError as exc:
        pytest.fail(f"{where}: `{command}`: {exc.format_message()}")


def test_every_test_the_security_page_cites_exists():
    """docs/security.md says how each rule is tested; a renamed or deleted test must not leave it lying."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    names = set(re.findall(r"`(test_\w+)`", text))
    files = set(re.findall(r"`(tests/test_\w+\.py)`", text))
    assert len(names) >= 10 and files
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M))
    assert sorted(names - defined) == []
    assert sorted(f for f in files if not (ROOT / f).is_file()) == []
