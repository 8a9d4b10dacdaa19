"""Run every benchmark and print each figure with its goal.

    python bench/run.py

Each benchmark runs in its own process (a fresh heap, as a user has), one
after the other; the whole run takes a few minutes on 2 cores. Exit status 1
when any figure misses its goal. Results and the machine they were measured
on: docs/performance.md.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_resolve.py",
    "bench_parse.py",
    "bench_cold_start.py",
    "bench_savings.py",
    "bench_stages.py",
    "bench_html.py",
    "bench_cache.py",
    "bench_bounds.py",
    "bench_resources.py",
)


def main() -> int:
    import torch

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
        f"{platform.processor() or platform.platform()}, {len(os.sched_getaffinity(0))} cores",
        flush=True,
    )
    start = time.perf_counter()
    verdicts = []
    for script in BENCHMARKS:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, check=False)
        lines = done.stdout.splitlines()
        for line in lines:
            print(line, flush=True)
        verdicts += [line.split()[0] for line in lines if line.strip()]
        if done.returncode != 0:
            print(f"FAIL  {script} crashed (exit {done.returncode}):\n{done.stderr}", flush=True)
            verdicts.append("FAIL")
        print(f"      ({script}: {time.perf_counter() - began:.0f} s)", flush=True)
    failed = verdicts.count("FAIL")
    print(f"{verdicts.count('PASS')} passed, {failed} failed, {time.perf_counter() - start:.0f} s in all", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
