"""Inputs are read once (pipes and FIFOs have no second reading) and fmt never writes a policy that breaks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from policyfreeze import PolicyUsageError
from policyfreeze.cli import main
from policyfreeze.language import fmt as fmt_module
from policyfreeze.language.fmt import fmt


def write_once(path, data: bytes) -> threading.Thread:
    def writer() -> None:
        with open(path, "wb") as fifo:
            fifo.write(data)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("args", "status", "expected"),
    [
        (["fmt", "--check"], 0, "1 file already formatted"),
        (["fmt", "--diff"], 0, ""),
        (["lint"], 0, "All checks passed"),
    ],
)
def test_a_fifo_written_once_is_read_once(tmp_path, args, status, expected):
    fifo = tmp_path / "policy.freeze"
    os.mkfifo(fifo)
    thread = write_once(fifo, b"freeze all\n")
    done = subprocess.run(
        [sys.executable, "-m", "policyfreeze", *args, str(fifo)], capture_output=True, text=True, timeout=60
    )
    thread.join(timeout=5)
    assert done.returncode == status, done.stderr
    assert expected in done.stdout + done.stderr
    assert "would reformat" not in done.stdout + done.stderr


def test_fmt_refuses_to_write_a_policy_past_the_size_limit(monkeypatch):
    # Statements in a block gain four spaces of indent: valid as written, too long once formatted.
    monkeypatch.setattr(fmt_module, "MAX_SOURCE_BYTES", 1_000)
    text = "at epoch 1{" + "freeze a;" * 100 + "}\n"
    assert len(text.encode()) <= 1_000
    with pytest.raises(PolicyUsageError, match="over the 1,000-byte limit"):
        fmt(text)


def test_fmt_refuses_on_the_command_line_and_leaves_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fmt_module, "MAX_SOURCE_BYTES", 1_000)
    path = tmp_path / "wide.freeze"
    data = ("at epoch 1{" + "freeze a;" * 100 + "}\n").encode()
    path.write_bytes(data)
    assert main(["fmt", str(path)]) == 2
    assert "so it would no longer load: left as it is" in capsys.readouterr().err
    assert path.read_bytes() == data
