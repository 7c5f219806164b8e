"""The import rules of docs/architecture.md, enforced.

An AST scan of every module under ``medaudit/`` builds the import graph of medaudit's own
modules. Every ``import`` counts, at module level or inside a function (a function-level import
hides a dependency, it does not remove it); only ``if TYPE_CHECKING:`` blocks are left out,
because they never run. "Imports X" means "X is in the module's dependency cone": the modules it
imports anywhere, the packages whose ``__init__`` those imports run, and so on transitively.

Each rule is one test; a failure names the offending import as ``file:line`` and, for the
transitive rules, the chain of imports that reaches the forbidden module. The same scanning
functions are run on a small planted package (``test_the_scanner_*``), so a rule that silently
stopped seeing imports would fail there.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "medaudit"

# Frameworks that run models. The modules that only read numbers must work without them.
MODEL_FRAMEWORKS = ("torch", "torchvision", "timm", "pytorch_grad_cam")
# Modules that compute or read numbers only: no model framework anywhere in their cone.
TORCH_FREE = (
    "medaudit.metrics",
    "medaudit.compare",
    "medaudit.findings",
    "medaudit.clinical",
    "medaudit.robustness",
    "medaudit.external",
    "medaudit.cam_findings",
    "medaudit.audit",
    "medaudit.snapshot",
    "medaudit.gate",
    "medaudit.report",
)
# What the renderer may not reach: everything that loads or runs a model, or assembles a snapshot
# from predictions. No exception for explain's tile/select helpers: report does not need them
# (tiles are drawn by the pipeline and named in the snapshot) and importing any of them runs
# medaudit/explain/__init__.py, which imports the CAM code.
MODEL_RUNNERS = (
    "medaudit.predict",
    "medaudit.models",
    "medaudit.explain",
    "medaudit.bench",
    "medaudit.bench_timing",
    "medaudit.audit",
)
# The gate reads a snapshot and writes verdicts: nothing else of medaudit.
GATE_ALLOWED = ("medaudit.gate", "medaudit.snapshot", "medaudit.errors")
# The command-line layer: the only place that may import click (``__main__`` is its entry point).
CLI_LAYER = ("medaudit.cli", "medaudit.__main__")
# The audit path must run without the optional training package.
AUDIT_PATH = (
    "medaudit.predict",
    "medaudit.pipeline",
    "medaudit.audit",
    "medaudit.metrics",
    "medaudit.report",
    "medaudit.gate",
    "medaudit.explain",
    "medaudit.bench",
    "medaudit.bench_timing",
)


# --------------------------------------------------------------------------- the scanner


@dataclass(frozen=True)
class Import:
    """One import statement's dependency: ``importer`` (a module of the scanned package) needs
    ``target`` (a dotted module name, or a module's name when an attribute of it is imported)."""

    importer: str
    target: str
    file: Path
    line: int

    def where(self, root: Path) -> str:
        try:
            shown = self.file.relative_to(root)
        except ValueError:
            shown = self.file
        return f"{shown.as_posix()}:{self.line}"


@dataclass(repr=False)
class ImportGraph:
    """The modules of one package and every import they run.

    ``modules`` maps dotted module names to files; ``imports`` maps each module to its imports in
    source order (module- and function-level, ``TYPE_CHECKING`` blocks excluded).
    """

    package: str
    root: Path
    modules: dict[str, Path]
    imports: dict[str, list[Import]]

    def __repr__(self) -> str:  # pytest shows fixtures in failures: keep it one line
        return f"ImportGraph({self.package!r}, {len(self.modules)} modules)"

    def is_internal(self, name: str) -> bool:
        return within(name, (self.package,))

    def executed_by(self, target: str) -> list[str]:
        """The known modules that importing ``target`` runs: its enclosing packages, outermost
        first, then ``target`` itself."""
        parts = target.split(".")
        names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return [name for name in names if name in self.modules]

    def members(self, prefixes: Iterable[str]) -> list[str]:
        """Known modules that are, or are inside, one of ``prefixes``."""
        prefixes = tuple(prefixes)
        return sorted(name for name in self.modules if within(name, prefixes))


def within(name: str, prefixes: Iterable[str]) -> bool:
    """Whether dotted ``name`` is one of ``prefixes`` or inside one (``a.b`` is in ``a``, ``ab`` is not)."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(package_root: Path, file: Path) -> str:
    """Dotted name of ``file`` in the package rooted at ``package_root`` (``__init__`` -> package)."""
    parts = list(file.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all nesting levels, ``if TYPE_CHECKING:`` bodies
    skipped (their ``else:`` branch runs, so it is kept)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _absolute_base(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    anchor = importer.split(".") if is_package else importer.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def scan_package(package_root: Path) -> ImportGraph:
    """Build the import graph of the package in directory ``package_root``.

    Parameters
    ----------
    package_root : Path
        A package directory (holding ``__init__.py``); every ``*.py`` below it is scanned.

    Returns
    -------
    ImportGraph
        Its modules and, per module, one :class:`Import` per imported module. ``from X import a``
        targets ``X.a`` when that is a module of the package, else ``X``; ``import X.Y`` targets
        ``X.Y``.
    """
    files = sorted(package_root.rglob("*.py"))
    modules = {module_name(package_root, f): f for f in files}
    imports: dict[str, list[Import]] = {}
    for name, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        found: list[Import] = []
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute_base(node, name, file.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in dict.fromkeys(targets):  # one per imported module, in order
                found.append(Import(name, target, file, node.lineno))
        imports[name] = sorted(found, key=lambda i: i.line)
    return ImportGraph(package_root.name, package_root.parent, modules, imports)


# --------------------------------------------------------------------------- the checks


def _chain_text(graph: ImportGraph, chain: list[Import]) -> str:
    return " -> ".join(f"{i.where(graph.root)} imports {i.target}" for i in chain)


def find_cycles(graph: ImportGraph) -> list[str]:
    """Import cycles between the package's modules, one message per strongly connected group.

    Only explicit imports are edges: a submodule does not depend on its package just because
    importing it runs the package's ``__init__`` (that would make every package a cycle). An
    explicit ``from pkg import name`` inside ``pkg`` is an edge to ``pkg``, and is a cycle if
    ``pkg/__init__.py`` imports that module.
    """
    edges: dict[str, dict[str, Import]] = {m: {} for m in graph.modules}
    for importer, found in graph.imports.items():
        for imp in found:
            if imp.target in graph.modules and imp.target != importer:
                edges[importer].setdefault(imp.target, imp)

    # Tarjan's strongly connected components, iteratively (no recursion limit on deep graphs).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    messages = []
    for group in sorted(groups):
        members = set(group)
        start = group[0]
        # Shortest way round from ``start`` back to itself, inside the group.
        previous: dict[str, Import] = {}
        queue = deque([start])
        closing: Import | None = None
        while queue and closing is None:
            node = queue.popleft()
            for child, imp in sorted(edges[node].items()):
                if child == start:
                    closing = imp
                    break
                if child in members and child not in previous:
                    previous[child] = imp
                    queue.append(child)
        assert closing is not None  # a strongly connected group always closes
        chain = [closing]
        while chain[0].importer != start:
            chain.insert(0, previous[chain[0].importer])
        messages.append(f"cycle between {', '.join(group)}: {_chain_text(graph, chain)}")
    return messages


def forbidden_reach(
    graph: ImportGraph,
    subjects: Iterable[str],
    forbidden: Iterable[str],
    *,
    transitive: bool = True,
    exempt: Iterable[str] = (),
) -> list[str]:
    """Imports by ``subjects`` that reach a ``forbidden`` module.

    Parameters
    ----------
    graph : ImportGraph
        The scanned package.
    subjects : iterable of str
        Dotted prefixes: every module that is or lies inside one is checked.
    forbidden : iterable of str
        Dotted prefixes of modules (third-party or of the package) the subjects must not import.
    transitive : bool
        Follow imports through the package's other modules (and the ``__init__`` of every
        package an import runs); ``False`` checks the subjects' own import statements only.
    exempt : iterable of str
        Dotted prefixes of modules inside ``subjects`` that are not checked.

    Returns
    -------
    list of str
        One message per offending import statement of a subject, naming it ``file:line`` and the
        shortest chain from it to a forbidden module. Imports between subjects are not reported
        themselves: the subject they lead to is checked on its own.
    """
    subjects, forbidden, exempt = tuple(subjects), tuple(forbidden), tuple(exempt)
    messages = []
    for module in graph.members(subjects):
        if within(module, exempt):
            continue
        for imp in graph.imports[module]:
            if within(imp.target, forbidden):
                messages.append(f"{imp.where(graph.root)}: {module} imports {imp.target}")
                continue
            if not transitive or not graph.is_internal(imp.target):
                continue
            chain = _shortest_chain(graph, imp, forbidden, subjects)
            if chain:
                messages.append(
                    f"{imp.where(graph.root)}: {module} reaches {chain[-1].target}: {_chain_text(graph, chain)}"
                )
    return messages


def _shortest_chain(
    graph: ImportGraph, first: Import, forbidden: tuple[str, ...], subjects: tuple[str, ...]
) -> list[Import]:
    """Breadth-first from ``first``'s target to the nearest import of a forbidden module; ``[]`` if none."""
    previous: dict[str, Import] = {}
    queue: deque[str] = deque()
    for reached in graph.executed_by(first.target):
        if not within(reached, subjects) and reached not in previous:
            previous[reached] = first
            queue.append(reached)
    while queue:
        node = queue.popleft()
        for imp in graph.imports[node]:
            if within(imp.target, forbidden):
                chain = [imp]
                while chain[0] is not first:
                    chain.insert(0, previous[chain[0].importer])
                return chain
            if not graph.is_internal(imp.target):
                continue
            for reached in graph.executed_by(imp.target):
                if reached not in previous and not within(reached, subjects):
                    previous[reached] = imp
                    queue.append(reached)
    return []


