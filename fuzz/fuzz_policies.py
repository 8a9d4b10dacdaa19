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

    .venv/bin/python fuzz/fuzz_policies.py --shapes --examples 200

draws ``policy_strategies.hostile_shapes()`` instead: one line of thousands
of errors and findings, thousands of schedule blocks, deep manifests with a
repeated child name, long names against globs and regexes with thousands of
wildcards. Each must end in a result or a short ``PolicyError`` within
``--budget`` seconds of CPU time; a slower one is a failure too.
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

#: Statements per line and schedule blocks up to this; names up to 100 times it.
SHAPE_SCALE = 4_000


class OverBudget(Exception):
    """An input took longer than the time budget."""


def check_shape_within(shape: policy_strategies.Shape, budget: float) -> None:
    started = time.process_time()
    policy_strategies.check_shape(shape)
    spent = time.process_time() - started
    if spent > budget:
        raise OverBudget(f"{shape.kind}: {spent:.1f} s of CPU time, over the budget of {budget:g} s")


def run_job(examples: int, job_seed: int, shapes: bool = False, budget: float = 0) -> tuple[int, dict | None]:
    """Check ``examples`` inputs; return how many ran and the shrunk failure, if any."""
    count = 0
    last_failure: dict | None = None

    @seed(job_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.generate,) if shapes else (Phase.generate, Phase.shrink),  # a shape re-run costs seconds
        suppress_health_check=list(HealthCheck),
    )
    @given(policy_strategies.hostile_shapes(SHAPE_SCALE) if shapes else policy_strategies.any_policy_text())
    def fuzz(drawn: str | policy_strategies.Shape) -> None:
        nonlocal count, last_failure
        count += 1
        if count % (10 if shapes else 10_000) == 0:
            print(f"  seed {job_seed}: {count:,} inputs", flush=True)
        try:
            if isinstance(drawn, str):
                policy_strategies.check_input(drawn)
            else:
                check_shape_within(drawn, budget)
        except Exception as exc:
            # Hypothesis replays the shrunk input last, so this ends as the minimal one.
            last_failure = {
                "input": drawn,
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
    if isinstance(failure["input"], policy_strategies.Shape):
        return save_shape(failure)
    digest = hashlib.sha1(failure["input"].encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = REGRESSIONS / f"fuzz-{digest}.json"
    record = {"input": failure["input"], "error": failure["error"], "found_by": "fuzz/fuzz_policies.py"}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")  # ASCII: surrogates escaped
    return path


def save_shape(failure: dict) -> Path:
    """A failing shape is large: it is kept outside the replayed regressions, to be cut down by hand."""
    shape = failure["input"]
    digest = hashlib.sha1(repr(shape).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = ROOT / "fuzz" / "failures" / f"shape-{digest}.json"
    path.parent.mkdir(exist_ok=True)
    record = {"kind": shape.kind, "policy": shape.policy, "manifest": shape.manifest, "error": failure["error"]}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="inputs in all (default 100,000)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="job i uses seed SEED+i (default 0)")
    parser.add_argument("--shapes", action="store_true", help="draw hostile shapes (large inputs) instead")
    parser.add_argument("--budget", type=float, default=30.0, help="CPU seconds per shape (default 30)")
    args = parser.parse_args()

    per_job = -(-args.examples // args.jobs)
    started = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.starmap(run_job, [(per_job, args.seed + i, args.shapes, args.budget) for i in range(args.jobs)])
    elapsed = time.perf_counter() - started
    total = sum(count for count, _ in results)
    failures = [failure for _, failure in results if failure]
    for failure in failures:
        print(failure["trace"], file=sys.stderr)
        print(
            f"failing input {str(failure['input'])[:200]!r} saved as {save(failure).relative_to(ROOT)}", file=sys.stderr
        )
    print(f"{total:,} inputs in {elapsed:.0f} s, {len(failures)} failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
