"""Policy text never imports or executes code; only ``--model`` imports user code.

Policies arrive in pull requests and CI lints them: reading one must be as
safe as reading JSON. Checked three ways: an audit hook watching a process
that parses, lints, resolves and applies hostile policies; behaviour of
``type()`` and of the command line around a booby-trapped module; and a scan
of the package's source for every way Python can run or deserialize code.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from policyfreeze import PolicyError, cli, parse, resolve

PACKAGE = Path(__file__).parent.parent / "policyfreeze"

HOSTILE = [
    "freeze \"__import__('os').system('touch PWNED')\"",
    "freeze type(os.system)",
    "freeze type(__import__)",
    "freeze type(Trap)",
    "freeze type(trap)",
    'freeze "trap:factory", "trap.py:factory"',
    "freeze match /trap/, match /(?P<x>a)(?P=x)/",
    "unfreeze fc with lr=__import__",
    "eval type(BatchNorm2d); train layer1; freeze all except fc",
    "freeze all\nat epoch 1 { unfreeze type(Linear) }",
]

TRAP = """
from pathlib import Path
Path(__file__).with_name("SPRUNG").write_text("the trap module ran")
from torch import nn

class Trap(nn.Module):
    pass

def factory():
    return nn.Sequential(Trap(), nn.Linear(2, 2))
"""

AUDIT_SCRIPT = r"""
import json, os, sys
from pathlib import Path
import torch
import torchvision
from policyfreeze import PolicyError, apply, parse, resolve
from policyfreeze.language.fmt import fmt
from policyfreeze.lint.linter import lint
from policyfreeze.language.source import Source
from policyfreeze.model.walk import tree_of

hostile = {hostile!r}
with torch.device("meta"):  # no data is needed, only names and flags
    model = torchvision.models.resnet18(weights=None)
tree = tree_of(model)

def run(text):
    try:
        list(lint(Source("policy.freeze", text), tree))
        fmt(text)
        resolve(model, text, epoch=1)
        apply(model, text)
    except PolicyError:
        pass

# Warm up: the first run of each stage may import a stdlib module lazily.
for text in hostile:
    run(text)
before = set(sys.modules)
WATCHED = ("import", "exec", "compile", "open", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "subprocess.Popen", "ctypes.dlopen", "pickle.find_class", "marshal.loads", "builtins.input")
events = []
sys.addaudithook(lambda event, args: events.append((event, repr(args)[:200])) if event in WATCHED else None)
for text in hostile:
    run(text)
open(os.devnull).close()  # the control: the hook does see an event
print(json.dumps({{
    "events": events,
    "new_modules": sorted(set(sys.modules) - before),
    "trap_ran": Path("SPRUNG").exists() or "trap" in sys.modules,
}}))
"""


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A module that leaves a file behind if anything imports or runs it."""
    (tmp_path / "trap.py").write_text(TRAP)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_hostile_policies_run_no_code(trap):
    """Audit events while linting, formatting, resolving and applying: nothing imported, compiled, run or opened."""
    result = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT.format(hostile=HOSTILE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=trap,
        # trap.py is importable, should anything try; the package is this checkout's, not the installed one
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(trap), str(Path(__file__).parent.parent)])},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    *events, control = seen["events"]
    assert control[0] == "open" and os.devnull in control[1]
    assert events == []
    assert seen["new_modules"] == []
    assert not seen["trap_ran"]
    assert not (trap / "PWNED").exists()


class Sneaky(nn.Module):
    """A class that exists in this process but in no model below."""


def test_type_resolves_only_against_classes_in_the_model():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert resolve(model, "freeze type(Sneaky)").changed == []
    assert resolve(model, "freeze type(Trap)").changed == []
    model.add_module("sneaky", Sneaky())
    model.sneaky.weight = nn.Parameter(torch.ones(1))
    assert resolve(model, "freeze type(Sneaky)").changed == ["sneaky.weight"]


def test_type_takes_a_class_name_not_a_python_path():
    with pytest.raises(PolicyError) as info:
        parse("freeze type(os.system)")
    assert info.value.code == "PF101"
    assert info.value.location is not None


def test_policy_text_naming_a_module_does_not_import_it(trap):
    model = torchvision.models.resnet18(weights=None)
    for text in HOSTILE:
        with contextlib.suppress(PolicyError):
            resolve(model, text)
    with pytest.raises(PolicyError):
        resolve(model, "trap.py:factory")  # text, not a path: a syntax error, never an import
    assert not (trap / "SPRUNG").exists()
    assert "trap" not in sys.modules


