"""The largest inputs policyfreeze handles, with the time and memory each takes.

Each case runs in a fresh process, which reports its wall time and its peak
resident memory (``VmHWM``): the largest policy the size limit lets through
(about 1 MiB, parsed and linted, without and with a model), a manifest near
its size limit linted, a 200,000-tensor model (on the ``meta`` device)
resolved and applied, and the hostile shapes of the same size: one line of
statements or of errors, a schedule of tens of thousands of blocks, and
glob patterns at the complexity cap against long names. The figures are reported for information (no goal:
they are absolute on a shared machine) and recorded in ``docs/errors.md``
("Resources").

    python bench/bench_resources.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure

ROOT = Path(__file__).resolve().parent.parent

#: Prints the child's peak memory; VmHWM, not ru_maxrss, which a forked child inherits.
PEAK = "import re\nprint(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n"


def run(script: str) -> tuple[float, int]:
    """Seconds and peak KiB of a fresh Python process running ``script`` (a command must not fail)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script + PEAK], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "exit 2" in done.stdout:
        raise RuntimeError(done.stdout + done.stderr)
    return elapsed, int(done.stdout.split()[-1])


def up_to_the_limit(line: Callable[[int], str]) -> str:
    """``line(0)``, ``line(1)``… for as long as the text stays just under the 1 MiB policy limit."""
    from policyfreeze.language.source import MAX_SOURCE_BYTES

    lines, size, index = [], 0, 0
    while size + len(next_line := line(index)) <= MAX_SOURCE_BYTES - 64:
        lines.append(next_line)
        size += len(next_line)
        index += 1
    return "".join(lines)


def largest_policy(directory: Path) -> Path:
    """A valid policy just under the 1 MiB limit: about 44,000 statements naming resnet18's modules."""
    names = ["conv1", "bn1", "layer1.0.conv1", "layer2.1.bn2", "layer3.0.downsample.0", "layer4.1.conv2", "fc"]
    text = up_to_the_limit(lambda i: f"{'freeze' if i % 2 else 'unfreeze'} {names[i % len(names)]}\n")
    path = directory / "largest.freeze"
    path.write_text(text + "unfreeze fc\neval type(BatchNorm2d)\n")
    return path


def largest_manifest(directory: Path, parameters: int) -> Path:
    """A manifest of a flat model: 1,000 blocks of ``parameters // 1,000`` parameters each."""
    per_block = parameters // 1_000
    modules = [
        {
            "name": "",
            "classes": ["Wide"],
            "children": [f"block{b}" for b in range(1_000)],
        }
    ]
    params = []
    for b in range(1_000):
        modules.append(
            {"name": f"block{b}", "classes": ["Linear"], "parameters": [f"weight{p}" for p in range(per_block)]}
        )
        params += [
            {"name": f"block{b}.weight{p}", "shape": [8, 8], "dtype": "float32", "requires_grad": True}
            for p in range(per_block)
        ]
    document = {
        "format": "policyfreeze-manifest",
        "version": 1,
        "model": "wide",
        "modules": modules,
        "parameters": params,
    }
    path = directory / "wide.manifest.json"
    path.write_text(json.dumps(document))
    return path


def largest_schedule(directory: Path) -> Path:
    """``at epoch N { unfreeze layerK }`` blocks to just under the 1 MiB limit."""
    blocks = up_to_the_limit(lambda i: f"at epoch {i + 1} {{ unfreeze layer{(i + 1) % 4 + 1} }}\n")
    path = directory / "schedule.freeze"
    path.write_text("freeze all\nunfreeze fc\n" + blocks)
    return path


def long_names_manifest(directory: Path, names: int, length: int) -> Path:
    """A manifest of ``names`` modules with names of ``length`` pseudo-random 'a'/'b', a parameter each."""
    state, children = 1, []
    for i in range(names):
        letters = []
        for _ in range(length):
            state = (state * 1103515245 + 12345) % 2**31
            letters.append("ab"[state >> 16 & 1])
        children.append(f"m{i}" + "".join(letters))
    document = {
        "format": "policyfreeze-manifest",
        "version": 1,
        "model": "long-names",
        "modules": [{"name": "", "classes": ["Module"], "children": children}]
        + [{"name": child, "classes": ["Linear"], "parameters": ["weight"]} for child in children],
        "parameters": [
            {"name": f"{child}.weight", "shape": [1, 1], "dtype": "float32", "requires_grad": True}
            for child in children
        ],
    }
    path = directory / "long-names.manifest.json"
    path.write_text(json.dumps(document))
    return path


