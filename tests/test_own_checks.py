"""The project passes its own checks: every policy file it ships (``policies/``, ``examples/``) is in the
canonical layout (``fmt --check``) and lints clean with ``--strict`` against each model its header names.

This is what a user's CI runs on their policies (README, "Linting in CI").
"""

from __future__ import annotations

import re
from pathlib import Path

import policy_library
import pytest
import yaml

from policyfreeze.cache import CACHE_DIR_VARIABLE
from policyfreeze.cli import main

FILES = policy_library.policy_files()


@pytest.fixture(autouse=True)
def model_cache(monkeypatch):
    """Overrides conftest's empty cache per test: the library's models are built once per session."""
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(policy_library.CACHE_DIR))


def files_for(spec: str) -> list[str]:
    return [str(path) for path in FILES if spec in policy_library.header_specs(path)]


def test_the_library_is_not_empty() -> None:
    assert len(FILES) >= 20
    assert policy_library.ROOT / "examples" / "gradual-unfreezing.freeze" in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_file_names_its_model(path: Path) -> None:
    assert policy_library.header_specs(path), (
        f"{path}: no '# model: SPEC' header line naming the model the policy is written for"
    )
    assert path.read_text(encoding="utf-8").startswith("# model: "), f"{path}: the header comes first"


def test_fmt_check_passes(capsys) -> None:
    status = main(["fmt", "--check", *map(str, FILES)])
    out, err = capsys.readouterr()
    assert (status, out, err) == (0, "", f"0 files would be reformatted, {len(FILES)} files already formatted\n")


@pytest.mark.parametrize("spec", policy_library.library_specs())
def test_lint_strict_passes_against_the_named_model(spec: str, capsys) -> None:
    policy_library.model(spec)  # built once, and cached for the command below
    files = files_for(spec)
    status = main(["lint", "--strict", "--model", spec, *files])
    out, err = capsys.readouterr()
    count = f"{len(files)} file" + ("" if len(files) == 1 else "s")
    assert (status, out, err) == (0, f"All checks passed ({count}).\n", "")


# --- what CI installs ---------------------------------------------------------------------------------------

#: policyfreeze is on no package index: CI installs it from its repository (OWNER and the ref are placeholders)
INSTALL = 'pip install "policyfreeze @ git+https://github.com/OWNER/policyfreeze@<tag or commit>"'


def yaml_blocks(doc: str) -> list:
    text = (policy_library.ROOT / doc).read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
def test_ci_snippets_install_from_the_repository(doc: str) -> None:
    blocks = yaml_blocks(doc)
    steps = [step for block in blocks if "jobs" in block for job in block["jobs"].values() for step in job["steps"]]
    assert [step["run"] for step in steps if "pip install" in step.get("run", "")] == [INSTALL]
    [pre_commit] = [block for block in blocks if "repos" in block]
    assert [(repo["repo"], repo["rev"]) for repo in pre_commit["repos"]] == [
        ("https://github.com/OWNER/policyfreeze", "<tag or commit>")
    ]


def test_pre_commit_hooks_install_the_torch_free_core() -> None:
    """`language: python` hooks get the package's core dependencies and nothing else: they must not need torch."""
    hooks = yaml.safe_load((policy_library.ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert {hook["id"] for hook in hooks} == {"policyfreeze-lint", "policyfreeze-fmt"}
    assert all(hook["language"] == "python" and "additional_dependencies" not in hook for hook in hooks)
    pyproject = (policy_library.ROOT / "pyproject.toml").read_text(encoding="utf-8")
    [dependencies] = re.findall(r"^dependencies = \[(.*?)\]", pyproject, re.MULTILINE | re.DOTALL)
    assert set(re.findall(r'^\s*"([\w-]+)', dependencies, re.MULTILINE)) == {"lark", "pydantic", "google-re2"}


def test_the_readme_lists_every_shipped_policy_with_its_models() -> None:
    readme = (policy_library.ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(policies/[\w.-]+\.freeze)` \| (.+?) \| .+ \|$", readme, re.MULTILINE)
    listed = {path: re.findall(r"`([^`]+)`", models) for path, models in rows}
    shipped = {
        f"policies/{path.name}": policy_library.header_specs(path) for path in FILES if path.parent.name == "policies"
    }
    assert listed == shipped