def imports_outside(graph: ImportGraph, subjects: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """Imports by ``subjects`` of the package's modules that are not inside ``allowed`` (direct only)."""
    allowed = tuple(allowed)
    return [
        f"{imp.where(graph.root)}: {module} imports {imp.target}"
        for module in graph.members(subjects)
        for imp in graph.imports[module]
        if graph.is_internal(imp.target) and not within(imp.target, allowed)
    ]


def _fail_on(messages: list[str], rule: str) -> None:
    if messages:
        pytest.fail(f"{rule} ({len(messages)} found):\n  " + "\n  ".join(messages), pytrace=False)


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return scan_package(PACKAGE_DIR)


# --------------------------------------------------------------------------- the rules


def test_the_modules_the_rules_name_exist(graph):
    """A rule about a module that is not there passes vacuously; the layout must have them all."""
    named = {*TORCH_FREE, *MODEL_RUNNERS, *GATE_ALLOWED, *CLI_LAYER, *AUDIT_PATH, "medaudit.train"}
    missing = sorted(name for name in named if name not in graph.modules)
    _fail_on(missing, "the import rules of docs/architecture.md name modules that do not exist")


def test_no_import_cycles(graph):
    _fail_on(find_cycles(graph), "medaudit modules import each other in a cycle (function-level imports count)")


def test_numbers_only_modules_never_import_a_model_framework(graph):
    _fail_on(
        forbidden_reach(graph, TORCH_FREE, MODEL_FRAMEWORKS),
        f"{', '.join(TORCH_FREE)} must not import {', '.join(MODEL_FRAMEWORKS)}, directly or through medaudit modules",
    )


def test_report_never_runs_a_model(graph):
    _fail_on(
        forbidden_reach(graph, ["medaudit.report"], MODEL_RUNNERS),
        "medaudit.report reads snapshots through medaudit.snapshot; it must not reach " + ", ".join(MODEL_RUNNERS),
    )


def test_gate_imports_only_the_snapshot_and_errors(graph):
    _fail_on(
        imports_outside(graph, ["medaudit.gate"], GATE_ALLOWED),
        "medaudit.gate may import only " + ", ".join(GATE_ALLOWED),
    )


def test_only_the_cli_imports_click(graph):
    _fail_on(
        forbidden_reach(graph, ["medaudit"], ["click", *CLI_LAYER], transitive=False, exempt=CLI_LAYER),
        "click and medaudit.cli belong to the command line; the library must not import them",
    )


def test_the_audit_path_never_imports_training(graph):
    _fail_on(
        forbidden_reach(graph, AUDIT_PATH, ["medaudit.train"]),
        "medaudit.train is optional; the audit path must not import it, directly or through medaudit modules",
    )


def _run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter from the project root; it prints one JSON line last."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the subprocess failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_numbers_only_modules_loads_no_model_framework():
    loaded = _run_python(
        "import json, sys\n"
        "import medaudit.metrics, medaudit.report, medaudit.gate, medaudit.snapshot\n"
        f"print(json.dumps(sorted(m for m in {list(MODEL_FRAMEWORKS)!r} if m in sys.modules)))\n"
    )
    assert loaded == [], f"importing metrics, report, gate and snapshot loaded {loaded}"


def test_cli_help_loads_neither_torch_nor_numpy():
    result = _run_python(
        "import contextlib, io, json, sys\n"
        "from medaudit.cli import main\n"
        "shown = io.StringIO()\n"
        "with contextlib.redirect_stdout(shown):\n"
        "    try:\n"
        "        main(['--help'], prog_name='medaudit')\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        "print(json.dumps({'code': code, 'usage': 'Usage:' in shown.getvalue(),\n"
        "                  'loaded': sorted(m for m in ('torch', 'numpy') if m in sys.modules)}))\n"
    )
    assert result["code"] == 0 and result["usage"], result
    assert result["loaded"] == [], f"`medaudit --help` imported {result['loaded']}"


# --------------------------------------------------------------------------- the scanner, tested


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "fixpkg"


@pytest.fixture
def planted(tmp_path) -> ImportGraph:
    """A package with a cycle hidden by a function-level import, a framework import two hops away
    from a pure module (one through a package ``__init__``), and imports that must not count."""
    return scan_package(
        _write(
            tmp_path,
            {
                "fixpkg/__init__.py": "",
                # checkpoint <-> factory, the hidden cycle: one side imports inside a function.
                "fixpkg/checkpoint.py": "from fixpkg.factory import build\n",
                "fixpkg/factory.py": "def build():\n    from . import checkpoint\n    return checkpoint\n",
                # pure -> helper -> torch (function level, relative import)
                "fixpkg/pure.py": "import numpy as np\nfrom .helper import make\n",
                "fixpkg/helper.py": "def make():\n    import torch.nn\n    return torch.nn\n",
                # other -> sub.tiles runs sub/__init__.py, which imports sub.cam -> timm
                "fixpkg/other.py": "import fixpkg.sub.tiles\n",
                "fixpkg/sub/__init__.py": "from fixpkg.sub.cam import run\n",
                "fixpkg/sub/tiles.py": "",
                "fixpkg/sub/cam.py": "def run():\n    import timm\n",
                # never run: a TYPE_CHECKING block (plain and qualified); its else branch does run
                "fixpkg/typed.py": (
                    "import typing\nfrom typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    import torch\n    from fixpkg import factory\n"
                    "if typing.TYPE_CHECKING:\n    import torchvision\nelse:\n    import click\n"
                ),
                # a package __init__ importing its own submodule is not a cycle
                "fixpkg/pkg2/__init__.py": "from fixpkg.pkg2.a import x\n",
                "fixpkg/pkg2/a.py": "from fixpkg.pkg2.b import y\nx = y\n",
                "fixpkg/pkg2/b.py": "y = 1\n",
            },
        )
    )


def test_the_scanner_resolves_relative_and_function_level_imports(planted):
    targets = {m: [i.target for i in found] for m, found in planted.imports.items()}
    assert targets["fixpkg.factory"] == ["fixpkg.checkpoint"]
    assert targets["fixpkg.pure"] == ["numpy", "fixpkg.helper"]
    assert targets["fixpkg.helper"] == ["torch.nn"]
    assert targets["fixpkg.sub"] == ["fixpkg.sub.cam"]
    assert targets["fixpkg.typed"] == ["typing", "typing", "click"], "TYPE_CHECKING blocks never run"


def test_the_scanner_finds_a_cycle_hidden_in_a_function(planted):
    cycles = find_cycles(planted)
    assert len(cycles) == 1, cycles
    assert "fixpkg.checkpoint, fixpkg.factory" in cycles[0]
    assert "fixpkg/checkpoint.py:1 imports fixpkg.factory" in cycles[0]
    assert "fixpkg/factory.py:2 imports fixpkg.checkpoint" in cycles[0]


def test_the_scanner_sees_a_framework_through_other_modules(planted):
    found = forbidden_reach(planted, ["fixpkg.pure", "fixpkg.other", "fixpkg.typed"], ["torch", "timm"])
    assert found == [
        "fixpkg/other.py:1: fixpkg.other reaches timm: fixpkg/other.py:1 imports fixpkg.sub.tiles"
        " -> fixpkg/sub/__init__.py:1 imports fixpkg.sub.cam -> fixpkg/sub/cam.py:2 imports timm",
        "fixpkg/pure.py:2: fixpkg.pure reaches torch.nn: fixpkg/pure.py:2 imports fixpkg.helper"
        " -> fixpkg/helper.py:2 imports torch.nn",
    ]
    assert forbidden_reach(planted, ["fixpkg.pure"], ["torch"], transitive=False) == []
    assert forbidden_reach(planted, ["fixpkg.helper"], ["torch"], transitive=False) == [
        "fixpkg/helper.py:2: fixpkg.helper imports torch.nn"
    ]


def test_the_scanner_checks_direct_imports_against_an_allow_list(planted):
    assert imports_outside(planted, ["fixpkg.checkpoint", "fixpkg.pure"], ["fixpkg.factory"]) == [
        "fixpkg/pure.py:2: fixpkg.pure imports fixpkg.helper"
    ]


def test_the_scanner_exempts_the_cli_layer_only(planted):
    assert forbidden_reach(planted, ["fixpkg"], ["click"], transitive=False, exempt=["fixpkg.pkg2"]) == [
        "fixpkg/typed.py:9: fixpkg.typed imports click"
    ]
    assert forbidden_reach(planted, ["fixpkg"], ["click"], transitive=False, exempt=["fixpkg.typed"]) == []


def test_loading_a_checkpoint_lazily_leaves_timm_and_torchvision_unimported(tiny_checkpoint):
    """A report over cached predictions builds no model: timm (with torchvision, torch._dynamo) costs ~2 s."""
    result = _run_python(
        "import json, sys\n"
        "import medaudit.pipeline\n"
        "from medaudit.models.checkpoint import load_checkpoint\n"
        f"ld = load_checkpoint({str(tiny_checkpoint)!r}, lazy=True)\n"
        "before = sorted(m for m in ('timm', 'torchvision') if m in sys.modules)\n"
        "ld.model\n"
        "print(json.dumps({'before': before, 'after': sorted(m for m in ('timm',) if m in sys.modules)}))\n"
    )
    assert result == {"before": [], "after": ["timm"]}, result