def test_only_model_on_the_command_line_imports_user_code(trap, capsys):
    policy = trap / "policy.freeze"
    policy.write_text('freeze all\nunfreeze "trap:factory", "trap.py:factory", type(Trap)\n')
    # exit 1: the policy leaves nothing trainable in either model (PF205); what matters is what it imported
    assert cli.main(["plan", str(policy), "--model", "torchvision:resnet18"]) == 1
    assert not (trap / "SPRUNG").exists()
    capsys.readouterr()
    # The control: naming the file as --model is what runs it.
    assert cli.main(["plan", str(policy), "--model", f"{trap / 'trap.py'}:factory"]) == 1
    assert (trap / "SPRUNG").exists()
    assert "planned for Sequential (2 parameter tensors)" in capsys.readouterr().out


# --- the package's source ----------------------------------------------------

RUNS_CODE = {"eval", "exec", "compile", "__import__", "breakpoint", "input"}
DESERIALIZERS = {
    "pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "joblib",
    "yaml",
    "runpy",
    "subprocess",
    "ctypes",
}
IMPORTS_CODE = {"import_module", "spec_from_file_location", "exec_module", "load_module", "run_path", "run_module"}
SHELL = {"system", "popen", "execv", "execve", "execvp", "spawnv", "posix_spawn"}


def source_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    return files


def dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def imports_own_module(call: ast.Call) -> bool:
    """``import_module(".name", ...)``: a relative name reaches only the package's own modules."""
    if dotted(call.func).rsplit(".", 1)[-1] != "import_module" or not call.args:
        return False
    first = call.args[0]
    if isinstance(first, ast.JoinedStr) and first.values:
        first = first.values[0]
    return isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith(".")


def findings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {name}" for name in names if name.split(".")[0] in DESERIALIZERS]
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if isinstance(node.func, ast.Name) and name in RUNS_CODE:
            found.append(f"{where} calls {name}()")
        last = name.rsplit(".", 1)[-1]
        if (
            last in IMPORTS_CODE
            and path.relative_to(PACKAGE).as_posix() != "model/loader.py"
            and not imports_own_module(node)
        ):
            found.append(f"{where} imports code with {name}() outside model/loader.py (the --model loader)")
        if name.startswith("os.") and last in SHELL:
            found.append(f"{where} runs a command with {name}()")
        if unsafe_torch_load(node):
            found.append(f"{where} calls {name}() without weights_only=True")
    return found


def unsafe_torch_load(call: ast.Call) -> bool:
    if dotted(call.func) not in ("torch.load", "torch.serialization.load"):
        return False
    weights_only = [k.value for k in call.keywords if k.arg == "weights_only"]
    return not (weights_only and isinstance(weights_only[0], ast.Constant) and weights_only[0].value is True)


def test_the_package_never_runs_or_unpickles_code():
    """No eval/exec/compile, no pickle/marshal/yaml/subprocess, imports only in model/loader.py, torch.load only weights_only=True."""
    assert [problem for path in source_files() for problem in findings(path)] == []


def test_examples_load_checkpoints_with_weights_only():
    """The examples are what people copy: their torch.load calls are safe too."""
    examples = sorted((PACKAGE.parent / "examples").rglob("*.py"))
    calls = [
        (path.name, node.lineno)
        for path in examples
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and unsafe_torch_load(node)
    ]
    assert calls == []


@pytest.mark.parametrize(
    "snippet, problem",
    [
        ("import pickle", "imports pickle"),
        ("x = eval(text)", "calls eval()"),
        ("import torch\nstate = torch.load(path)", "without weights_only=True"),
        ("import torch\nstate = torch.load(path, weights_only=False)", "without weights_only=True"),
        ("import importlib\nimportlib.import_module(name)", "outside model/loader.py"),
        ("import importlib\nimportlib.import_module(f'{name}.x')", "outside model/loader.py"),
        ("import os\nos.system(cmd)", "runs a command"),
    ],
)
def test_the_scan_catches_each_kind(tmp_path, snippet, problem, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    path = tmp_path / "module.py"
    path.write_text(snippet)
    assert any(problem in found for found in findings(path))


def test_the_scan_accepts_a_safe_torch_load(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    path = tmp_path / "module.py"
    path.write_text("import torch\nstate = torch.load(path, map_location='cpu', weights_only=True)")
    assert findings(path) == []
