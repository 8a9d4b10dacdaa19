"""The largest inputs policyfreeze handles, with the time and memory each takes.

Each case runs in a fresh process, which reports its wall time and its peak
resident memory (``VmHWM``): the largest policy the size limit lets through
(about 1 MiB, parsed and linted, without and with a model), a manifest near
its size limit linted, and a 200,000-tensor model (on the ``meta`` device)
resolved and applied. The figures are reported for information (no goal:
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


def largest_policy(directory: Path) -> Path:
    """A valid policy just under the 1 MiB limit: about 44,000 statements naming resnet18's modules."""
    from policyfreeze.language.source import MAX_SOURCE_BYTES

    names = ["conv1", "bn1", "layer1.0.conv1", "layer2.1.bn2", "layer3.0.downsample.0", "layer4.1.conv2", "fc"]
    lines, size, index = [], 0, 0
    while True:
        line = f"{'freeze' if index % 2 else 'unfreeze'} {names[index % len(names)]}\n"
        if size + len(line) > MAX_SOURCE_BYTES - 64:
            break
        lines.append(line)
        size += len(line)
        index += 1
    path = directory / "largest.freeze"
    path.write_text("".join(lines) + "unfreeze fc\neval type(BatchNorm2d)\n")
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


def main() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        policy = largest_policy(directory)
        statements = policy.read_text().count("\n")
        size = policy.stat().st_size
        seconds, peak = run(f"from policyfreeze.cli import main\nprint('exit', main(['lint', {str(policy)!r}]))\n")
        figures.append(
            Figure(
                f"[6] lint the largest policy ({size:,} bytes, {statements:,} statements), no model",
                f"{seconds:.1f} s, peak {peak / 1024:.0f} MiB",
                "reported",
                None,
            )
        )
        manifest_script = (
            "import torchvision\n"
            "from policyfreeze.model.manifest import from_tree\n"
            "from policyfreeze.model.walk import tree_of\n"
            f"open({str(directory / 'resnet18.json')!r}, 'w').write("
            "from_tree(tree_of(torchvision.models.resnet18())).to_json())\n"
        )
        subprocess.run([sys.executable, "-c", manifest_script], cwd=ROOT, check=True)
        seconds, peak = run(
            "from policyfreeze.cli import main\n"
            f"print('exit', main(['lint', {str(policy)!r}, '--manifest', {str(directory / 'resnet18.json')!r}]))\n"
        )
        figures.append(
            Figure(
                "[6] lint the largest policy against resnet18's manifest",
                f"{seconds:.1f} s, peak {peak / 1024:.0f} MiB",
                "reported",
                None,
            )
        )
        manifest = largest_manifest(directory, 600_000)
        small = directory / "probe.freeze"
        small.write_text("freeze all\nunfreeze block999\n")
        seconds, peak = run(
            f"from policyfreeze.cli import main\nprint('exit', main(['lint', {str(small)!r}, '--manifest', {str(manifest)!r}]))\n"
        )
        figures.append(
            Figure(
                f"[6] lint a 2-statement policy against a manifest of 600,000 tensors ({manifest.stat().st_size / 2**20:.0f} MiB)",
                f"{seconds:.1f} s, peak {peak / 1024:.0f} MiB",
                "reported",
                None,
            )
        )
        seconds, peak = run(
            "import sys\n"
            f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
            "import moe, policyfreeze\n"
            "model = moe.build(200_000)\n"
            "policyfreeze.apply(model, moe.MIXED)\n"
        )
        figures.append(
            Figure(
                "[6] build on meta and apply the 12-statement policy to a 200,000-tensor model",
                f"{seconds:.1f} s, peak {peak / 1024:.0f} MiB",
                "reported",
                None,
            )
        )
    return figures


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)
