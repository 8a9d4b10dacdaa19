"""The wheel ships the grammar: an installed, non-editable copy parses policies anywhere."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_installed_wheel_parses_a_policy_outside_the_checkout(tmp_path):
    dist, target, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("policyfreeze-*.whl")
    assert "policyfreeze/language/grammar.lark" in zipfile.ZipFile(wheel).namelist()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    (elsewhere / "probe.freeze").write_text("freeze all; unfreeze *.fc.*\n")
    script = (
        "import policyfreeze, pathlib, sys\n"
        "from policyfreeze.language import grammar\n"
        "assert pathlib.Path(policyfreeze.__file__).is_relative_to(sys.argv[1]), policyfreeze.__file__\n"
        "assert grammar.GRAMMAR_LOCATIONS[0].is_file()\n"
        "policy = policyfreeze.load('probe.freeze')\n"
        "print(len(policy.statements))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); exec({script!r})", str(target)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
