"""Benchmark 3: cold start of ``policyfreeze lint policies/`` (no model) against ``import torch``.

Whole processes, alternating: ``python -m policyfreeze lint policies/`` and
``python -c "import torch"``. Linting without a model never imports torch
(checked in a separate process).

Both run with bytecode caching on, as an installed package runs (pip
compiles every module when it installs one): with PYTHONDONTWRITEBYTECODE
set, as on some machines, an editable checkout would compile policyfreeze's
modules from source in every process while torch's come precompiled.

    python bench/bench_cold_start.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure, ms

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
REPEATS = 7
GOAL = 0.10

LINT = [sys.executable, "-m", "policyfreeze", "lint", str(POLICIES)]
TORCH = [sys.executable, "-c", "import torch"]
TORCH_FREE = (
    "import sys\n"
    "from policyfreeze.cli import main\n"
    f"main(['lint', {str(POLICIES)!r}])\n"
    "print('torch' in sys.modules, file=sys.stderr)\n"
)


BYTECODE_CACHED = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=BYTECODE_CACHED, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed


def main() -> list[Figure]:
    imports_torch = subprocess.run([sys.executable, "-c", TORCH_FREE], cwd=ROOT, capture_output=True, text=True)
    torch_free = imports_torch.returncode == 0 and imports_torch.stderr.strip().endswith("False")
    for command in (
        LINT,
        TORCH,
    ):  # warm the file and bytecode caches: cold start means a fresh process, not a cold disk
        seconds(command)
    lint, torch = [], []
    for _ in range(REPEATS):
        lint.append(seconds(LINT))
        torch.append(seconds(TORCH))
    lint_s, torch_s = sorted(lint)[REPEATS // 2], sorted(torch)[REPEATS // 2]
    ratio = lint_s / torch_s
    return [
        Figure(
            "[3] cold start: lint policies/ / import torch",
            f"{ratio:.3f}x (lint {ms(lint_s)}, import torch {ms(torch_s)}; torch never imported: "
            f"{'yes' if torch_free else 'NO'})",
            f"<= {GOAL}x",
            torch_free and ratio <= GOAL,
        )
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)
