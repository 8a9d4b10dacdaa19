"""Errors stay cheap however many there are: positions share the source, messages show a window, lint caps them."""

from __future__ import annotations

import json
import subprocess
import sys

from policyfreeze.cli import main
from policyfreeze.lint.output import MAX_FINDINGS_PER_FILE

# VmHWM, not ru_maxrss: a child forked from the (large) test process inherits the parent's maxrss.
PEAK_MEMORY = (
    "import contextlib, io, re, sys\n"
    "from policyfreeze.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    main(['lint', sys.argv[1]])\n"
    "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n"
)


def peak_kib(path) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_memory_grows_with_the_input_not_with_errors_times_line_length(tmp_path):
    """Every error on one long line: four times the errors (and the line) costs about four times the memory.

    Each error used to copy the whole line: memory grew with the square of the line (16x here).
    """
    sizes = {}
    for count in (0, 3000, 12000):
        path = tmp_path / f"errors-{count}.freeze"
        path.write_text("freeze children[::0];" * count + "freeze all\n")
        sizes[count] = peak_kib(path)
    small, large = sizes[3000] - sizes[0], sizes[12000] - sizes[0]
    assert small > 0 and large / small < 7, sizes


def test_lint_shows_the_first_findings_of_a_file_and_counts_the_rest(tmp_path, capsys):
    path = tmp_path / "many.freeze"
    count = MAX_FINDINGS_PER_FILE + 40
    path.write_text("freeze children[::0];" * count + "\n")
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("PF103 slice step cannot be zero") == MAX_FINDINGS_PER_FILE
    assert f"… and 40 more findings in {path}" in out
    assert out.rstrip().endswith(
        f"Found {MAX_FINDINGS_PER_FILE} findings ({MAX_FINDINGS_PER_FILE} errors) in 1 file; 40 more not shown."
    )
    assert main(["lint", str(path), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert len(document["findings"]) == MAX_FINDINGS_PER_FILE
    assert document["omitted"] == {str(path): 40}


def test_a_snippet_of_a_long_line_is_a_window_around_the_caret(tmp_path):
    from policyfreeze import PolicyError, parse

    text = "freeze " + ", ".join(f"layer{i}" for i in range(20_000)) + ", children[::0]\n"
    try:
        parse(text)
    except PolicyError as exc:
        rendered = str(exc)
    assert len(rendered) < 600
    assert "…" in rendered and "children[::0]" in rendered
