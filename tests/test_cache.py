"""The model-tree cache: a cached run prints what a built run prints, imports no torch, ignores and rebuilds
any entry it cannot trust, is keyed by what defines the model, and survives concurrent writers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import transformers

from policyfreeze import __version__
from policyfreeze import cache as user_cache
from policyfreeze.cli import main
from policyfreeze.language import grammar
from policyfreeze.model import cache
from policyfreeze.model.loader import parse_spec
from policyfreeze.model.manifest import parse

ROOT = Path(__file__).parent.parent
POLICIES = ROOT / "policies"
PROBE = POLICIES / "resnet18-linear-probe.freeze"
BITFIT = POLICIES / "bitfit.freeze"
SCHEDULED = ROOT / "tests" / "lint_corpus" / "schedule-stages.freeze"
RESNET = "torchvision:resnet18"
CONSOLE_SCRIPT = Path(sys.executable).parent / "policyfreeze"


def run(argv: list, capsys) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def entries(directory: Path) -> list[Path]:
    return sorted((directory / "manifests").glob("*"))


def entry_of(spec: str) -> cache.Entry:
    found = cache.entry(parse_spec(spec), __version__)
    assert found is not None
    return found


# --- a cached run is the built run ---------------------------------------------------------

SPECS = {
    # spec → (a policy, names to explain)
    RESNET: (PROBE, ["fc.weight", "layer1"]),
    "timm:resnet18,num_classes=10": (PROBE, ["fc.bias", "layer4.1"]),
    "hf:bert:BertForSequenceClassification,num_hidden_layers=2": (BITFIT, ["classifier.weight", "bert.pooler"]),
}


def command_lines(spec: str) -> list[list]:
    policy, names = SPECS[spec]
    return [
        *(["plan", policy, "--model", spec, "--format", f] for f in ("text", "json", "markdown", "tree")),
        ["plan", SCHEDULED, "--model", spec, "--epoch", "5"],
        ["plan", SCHEDULED, "--model", spec, "--step", "1"],  # the policy counts epochs: a usage error
        ["explain", policy, "--model", spec, *names],
        ["explain", policy, "--model", spec, "no.such.name"],
        ["diff", PROBE, BITFIT, "--model", spec, "--format", "json"],
        ["diff", PROBE, BITFIT, "--model", spec],
        *(["lint", POLICIES, "--model", spec, "--format", f] for f in ("text", "json")),
        ["lint", POLICIES, "--model", spec, "--strict"],
        ["manifest", "--model", spec],
    ]


@pytest.mark.parametrize("spec", SPECS)
def test_cached_runs_print_exactly_what_built_runs_print(spec: str, capsys, model_cache: Path) -> None:
    built = [run([*argv, "--no-cache"], capsys) for argv in command_lines(spec)]
    assert not (model_cache / "manifests").exists()  # --no-cache neither reads nor writes a model
    run(["manifest", "--model", spec], capsys)
    assert len(entries(model_cache)) == 1
    cached = [run(argv, capsys) for argv in command_lines(spec)]
    for argv, before, after in zip(command_lines(spec), built, cached):
        assert after == before, argv
    assert len(entries(model_cache)) == 1
    assert {status for status, _, _ in built} >= {0, 1, 2}


def test_the_cache_is_read_and_no_cache_bypasses_it(capsys, model_cache: Path, tmp_path: Path) -> None:
    """An entry is what the command uses (here a planted one, for another model), unless --no-cache."""
    (tmp_path / "tiny.py").write_text(
        "from torch import nn\n\ndef tiny():\n    return nn.Sequential(nn.Linear(2, 2))\n"
    )
    _, planted, _ = run(["manifest", "--model", f"{tmp_path / 'tiny.py'}:tiny"], capsys)
    planted = planted.replace(f'"model": "{tmp_path / "tiny.py"}:tiny"', f'"model": "{RESNET}"')
    place(entry_of(RESNET), planted)
    _, out, _ = run(["manifest", "--model", RESNET], capsys)
    assert out == planted
    _, out, _ = run(["manifest", "--model", RESNET, "--no-cache"], capsys)
    assert '"layer4.1.bn2.bias"' in out
    assert read_text(entry_of(RESNET)).endswith(planted)  # --no-cache wrote nothing either


def test_a_cached_run_needs_no_model_library(capsys, model_cache: Path) -> None:
    for spec in (RESNET, "hf:bert,num_hidden_layers=1", "timm:resnet18"):
        assert run(["manifest", "--model", spec], capsys)[0] == 0
    # As if none of them were installed: sys.modules[name] = None makes importing it fail.
    code = (
        "import sys\n"
        "sys.modules.update(dict.fromkeys(['torch', 'torchvision', 'timm', 'transformers']))\n"
        "from policyfreeze.cli import main\n"
        "for spec in ('torchvision:resnet18', 'hf:bert,num_hidden_layers=1', 'timm:resnet18'):\n"
        f"    assert main(['plan', {str(PROBE)!r}, '--model', spec, '--format', 'tree']) in (0, 1)\n"
        f"    assert main(['explain', {str(PROBE)!r}, '--model', spec, 'fc']) in (0, 2)\n"
        f"    assert main(['diff', {str(PROBE)!r}, {str(BITFIT)!r}, '--model', spec]) == 0\n"
        f"    assert main(['lint', {str(PROBE)!r}, '--model', spec]) in (0, 1)\n"
        "    assert main(['manifest', '--model', spec]) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "needs torch" not in done.stderr and "install" not in done.stderr


# --- entries that cannot be trusted ------------------------------------------------------------


def read_text(found: cache.Entry) -> str:
    return found.path.read_text(encoding="utf-8")


def place(found: cache.Entry, manifest_text: str, header: dict | None = None) -> None:
    found.path.parent.mkdir(parents=True, exist_ok=True)
    found.path.write_text(cache._line(header or found.header) + "\n" + manifest_text, encoding="utf-8")


def with_key(found: cache.Entry, **changes) -> dict:
    return {**found.header, "key": {**found.header["key"], **changes}}


CORRUPTIONS = {
    # name → the bytes to leave in the entry, from the entry and its valid bytes
    "empty": lambda found, valid: b"",
    "truncated": lambda found, valid: valid[: len(valid) // 2],
    "truncated header": lambda found, valid: valid[:20],
    "header only": lambda found, valid: valid.split(b"\n", 1)[0] + b"\n",
    "garbage": lambda found, valid: bytes(range(256)) * 8,
    "not UTF-8": lambda found, valid: b"\xff\xfe" + valid,
    "deep nesting": lambda found, valid: valid.split(b"\n", 1)[0] + b"\n" + b"[" * 100_000,
    "a manifest without the header": lambda found, valid: valid.split(b"\n", 1)[1],
    "other torch version": lambda found, valid: swap_header(
        found, valid, packages={"torch": "0.0.1", "torchvision": "0"}
    ),
    "other policyfreeze version": lambda found, valid: swap_header(found, valid, policyfreeze="0.0.0"),
    "other walk": lambda found, valid: swap_header(found, valid, walk="0" * 64),
    "foreign format": lambda found, valid: valid.replace(b'"format":"policyfreeze-model-cache"', b'"format":"x"', 1),
    "newer entry version": lambda found, valid: valid.replace(b'"version":1}', b'"version":2}', 1),
    "another model's manifest": lambda found, valid: valid.replace(
        b'"model": "torchvision:resnet18"', b'"model": "torchvision:resnet50"'
    ),
    "newer manifest version": lambda found, valid: valid.replace(b' "version": 1,', b' "version": 2,', 1),
    "inconsistent manifest": lambda found, valid: valid.replace(b'"layer4",', b'"layer5",', 1),
    "invalid manifest": lambda found, valid: valid.replace(b'"shape": [', b'"shape": [-1, ', 1),
}


def swap_header(found: cache.Entry, valid: bytes, **changes) -> bytes:
    return (cache._line(with_key(found, **changes)) + "\n").encode() + valid.split(b"\n", 1)[1]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_an_entry_that_cannot_be_trusted_is_ignored_and_rebuilt(corruption: str, capsys, model_cache: Path) -> None:
    argv = ["plan", PROBE, "--model", RESNET, "--format", "json"]
    expected = run(argv, capsys)  # builds and caches
    found = entry_of(RESNET)
    valid = found.path.read_bytes()
    broken = CORRUPTIONS[corruption](found, valid)
    assert broken != valid
    found.path.write_bytes(broken)
    assert cache.read(found) is None
    assert run(argv, capsys) == expected  # no error, no note: the model is built again
    assert found.path.read_bytes() == valid  # and the entry rewritten
    assert cache.read(found) is not None


def test_an_unusable_entry_or_cache_directory_is_never_an_error(
    capsys, model_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    argv = ["plan", PROBE, "--model", RESNET]
    expected = run([*argv, "--no-cache"], capsys)
    entry_of(RESNET).path.mkdir(parents=True)  # a directory where the entry should be
    assert run(argv, capsys) == expected
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(user_cache.CACHE_DIR_VARIABLE, str(tmp_path / "a-file" / "cache"))  # cannot be created
    assert run(argv, capsys) == expected


@pytest.mark.parametrize("planted", ["fifo", "oversized"])
def test_a_planted_fifo_or_an_oversized_entry_is_passed_over(planted: str, tmp_path: Path) -> None:
    """Neither waits for a writer nor reads without end: the entry is treated as absent."""
    path = tmp_path / "entry.json"
    if planted == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as file:
            file.truncate(user_cache.MAX_ENTRY_BYTES + 1)  # sparse: no disk used
    assert user_cache.read_entry(path) is None
    path.unlink()
    path.write_bytes(b"{}")
    assert user_cache.read_entry(path) == b"{}"


def test_the_parser_cache_passes_over_a_planted_fifo(tmp_path: Path) -> None:
    path = tmp_path / "parser.json"
    os.mkfifo(path)
    assert grammar._cached(path, {}) is None


# --- the key ------------------------------------------------------------------------------------


def test_the_key_holds_the_spec_the_package_versions_and_the_project() -> None:
    found = entry_of("torchvision:resnet18,num_classes=10")
    key = found.header["key"]
    assert key["spec"] == "torchvision:resnet18,num_classes=10"
    assert key["packages"] == {"torch": metadata.version("torch"), "torchvision": metadata.version("torchvision")}
    assert key["policyfreeze"] == __version__
    assert entry_of("timm:resnet18").header["key"]["packages"] == {
        "torch": metadata.version("torch"),
        "timm": metadata.version("timm"),
    }
    assert entry_of("hf:bert").header["key"]["packages"] == {
        "torch": metadata.version("torch"),
        "transformers": metadata.version("transformers"),
    }
    paths = {entry_of(spec).path for spec in (RESNET, "torchvision:resnet18,num_classes=10", "timm:resnet18")}
    assert len(paths) == 3


def test_user_code_is_never_cached(capsys, model_cache: Path) -> None:
    models = ROOT / "tests" / "lint_corpus" / "models.py"
    assert cache.entry(parse_spec(f"{models}:tied"), __version__) is None
    assert cache.entry(parse_spec("tests.lint_corpus.models:tied"), __version__) is None
    assert run(["plan", PROBE, "--model", f"{models}:convnet"], capsys)[0] in (0, 1)  # nothing trainable: PF205
    assert not (model_cache / "manifests").exists()


def test_an_hf_directory_is_keyed_by_its_config(tmp_path: Path, capsys, model_cache: Path) -> None:
    def write(layers: int) -> None:
        config = transformers.AutoConfig.for_model(
            "bert", num_hidden_layers=layers, hidden_size=32, intermediate_size=64, num_attention_heads=2
        )
        (tmp_path / "tiny").mkdir(exist_ok=True)
        (tmp_path / "tiny" / "config.json").write_text(config.to_json_string())

    spec = f"hf:{tmp_path / 'tiny'}"
    write(2)
    digest = entry_of(spec).header["key"]["config"]
    assert digest == hashlib.sha256((tmp_path / "tiny" / "config.json").read_bytes()).hexdigest()
    _, two, _ = run(["manifest", "--model", spec], capsys)
    write(3)
    _, three, _ = run(["manifest", "--model", spec], capsys)
    assert '"encoder.layer.2.output.dense.weight"' in three and "encoder.layer.2." not in two
    assert len(entries(model_cache)) == 2


def test_an_hf_checkpoint_is_keyed_by_its_cached_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert cache.entry(parse_spec("hf:org/name"), __version__) is None  # not on this machine: built, and refused
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "hub" / "models--org--name" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--name" / "refs" / "main").write_text("0123abcd")
    key = entry_of("hf:org/name").header["key"]
    assert key["config"] == hashlib.sha256(b'{"model_type": "bert"}').hexdigest()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({user_cache.CACHE_DIR_VARIABLE: "{tmp}/mine"}, "{tmp}/mine"),
        ({user_cache.CACHE_DIR_VARIABLE: "", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/policyfreeze"),
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/policyfreeze"),
        ({"XDG_CACHE_HOME": "relative"}, "{tmp}/home/.cache/policyfreeze"),  # the XDG spec: ignored
        ({}, "{tmp}/home/.cache/policyfreeze"),
    ],
)
def test_the_cache_directory(variables: dict, expected: str, tmp_path: Path, monkeypatch) -> None:
    for name in (user_cache.CACHE_DIR_VARIABLE, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert user_cache.directory() == Path(expected.format(tmp=tmp_path))


# --- concurrent writers ---------------------------------------------------------------------------

WRITER = """
import sys, time
from policyfreeze import __version__
from policyfreeze import cache as user_cache
from policyfreeze.model import cache
from policyfreeze.model.loader import parse_spec
from policyfreeze.model.manifest import parse

