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


def test_fmt_in_place_refuses_a_fifo_instead_of_hanging(tmp_path):
    fifo = tmp_path / "policy.freeze"
    os.mkfifo(fifo)  # no writer: reading it would wait for one forever
    done = subprocess.run(
        [sys.executable, "-m", "policyfreeze", "fmt", str(fifo)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert f"{fifo}: not a regular file: use --check, --diff or '-'" in done.stderr


def test_fmt_in_place_refuses_a_pipe():
    """``fmt <(printf ...)``: the formatted text has nowhere to go, so it is not reported as written."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"freeze   all\n")
    os.close(write_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "policyfreeze", "fmt", f"/dev/fd/{read_end}"],
            capture_output=True,
            text=True,
            timeout=30,
            pass_fds=(read_end,),
        )
    finally:
        os.close(read_end)
    assert done.returncode == 2
    assert "not a regular file" in done.stderr and "reformatted" not in done.stderr


def test_fmt_writes_in_place_by_rename_keeping_the_permission_bits(tmp_path):
    path = tmp_path / "p.freeze"
    path.write_text("freeze   all\n")
    path.chmod(0o640)
    link = tmp_path / "link.freeze"
    link.symlink_to(path)
    before = path.stat().st_ino
    assert main(["fmt", str(link)]) == 0
    assert link.is_symlink() and path.read_text() == "freeze all\n"
    assert path.stat().st_ino != before  # a new file renamed over the old: a reader sees one or the other
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.freeze", "p.freeze"]


def test_fmt_that_fails_part_way_leaves_the_policy_whole(tmp_path):
    """A file-size limit stops the write after 1,000 bytes, as a full disk would."""
    path = tmp_path / "p.freeze"
    data = "".join(f"freeze   layer{i}\n" for i in range(200)).encode()
    assert len(data) > 2_000
    path.write_bytes(data)
    code = (
        "import resource, signal, sys\n"
        "from policyfreeze.cli import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        f"sys.exit(main(['fmt', {str(path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot write" in done.stderr
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["p.freeze"]  # no temporary file left
