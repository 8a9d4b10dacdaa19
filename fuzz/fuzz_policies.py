"""Fuzz the policy front end: any exception other than PolicyError is a bug.

    .venv/bin/python fuzz/fuzz_policies.py --examples 100000 --jobs 2

Each job runs hypothesis with its own seed over
``tests/policy_strategies.any_policy_text()`` (valid policies, mutated
policies, text generated from grammar/policy.lark, token soup, arbitrary
Unicode) and applies ``check_input`` to every input: parse; for a policy,
resolve every schedule stage and lint against a model with every structure
the language handles. A failing input is shrunk and saved under
``tests/regressions/``, where ``tests/test_fuzz_regressions.py`` replays it
on every test run. Exit status: 0 when no input failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "regressions"
sys.path.insert(0, str(ROOT / "tests"))  # policy_strategies and models live beside the tests

import policy_strategies  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402


def run_job(examples: int, job_seed: int) -> tuple[int, dict | None]:
    """Check ``examples`` inputs; return how many ran and the shrunk failure, if any."""
    count = 0
    last_failure: dict | None = None

    @seed(job_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(policy_strategies.any_policy_text())
    def fuzz(text: str) -> None:
        nonlocal count, last_failure
        count += 1
        if count % 10_000 == 0:
            print(f"  seed {job_seed}: {count:,} inputs", flush=True)
        try:
            policy_strategies.check_input(text)
        except Exception as exc:
            # Hypothesis replays the shrunk input last, so this ends as the minimal one.
            last_failure = {
                "input": text,
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "trace": traceback.format_exc(),
            }
            raise

    try:
        fuzz()
    except Exception:
        return count, last_failure
    return count, None


def save(failure: dict) -> Path:
    digest = hashlib.sha1(failure["input"].encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = REGRESSIONS / f"fuzz-{digest}.json"
    record = {"input": failure["input"], "error": failure["error"], "found_by": "fuzz/fuzz_policies.py"}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")  # ASCII: surrogates escaped
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="inputs in all (default 100,000)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="job i uses seed SEED+i (default 0)")
    args = parser.parse_args()

    per_job = -(-args.examples // args.jobs)
    started = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.starmap(run_job, [(per_job, args.seed + i) for i in range(args.jobs)])
    elapsed = time.perf_counter() - started
    total = sum(count for count, _ in results)
    failures = [failure for _, failure in results if failure]
    for failure in failures:
        print(failure["trace"], file=sys.stderr)
        print(f"failing input {failure['input']!r} saved as {save(failure).relative_to(ROOT)}", file=sys.stderr)
    print(f"{total:,} inputs in {elapsed:.0f} s, {len(failures)} failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
