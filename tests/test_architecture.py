"""The package's shape: imports point down the pipeline only, with no cycles; the vocabulary is the grammar's.

Every import counts, at module level or inside a function (those run too),
except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyfreeze.language import vocabulary
from policyfreeze.language.grammar import grammar_text

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "policyfreeze"

#: Each part of the package and the parts it may import. The root module (``policyfreeze``)
#: holds the version and the lazy public names; ``errors`` is the exception family; ``cache`` the
#: user's cache directory; ``collector`` pauses the garbage collector. Every part may import those four.
BASE = {"policyfreeze", "errors", "cache", "collector"}
ALLOWED = {
    "policyfreeze": {"errors"},
    "errors": set(),
    "cache": set(),
    "collector": set(),
    "language": set(),
    "model": set(),
    "engine": {"errors", "language", "model"},
    "report": {"errors", "language", "model", "engine"},
    "training": {"errors", "language", "model", "engine", "report"},
    "lint": {"policyfreeze", "errors", "language", "model", "engine", "report"},
    "api": {"errors", "language", "model", "engine", "report"},
    "cli": {"policyfreeze", "errors", "language", "model", "engine", "report", "training", "lint", "api"},
    "__main__": {"cli"},
    "lightning": {"policyfreeze", "errors", "language", "model", "engine", "report", "training"},
    "transformers": {"policyfreeze", "errors", "language", "model", "engine", "report", "training"},
}
#: The one import up the pipeline: IPython looks for ``_repr_html_`` on the object shown, so
#: ``Plan`` names its view; the report is imported only when a notebook displays a plan.
DISPLAY_HOOKS = {("policyfreeze.engine.resolve", "policyfreeze.report.html")}
#: Parts that never import torch, at any depth of their own code.
TORCH_FREE = {"policyfreeze", "errors", "cache", "collector", "language", "lint"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "policyfreeze"


def imports(path: Path) -> list[tuple[str, int]]:
    """The modules ``path`` imports (absolute names) with their lines, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` imports the module x when x is one.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((candidate if module_path(candidate) else target, node.lineno))
    return found


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def graph() -> dict[str, list[tuple[str, int]]]:
    modules = {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}
    return {
        module: [(t, line) for t, line in targets if (module, t) not in DISPLAY_HOOKS]
        for module, targets in modules.items()
    }


def test_every_part_is_listed():
    assert {part_of(module) for module in graph()} <= set(ALLOWED)


def test_imports_point_down_the_pipeline():
    backward = [
        f"{module}:{line} imports {target}"
        for module, targets in graph().items()
        for target, line in targets
        if target.startswith("policyfreeze")
        and part_of(target) != part_of(module)
        and part_of(target) not in ALLOWED[part_of(module)] | (BASE if part_of(module) not in BASE else set())
    ]
    assert backward == []


def test_torch_free_parts_never_import_torch():
    found = [
        f"{module}:{line} imports {target}"
        for module, targets in graph().items()
        if part_of(module) in TORCH_FREE
        for target, line in targets
        if target.split(".")[0] in ("torch", "torchvision")
    ]
    assert found == []


def test_no_import_cycles():
    edges = {
        module: {target for target, _ in targets if target in graph_modules() and target != module}
        for module, targets in graph().items()
    }
    # A package's __init__ importing its own modules is not a cycle through them.
    cycles = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if target == module.rpartition(".")[0] or module == target.rpartition(".")[0]:
                continue
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def graph_modules() -> set[str]:
    return {module_name(path) for path in PACKAGE.rglob("*.py")}


def test_the_checks_catch_a_backward_import(tmp_path, monkeypatch):
    fake = tmp_path / "policyfreeze"
    (fake / "language").mkdir(parents=True)
    (fake / "engine").mkdir()
    for package in (fake, fake / "language", fake / "engine"):
        (package / "__init__.py").write_text("")
    (fake / "engine" / "select.py").write_text("")
    (fake / "language" / "parser.py").write_text("from ..engine import select\nimport torch\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError):
        test_imports_point_down_the_pipeline()
    with pytest.raises(AssertionError):
        test_torch_free_parts_never_import_torch()


def test_lint_without_a_model_loads_neither_torch_nor_the_engine(tmp_path):
    policy = tmp_path / "probe.freeze"
    policy.write_text("freeze all\nunfreeze fc\n")
    script = (
        "import sys\n"
        "from policyfreeze.cli import main\n"
        f"status = main(['lint', {str(policy)!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')"
        " or m.startswith(('policyfreeze.engine', 'policyfreeze.model', 'policyfreeze.training')))\n"
        "print(status, loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"


#: A keyword terminal: its words, then the lookahead that keeps it from being a name's start.
KEYWORD_TERMINAL = re.compile(r"^([A-Z_]+): /(?:\(\?:)?([a-z|]+)\)?\(\?!\[A-Za-z0-9_\*\?\.\\\[\]\)/$", re.M)


def keyword_terminals() -> dict[str, tuple[str, ...]]:
    return {name: tuple(words.split("|")) for name, words in KEYWORD_TERMINAL.findall(grammar_text())}


def test_the_grammar_speaks_the_vocabulary():
    terminals = keyword_terminals()
    assert terminals["VERB"] == vocabulary.VERBS
    assert terminals["UNIT"] == vocabulary.UNITS
    rules = "\n".join(line for line in grammar_text().splitlines() if not line.lstrip().startswith("//"))
    # `children` is a keyword only before '['; the words a name may begin with are keywords only
    # when no name character follows; `all`, `match` and `type` are strings.
    words = set(re.findall(r'"([a-z]+)"', rules)) | set(re.findall(r"^CHILDREN: /([a-z]+)", rules, re.M))
    words |= {word for group in terminals.values() for word in group}
    assert words == set(vocabulary.KEYWORDS)
    assert set(vocabulary.FIRST_STAGE) == set(vocabulary.UNITS)


def test_the_wheel_copy_of_the_grammar_is_the_grammar():
    """The build copies grammar/policy.lark into the package; nothing else may ship as the grammar."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"grammar/policy.lark" = "policyfreeze/language/grammar.lark"' in pyproject
    assert not (PACKAGE / "language" / "grammar.lark").exists(), "the checkout holds one grammar: grammar/"


def test_code_and_docs_refer_to_the_projects_own_documents_only():
    """No "spec §N", no "issue N", no paths outside the repository: docs/language.md is the reference."""
    outside = re.compile(r"spec §|\bspec v1\b|\bissues? \d+\b|shared/spec|\.\./shared|/work/")
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert found == []