def script_figure(label: str, script: str) -> Figure:
    """The time and peak memory of ``script`` in a fresh process, reported."""
    seconds, peak = run(script)
    return Figure(label, f"{seconds:.1f} s, peak {peak / 1024:.0f} MiB", "reported", None)


def command_figure(label: str, *args: str) -> Figure:
    """The time and peak memory of ``policyfreeze ARGS`` (its findings are the point, not its status)."""
    return script_figure(label, f"from policyfreeze.cli import main\nprint('exit', main({list(args)!r}))\n")


def hostile_figures(directory: Path, resnet18: Path) -> list[Figure]:
    """The shapes that once took memory or time without bound, each as large as the limits allow."""
    statements = directory / "one-line.freeze"
    statements.write_text(up_to_the_limit(lambda _: "freeze fc;") + "\n")
    errors = directory / "one-line-errors.freeze"
    errors.write_text(up_to_the_limit(lambda _: "freeze children[::0];") + "\n")
    schedule = largest_schedule(directory)
    blocks = schedule.read_text().count("at epoch")
    names = long_names_manifest(directory, 1_000, 3_000)
    globs = directory / "costly-globs.freeze"
    globs.write_text("".join(f'freeze "{pattern}"\n' for pattern in COSTLY_GLOBS))
    figures = [
        command_figure(
            f"[6] lint one line of {statements.stat().st_size // 10:,} statements 'freeze fc;' with --manifest",
            "lint",
            str(statements),
            "--manifest",
            str(resnet18),
        ),
        command_figure(
            f"[6] lint one line of {errors.stat().st_size // 21:,} syntax errors 'freeze children[::0];'",
            "lint",
            str(errors),
        ),
        command_figure(
            f"[6] lint a schedule of {blocks:,} blocks ({schedule.stat().st_size:,} bytes) with --manifest",
            "lint",
            str(schedule),
            "--manifest",
            str(resnet18),
        ),
        command_figure(
            f"[6] lint {len(COSTLY_GLOBS)} globs at the complexity cap against 1,000 names of 3,000 characters "
            f"({names.stat().st_size / 2**20:.0f} MiB manifest)",
            "lint",
            str(globs),
            "--manifest",
            str(names),
        ),
    ]
    figures.append(
        command_figure(
            f"[6] plan the {blocks:,}-block schedule on resnet18 (built, every stage in the timeline)",
            "plan",
            str(schedule),
            "--model",
            "torchvision:resnet18",
            "--no-cache",
        )
    )
    return figures


#: Globs near the 1,000-instruction cap of the costliest shapes known (docs/errors.md, "Bounded time").
COSTLY_GLOBS = ("*a" * 90 + "*b", "*" + "a" * 800 + "b" + "?" * 9, "*" + "ab" * 450 + "c")


def main() -> list[Figure]:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        policy = largest_policy(directory)
        statements = policy.read_text().count("\n")
        resnet18 = directory / "resnet18.json"
        manifest_script = (
            "import torchvision\n"
            "from policyfreeze.model.manifest import from_tree\n"
            "from policyfreeze.model.walk import tree_of\n"
            f"open({str(resnet18)!r}, 'w').write(from_tree(tree_of(torchvision.models.resnet18())).to_json())\n"
        )
        subprocess.run([sys.executable, "-c", manifest_script], cwd=ROOT, check=True)
        manifest = largest_manifest(directory, 600_000)
        small = directory / "probe.freeze"
        small.write_text("freeze all\nunfreeze block999\n")
        return [
            command_figure(
                f"[6] lint the largest policy ({policy.stat().st_size:,} bytes, {statements:,} statements), no model",
                "lint",
                str(policy),
            ),
            command_figure(
                "[6] lint the largest policy against resnet18's manifest",
                "lint",
                str(policy),
                "--manifest",
                str(resnet18),
            ),
            *hostile_figures(directory, resnet18),
            command_figure(
                "[6] lint a 2-statement policy against a manifest of 600,000 tensors "
                f"({manifest.stat().st_size / 2**20:.0f} MiB)",
                "lint",
                str(small),
                "--manifest",
                str(manifest),
            ),
            script_figure(
                "[6] build on meta and apply the 12-statement policy to a 200,000-tensor model",
                "import sys\n"
                f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
                "import moe, policyfreeze\n"
                "model = moe.build(200_000)\n"
                "policyfreeze.apply(model, moe.MIXED)\n",
            ),
        ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)
