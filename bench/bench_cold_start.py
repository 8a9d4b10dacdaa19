"""Benchmark 3: cold start of ``policyfreeze lint policies/`` (no model) against ``import torch``.

Whole processes, alternating: ``python -m policyfreeze lint policies/`` and
``python -c "import torch"``. The figure is the ratio of the median wall
times; the ratio of the median CPU times (user + system of the child) is
printed beside it, as a check on a machine whose other work stretches wall
times. Linting without a model never imports torch (checked in a separate
process).

Both run with bytecode caching on, as an installed package runs (pip
compiles every module when it installs one): with PYTHONDONTWRITEBYTECODE
set, as on some machines, an editable checkout would compile policyfreeze's
modules from source in every process while torch's come precompiled.

    python bench/bench_cold_start.py
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure, ms

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
REPEATS = 11
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


def seconds(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=BYTECODE_CACHED, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


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
    lint_s, torch_s = median([wall for wall, _ in lint]), median([wall for wall, _ in torch])
    cpu_ratio = median([cpu for _, cpu in lint]) / median([cpu for _, cpu in torch])
    ratio = lint_s / torch_s
    return [
        Figure(
            "[3] cold start: lint policies/ / import torch",
            f"{ratio:.3f}x (lint {ms(lint_s)}, import torch {ms(torch_s)}; CPU time {cpu_ratio:.3f}x; "
            "torch never imported: "
            f"{'yes' if torch_free else 'NO'})",
            f"<= {GOAL}x",
            torch_free and ratio <= GOAL,
        )
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)
