"""Benchmark 5: the model-tree cache.

Whole processes, candidate and baseline taking turns:

- ``plan policies/resnet18-linear-probe.freeze --model torchvision:resnet18``
  on an empty cache (it builds the model and writes the entry; the cache is
  emptied, untimed, before each) against the same command run again (it reads
  the entry; torch never imported, checked in a separate process);
- ``lint policies/ --model torchvision:resnet18`` on a cached entry against
  ``lint policies/ --manifest resnet18.manifest.json``.

The cache lives in a temporary directory (``POLICYFREEZE_CACHE_DIR``), never
the user's. Bytecode caching on, as in benchmark 3.

    python bench/bench_cache.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure, ms

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
PROBE = POLICIES / "resnet18-linear-probe.freeze"
MODEL = "torchvision:resnet18"
COLD_REPEATS = 5
LINT_REPEATS = 9
PLAN_GOAL = 0.15
LINT_GOAL = 1.2

NO_TORCH = (
    "import sys\n"
    "from policyfreeze.cli import main\n"
    f"main(['plan', {str(PROBE)!r}, '--model', {MODEL!r}])\n"
    "print('torch' in sys.modules, file=sys.stderr)\n"
)


def seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: lint findings
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed


def main() -> list[Figure]:
    workspace = Path(tempfile.mkdtemp(prefix="policyfreeze-bench-cache-"))
    cache_dir = workspace / "cache"
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env["POLICYFREEZE_CACHE_DIR"] = str(cache_dir)
    policyfreeze = [sys.executable, "-m", "policyfreeze"]
    plan = [*policyfreeze, "plan", str(PROBE), "--model", MODEL]
    manifest = workspace / "resnet18.manifest.json"
    lint_model = [*policyfreeze, "lint", str(POLICIES), "--model", MODEL]
    lint_manifest = [*policyfreeze, "lint", str(POLICIES), "--manifest", str(manifest)]
    try:
        subprocess.run([*policyfreeze, "manifest", "--model", MODEL, "-o", str(manifest)], env=env, check=True)
        for command in (plan, lint_model, lint_manifest):  # warm the disk and bytecode caches
            seconds(command, env)
        cold, cached = [], []
        for _ in range(COLD_REPEATS):
            shutil.rmtree(cache_dir, ignore_errors=True)
            cold.append(seconds(plan, env))
            cached.append(seconds(plan, env))
        torch_free = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=ROOT, env=env, capture_output=True, text=True)
        no_torch = torch_free.returncode == 0 and torch_free.stderr.strip().endswith("False")
        by_model, by_manifest = [], []
        for _ in range(LINT_REPEATS):
            by_model.append(seconds(lint_model, env))
            by_manifest.append(seconds(lint_manifest, env))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    cold_s, cached_s = statistics.median(cold), statistics.median(cached)
    model_s, manifest_s = statistics.median(by_model), statistics.median(by_manifest)
    plan_ratio, lint_ratio = cached_s / cold_s, model_s / manifest_s
    return [
        Figure(
            "[7] second plan --model torchvision:resnet18 / first (empty cache)",
            f"{plan_ratio:.3f}x (cached {ms(cached_s)}, first {ms(cold_s)}; torch imported on a hit: "
            f"{'NO' if no_torch else 'yes'})",
            f"<= {PLAN_GOAL}x",
            no_torch and plan_ratio <= PLAN_GOAL,
        ),
        Figure(
            "[7] cached lint policies/ --model / lint --manifest",
            f"{lint_ratio:.3f}x ({ms(model_s)} vs {ms(manifest_s)})",
            f"<= {LINT_GOAL}x",
            lint_ratio <= LINT_GOAL,
        ),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)