role, start, spec, *texts = sys.argv[1:]
found = cache.entry(parse_spec(spec), __version__)
manifests = [parse(open(path).read()) for path in texts]
while time.time() < float(start):
    pass
if role == "writer":
    for i in range(150):
        cache.write(found, manifests[i % 2])
else:
    expected = {m.to_json() for m in manifests}
    for _ in range(600):
        got = cache.read(found)
        assert got is not None and got[0].to_json() in expected, "a reader saw a partial or foreign entry"
"""


def test_concurrent_writers_never_leave_a_partial_entry(tmp_path: Path, capsys, model_cache: Path) -> None:
    _, text, _ = run(["manifest", "--model", RESNET], capsys)
    other = text.replace('"requires_grad": true', '"requires_grad": false', 1)
    assert parse(other) != parse(text)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, content in zip(paths, (text, other)):
        path.write_text(content)
    start = str(time.time() + 2)
    roles = ["writer"] * 4 + ["reader"] * 2
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, role, start, RESNET, *map(str, paths)], stderr=subprocess.PIPE)
        for role in roles
    ]
    failures = [p.stderr.read().decode() for p in processes if p.wait() != 0]
    assert failures == []
    found = entry_of(RESNET)
    assert cache.read(found) is not None
    assert [p.name for p in entries(model_cache)] == [found.path.name]  # no temporary file left behind


def test_commands_started_together_on_an_empty_cache(tmp_path: Path, model_cache: Path) -> None:
    processes = [
        subprocess.Popen(
            [str(CONSOLE_SCRIPT), "manifest", "--model", RESNET], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [(p.communicate(), p.returncode) for p in processes]
    assert [code for _, code in results] == [0, 0], [err for (_, err), _ in results]
    outputs = {out for (out, _), _ in results}
    assert len(outputs) == 1
    found = entry_of(RESNET)
    assert read_text(found).split("\n", 1)[1] == outputs.pop().decode()
    assert [p.name for p in entries(model_cache)] == [found.path.name]
    assert json.loads(read_text(found).split("\n", 1)[0]) == found.header
    assert os.listdir(model_cache) == ["manifests"]
