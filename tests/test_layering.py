"""The package order of docs/engine.md, read from the code: no module imports a package above it.

Every import of ``syndicate.X`` (absolute, relative, inside functions too) is read with ``ast``;
an import is allowed only into the module's own package or one on a lower level.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "syndicate"

# Top to bottom; packages on one line are peers and do not import each other.
LEVELS = [
    {"cli"},
    {"web"},
    {"engine"},
    {"providers"},
    {"email"},
    {"render"},
    {"audience", "feeds"},
    {"ledger"},
    {"settings", "model", "errors", "demo"},
    {"options", "locations"},
]
RANK = {name: level for level, names in enumerate(LEVELS) for name in names}


def _imported_packages(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, top package under syndicate) for every syndicate import in PATH (a file of PACKAGE)."""
    here = path.relative_to(package).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = list(here[:-node.level]) if path.name != "__init__.py" else list(here[:len(here) - node.level + 1])
                modules = [".".join(["syndicate", *base, *(node.module.split(".") if node.module else [])])]
            else:
                modules = [node.module or ""]
            if modules == ["syndicate"]:
                modules = [f"syndicate.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "syndicate" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _owner(path: Path, package: Path = PACKAGE) -> str:
    return path.relative_to(package).parts[0].removesuffix(".py")


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Every import in PACKAGE of a package on the same or a higher level than the importer's."""
    upward = []
    for path in sorted(package.rglob("*.py")):
        owner = _owner(path, package)
        if owner not in RANK:
            continue
        for line, target in _imported_packages(path, package):
            if target == owner or target not in RANK:  # its own package, or syndicate/__init__
                continue
            if RANK[target] <= RANK[owner]:
                upward.append(f"{path.relative_to(package.parent)}:{line} imports syndicate.{target} "
                              f"({owner} may import only packages below it)")
    return upward


def test_every_package_has_a_level():
    names = {_owner(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert names <= set(RANK), f"packages missing from LEVELS (and docs/engine.md): {sorted(names - set(RANK))}"


def test_no_module_imports_a_package_above_it():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_the_checker_reports_upward_and_peer_imports(tmp_path):
    # The rule must be able to fail: a scratch tree with one import of each kind.
    package = tmp_path / "syndicate"
    (package / "ledger").mkdir(parents=True)
    (package / "feeds").mkdir()
    (package / "ledger" / "db.py").write_text("import os\nfrom syndicate.engine import runner\n")
    (package / "feeds" / "parse.py").write_text("from ..audience import subscribers\nfrom syndicate.model import X\n")
    (package / "engine.py").write_text("def f():\n    from syndicate import cli\n")
    found = upward_imports(package)
    assert len(found) == 3, found
    assert any("ledger/db.py:2 imports syndicate.engine" in line for line in found)
    assert any("feeds/parse.py:1 imports syndicate.audience" in line for line in found)
    assert any("engine.py:2 imports syndicate.cli" in line for line in found)


def test_docs_write_the_same_order():
    text = (ROOT / "docs" / "engine.md").read_text()
    section = text.split("## Packages and their order", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)`", section, re.M)
    expected = [name for names in LEVELS for name in sorted(names)]
    assert sorted(documented) == sorted(expected), "docs/engine.md's package table and LEVELS differ"
