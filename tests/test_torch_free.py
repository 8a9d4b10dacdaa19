"""The core install is torch-free: lint and fmt work without torch; what needs it says which extra to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyfreeze.model.manifest import from_tree
from policyfreeze.model.walk import tree_of

#: Run the command line in a Python where importing torch (or torchvision) fails.
WITHOUT_TORCH = (
    "import sys\n"
    "sys.modules['torch'] = None\n"
    "sys.modules['torchvision'] = None\n"
    "from policyfreeze.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def files(tmp_path):
    import torchvision

    (tmp_path / "probe.freeze").write_text("freeze all\nunfreeze fc\neval type(BatchNorm2d)\n")
    (tmp_path / "messy.freeze").write_text("freeze   all;unfreeze fc\n")
    manifest = from_tree(tree_of(torchvision.models.resnet18()), model="torchvision:resnet18").to_json()
    (tmp_path / "resnet18.manifest.json").write_text(manifest)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["lint", "probe.freeze"], 0),
        (["lint", "probe.freeze", "--manifest", "resnet18.manifest.json", "--format", "json"], 0),
        (["fmt", "--check", "probe.freeze"], 0),
        (["fmt", "--check", "messy.freeze"], 1),
        (["--version"], 0),
        (["--help"], 0),
        (["plan", "--help"], 0),
    ],
)
def test_what_needs_no_torch_works_without_it(files, args, status):
    result = run(*args, cwd=files)
    assert result.returncode == status, result.stderr
    assert "internal error" not in result.stderr
    if "--manifest" in args:
        assert json.loads(result.stdout)["counts"]["findings"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "probe.freeze", "--model", "torchvision:resnet18"],
        ["lint", "probe.freeze", "--model", "torchvision:resnet18"],
        ["manifest", "--model", "torchvision:resnet18"],
        ["cost", "probe.freeze", "--model", "torchvision:resnet18", "--input-shape", "1,3,32,32"],
    ],
)
def test_what_needs_torch_says_which_extra_to_install(files, args):
    result = run(*args, cwd=files)
    assert result.returncode == 2, result.stderr
    assert "internal error" not in result.stderr
    assert re.search(r"needs torch(vision)?, which is not installed", result.stderr)
    assert "pip install 'policyfreeze[torch]'" in result.stderr


def test_the_core_install_requires_no_torch():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    core = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "torch" not in core
    assert "lark" in core and "pydantic" in core and "google-re2" in core
