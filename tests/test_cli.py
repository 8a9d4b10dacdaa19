"""The command line: exit codes, stdin, every command and format, colour, help, pre-commit hooks."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from policy_library import header_specs

from policyfreeze import __version__
from policyfreeze.cli import COMMANDS, build_parser, main
from policyfreeze.cli.common import use_color

ROOT = Path(__file__).parent.parent
CORPUS = ROOT / "tests" / "lint_corpus"
POLICIES = ROOT / "policies"
PROBE = POLICIES / "resnet18-linear-probe.freeze"
RESNET = "torchvision:resnet18"
CONVNET = f"{CORPUS / 'models.py'}:convnet"
TIED = f"{CORPUS / 'models.py'}:tied"


def run(argv: list[str], capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def policy(tmp_path: Path):
    def write(text: str, name: str = "p.freeze") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --- exit codes ------------------------------------------------------------------------

EXIT_CASES = [
    # (argv, exit code)
    (["lint", CORPUS / "clean.freeze"], 0),
    (["lint", POLICIES], 0),
    (["lint", CORPUS / "multiple-errors.freeze"], 1),
    (["lint", CORPUS / "pf101-not-utf8.freeze"], 1),
    (["lint", CORPUS / "pf201-selects-nothing.freeze", "--model", RESNET], 0),  # warnings
    (["lint", CORPUS / "pf201-selects-nothing.freeze", "--model", RESNET, "--strict"], 1),
    (["lint", CORPUS / "pf201-selects-nothing.freeze", "--model", RESNET, "--strict", "--ignore", "PF2"], 0),
    (["lint", CORPUS / "pf201-selects-nothing.freeze", "--model", RESNET, "--strict", "--select", "PF205"], 0),
    (["lint", CORPUS / "pf205-nothing-trainable.freeze", "--model", RESNET], 1),
    (["lint", CORPUS / "pf205-nothing-trainable.freeze", "--model", RESNET, "--ignore", "PF205"], 0),
    (["lint", CORPUS / "pf207-integer.freeze", "--model", f"{CORPUS / 'models.py'}:quantized"], 1),
    (["lint", CORPUS / "missing.freeze"], 2),
    (["lint", CORPUS / "missing.freeze", CORPUS / "multiple-errors.freeze"], 2),  # I/O beats findings
    (["lint"], 2),
    (["lint", PROBE, "--format", "xml"], 2),
    (["lint", PROBE, "--select", "PF999"], 2),
    (["lint", PROBE, "--select", "E501"], 2),
    (["lint", PROBE, "--ignore", "PF101"], 2),
    (["lint", PROBE, "--ignore", "PF1"], 2),
    (["lint", PROBE, "--ignore", "PF"], 2),
    (["lint", PROBE, "--model", "no-colon"], 2),
    (["lint", PROBE, "--model", "torchvision:nonet"], 2),
    (["lint", PROBE, "--model", RESNET, "--manifest", "m.json"], 2),
    (["lint", "-", "-"], 2),
    (["fmt", "--check", CORPUS / "clean.freeze"], 0),
    (["fmt", "--check", CORPUS / "noqa.freeze"], 1),  # a selection over two lines
    (["fmt", "--check", CORPUS / "multiple-errors.freeze"], 1),
    (["fmt", "--check", CORPUS / "missing.freeze"], 2),
    (["plan", PROBE, "--model", RESNET], 0),
    (["plan", CORPUS / "pf207-integer.freeze", "--model", f"{CORPUS / 'models.py'}:quantized"], 1),
    (["plan", CORPUS / "multiple-errors.freeze", "--model", RESNET], 1),
    (["plan", PROBE], 2),
    (["plan", PROBE, "--model", RESNET, "--epoch", "1", "--step", "1"], 2),
    (["plan", CORPUS / "schedule-stages.freeze", "--model", RESNET, "--step", "1"], 2),  # it counts epochs
    (["explain", PROBE, "--model", RESNET, "fc.weight"], 0),
    (["explain", PROBE, "--model", RESNET, "fc.wieght"], 2),
    (["diff", PROBE, POLICIES / "bitfit.freeze", "--model", RESNET], 0),
    (["diff", "-", "-", "--model", RESNET], 2),
    (["manifest"], 2),
    (["manifest", "--schema"], 0),
    (["nonsense"], 2),
    ([], 2),
    (["--version"], 0),
]


@pytest.mark.parametrize(
    ("argv", "expected"), EXIT_CASES, ids=lambda v: " ".join(map(str, v)) if isinstance(v, list) else None
)
def test_exit_code(argv, expected: int, capsys) -> None:
    status, out, err = run(argv, capsys)
    assert status == expected, err
    assert "Traceback" not in out + err


def test_usage_errors_say_what_and_where_to_look(capsys) -> None:
    status, _, err = run(["lint", PROBE, "--format", "xml"], capsys)
    assert err.startswith("policyfreeze: error: lint: argument --format: invalid choice: 'xml'")
    assert "see 'policyfreeze lint --help'" in err
    _, _, err = run(["lint", PROBE, "--ignore", "PF101"], capsys)
    assert "(PF101–PF106) cannot be ignored" in err
    _, _, err = run(["lint", PROBE, "--select", "PF999"], capsys)
    assert "unknown code 'PF999'" in err


def test_every_file_is_linted_even_after_a_missing_one(capsys) -> None:
    status, out, err = run(["lint", CORPUS / "missing.freeze", CORPUS / "multiple-errors.freeze"], capsys)
    assert "missing.freeze: no such file" in err
    assert out.count("multiple-errors.freeze:") == 4


def test_version(capsys) -> None:
    assert run(["--version"], capsys)[1] == f"policyfreeze {__version__}\n"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_an_example(command: str, capsys) -> None:
    status, out, _ = run([command, "--help"], capsys)
    assert status == 0
    assert re.search(rf"examples?:\n  policyfreeze {command} ", out)


#: the reader's manifests that lint's help examples name, and the model each is written from
HELP_MANIFESTS = {"resnet18.manifest.json": RESNET}


def test_lint_examples_in_the_help_pass(capsys, monkeypatch, tmp_path) -> None:
    """Every lint command a --help shows, run as shown (globs expanded, '> FILE' dropped), exits 0."""
    helps = [run([*command, "--help"], capsys)[1] for command in ([], *([name] for name in COMMANDS))]
    examples = {line.strip() for text in helps for line in text.splitlines() if line.startswith("  policyfreeze lint ")}
    assert len(examples) >= 3
    monkeypatch.chdir(ROOT)
    for example in sorted(examples):
        words = shlex.split(example.partition(">")[0])
        if "|" in words:  # reads stdin from another program
            continue
        argv = [name for word in words[1:] for name in (sorted(glob.glob(word)) if "*" in word else [word])]
        if "--manifest" in argv:
            at = argv.index("--manifest") + 1
            manifest = tmp_path / argv[at]
            assert run(["manifest", "--model", HELP_MANIFESTS[argv[at]], "-o", manifest], capsys)[0] == 0
            argv[at] = str(manifest)
        status, out, err = run(argv, capsys)
        assert status == 0, (example, out, err)


def test_top_level_help_lists_every_command(capsys) -> None:
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    for name in COMMANDS:
        assert name in out


# --- lint -------------------------------------------------------------------------------


def test_lint_reads_stdin_under_the_given_name(capsys, monkeypatch) -> None:
    argv = ["lint", "-", "--stdin-filename", "policies/new.freeze"]
    status, out, _ = run(argv, capsys, stdin=b"freeze all\nunfrezee fc\n", monkeypatch=monkeypatch)
    assert status == 1
    assert out.startswith("policies/new.freeze:2:1: PF101 unknown word 'unfrezee'")
    status, out, _ = run(["lint", "-"], capsys, stdin=b"freeze all\n", monkeypatch=monkeypatch)
    assert (status, out) == (0, "All checks passed (1 file).\n")


def test_lint_directories_recursively_in_order(tmp_path: Path, capsys) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.freeze").write_text("freeze all with lr=1\n")
    (tmp_path / "a.freeze").write_text("freeze (\n")
    (tmp_path / "notes.txt").write_text("freeze (\n")
    status, out, _ = run(["lint", tmp_path], capsys)
    assert status == 1
    files = re.findall(r"^(\S+?):\d+:\d+:", out, re.MULTILINE)
    assert files == [str(tmp_path / "a.freeze"), str(tmp_path / "b" / "z.freeze")]


def test_lint_of_an_empty_directory_warns(tmp_path: Path, capsys) -> None:
    status, out, err = run(["lint", tmp_path], capsys)
    assert status == 0
    assert "no .freeze files in" in err


def test_lint_json_document(capsys) -> None:
    status, out, _ = run(
        ["lint", CORPUS / "pf205-nothing-trainable.freeze", "--model", RESNET, "--format", "json"], capsys
    )
    document = json.loads(out)
    assert status == 1
    assert document["counts"] == {"files": 1, "findings": 3, "error": 1, "warning": 2, "info": 0}
    assert [f["code"] for f in document["findings"]] == ["PF202", "PF206", "PF205"]


def test_lint_github_annotations(capsys) -> None:
    status, out, _ = run(["lint", CORPUS / "pf204-tied.freeze", "--model", TIED, "--format", "github"], capsys)
    assert status == 0
    conflict, deciding = out.splitlines()
    assert conflict.startswith(f"::warning file={CORPUS / 'pf204-tied.freeze'},line=2,col=1,endColumn=11,title=PF204")
    assert deciding.startswith(f"::warning file={CORPUS / 'pf204-tied.freeze'},line=3,col=1,endColumn=15,title=PF208")
    status, out, _ = run(["lint", CORPUS / "clean.freeze", "--format", "github"], capsys)
    assert (status, out) == (0, "")


def test_lint_sarif_uris_are_relative_to_the_repository(capsys, monkeypatch) -> None:
    monkeypatch.chdir(CORPUS)  # inside the repository, below its root
    status, out, _ = run(["lint", "multiple-errors.freeze", "--format", "sarif"], capsys)
    log = json.loads(out)
    locations = [r["locations"][0]["physicalLocation"] for r in log["runs"][0]["results"]]
    assert status == 1
    assert {loc["artifactLocation"]["uri"] for loc in locations} == {"tests/lint_corpus/multiple-errors.freeze"}
    assert locations[0]["region"] == {"startLine": 2, "startColumn": 16, "endLine": 2, "endColumn": 21}


def test_lint_builds_on_the_cpu_when_the_meta_device_cannot(capsys) -> None:
    model = f"{CORPUS / 'models.py'}:needs_data"
    status, out, err = run(["lint", CORPUS / "clean.freeze", "--model", model], capsys)
    assert "cannot be built on the meta device (RuntimeError" in err
    assert "built it on the CPU instead" in err
    # Still linted: the policy names ResNet modules this model lacks, so nothing is left to train.
    assert status == 1
    assert "PF201" in out and "PF205" in out


# --- colour -------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value disables colour
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(tty: bool, env: dict, expected: bool, monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert use_color(FakeTTY() if tty else io.StringIO()) is expected


def test_lint_output_is_coloured_on_a_terminal_only(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = FakeTTY()
    monkeypatch.setattr(sys, "stdout", terminal)
    main(["lint", str(CORPUS / "multiple-errors.freeze")])
    assert "\x1b[1;31mPF103\x1b[0m" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = FakeTTY()
    monkeypatch.setattr(sys, "stdout", terminal)
    main(["lint", str(CORPUS / "multiple-errors.freeze")])
    assert "\x1b[" not in terminal.getvalue()


# --- fmt ------------------------------------------------------------------------------------


def test_fmt_rewrites_files_and_reports(policy, capsys) -> None:
    messy = policy("freeze all;unfreeze fc\n")
    tidy = policy("freeze all\n", "tidy.freeze")
    status, out, err = run(["fmt", messy, tidy], capsys)
    assert (status, out) == (0, "")
    assert err == "1 file reformatted, 1 file left unchanged\n"
    assert messy.read_text() == "freeze all\nunfreeze fc\n"
    assert run(["fmt", "--check", messy], capsys)[0] == 0


def test_fmt_check_and_diff_change_nothing(policy, capsys) -> None:
    messy = policy("freeze all;unfreeze fc\n")
    status, out, err = run(["fmt", "--check", messy], capsys)
    assert (status, out) == (1, f"would reformat {messy}\n")
    assert err == "1 file would be reformatted, 0 files already formatted\n"
    status, out, _ = run(["fmt", "--diff", messy], capsys)
    assert status == 1
    assert out.splitlines() == [
        f"--- {messy}",
        f"+++ {messy} (formatted)",
        "@@ -1 +1,2 @@",
        "-freeze all;unfreeze fc",
        "+freeze all",
        "+unfreeze fc",
    ]
    assert messy.read_text() == "freeze all;unfreeze fc\n"


def test_fmt_normalises_line_endings_and_bom(policy, capsys) -> None:
    crlf = policy("\ufefffreeze all\r\n")
    assert run(["fmt", "--check", crlf], capsys)[0] == 1
    run(["fmt", crlf], capsys)
    assert crlf.read_bytes() == b"freeze all\n"


def test_fmt_stdin_to_stdout(capsys, monkeypatch) -> None:
    status, out, _ = run(["fmt", "-"], capsys, stdin=b"freeze a;freeze b", monkeypatch=monkeypatch)
    assert (status, out) == (0, "freeze a\nfreeze b\n")
    status, out, _ = run(["fmt", "--check", "-"], capsys, stdin=b"freeze a\n", monkeypatch=monkeypatch)
    assert (status, out) == (0, "")


def test_fmt_reports_a_policy_error_and_goes_on(policy, capsys) -> None:
    broken = policy("freeze (\n", "broken.freeze")
    messy = policy("freeze a;freeze b\n")
    status, _, err = run(["fmt", broken, messy], capsys)
    assert status == 1
    assert f"{broken}:1:8: PF101" in err
    assert messy.read_text() == "freeze a\nfreeze b\n"


# --- plan, explain, diff -----------------------------------------------------------------------

CONVNET_POLICY = "freeze all\nunfreeze head, bn.bias\neval bn\n"


def test_plan_tree(policy, capsys) -> None:
    status, out, _ = run(["plan", policy(CONVNET_POLICY), "--model", CONVNET, "--format", "tree"], capsys)
    assert status == 0
    assert out == (
        "ConvNet                           partial                   14 of 146 trainable\n"
        "├── conv (Conv2d)                 frozen                    112\n"
        "├── bn (BatchNorm2d) [eval]       partial, trainable: bias  4 of 8 trainable\n"
        "├── bn_batch_stats (BatchNorm2d)  frozen                    8\n"
        "├── inorm (InstanceNorm2d)        frozen                    8\n"
        "└── head (Linear)                 trainable                 10\n"
    )


def test_plan_tree_collapses_alike_siblings(capsys, policy) -> None:
    status, out, _ = run(
        ["plan", policy("freeze layer1, layer2, layer3\n"), "--model", RESNET, "--format", "tree"], capsys
    )
    assert "├── layer1 … layer3 (3 × Sequential)" in out
    assert len(out.splitlines()) == 9


def test_plan_tree_counts_a_shared_module_in_each_subtree_and_once_in_the_total(policy, capsys) -> None:
    shared = f"{ROOT / 'tests' / 'models.py'}:shared"
    status, out, _ = run(["plan", policy("unfreeze all\nfreeze a\n"), "--model", shared, "--format", "tree"], capsys)
    assert out.splitlines() == [
        "Shared          partial    6 of 12 trainable",
        "├── a (Linear)  frozen     6",
        "├── b (Linear)  frozen     6",
        "└── c (Linear)  trainable  6",
    ]


def test_plan_markdown(policy, capsys) -> None:
    status, out, _ = run(["plan", policy(CONVNET_POLICY), "--model", CONVNET, "--format", "markdown"], capsys)
    assert status == 0
    assert out.startswith("### policyfreeze plan: `")
    assert "| trainable | 146 | 14 | -132 (-90.4%) |" in out
    assert "| `conv.weight` | 4×3×3×3 | 108 | trainable → frozen | `freeze all` (" in out
    assert "| `bn` | follows train() → pinned eval | `eval bn` (" in out


def test_plan_json_and_text(capsys) -> None:
    status, out, _ = run(["plan", PROBE, "--model", RESNET, "--format", "json"], capsys)
    assert json.loads(out)["summary"]["trainable"] == {"before": 11689512, "after": 513000}
    status, out, _ = run(["plan", PROBE, "--model", RESNET], capsys)
    assert "trainable: 513,000 parameters (4.4%) in 2 tensors\n  fc (Linear)" in out
    status, out, _ = run(["plan", PROBE, "--model", RESNET, "--format", "table"], capsys)
    assert "changed (60):" in out


def test_plan_of_a_scheduled_policy_at_an_epoch(capsys) -> None:
    argv = ["plan", CORPUS / "schedule-stages.freeze", "--model", RESNET, "--format", "json"]
    at0 = json.loads(run(argv, capsys)[1])["summary"]["trainable"]["after"]
    at2 = json.loads(run([*argv, "--epoch", "2"], capsys)[1])["summary"]["trainable"]["after"]
    assert (at0, at2) == (513000, 513000 + 8393728)


def test_plan_warns_on_stderr(policy, capsys) -> None:
    status, _, err = run(["plan", policy("freeze layer9\n"), "--model", RESNET], capsys)
    assert status == 0
    assert "warning: " in err and "PF201" in err


def test_explain_parameter_and_module(policy, capsys) -> None:
    path = policy("freeze all\nunfreeze embed\nfreeze body.bias\n")
    status, out, _ = run(["explain", path, "--model", TIED, "head.weight", "body"], capsys)
    assert status == 0
    assert out == (
        "head.weight: parameter 10×4 float32 (the same tensor as embed.weight)\n"
        "  trainable as built → trainable\n"
        f"  {path}:1:1  freeze all\n"
        f"  {path}:2:1  unfreeze embed  ← decides\n"
        "\n"
        "body: Linear, 2 parameter tensors\n"
        "  all 2 trainable as built → all 2 frozen\n"
        "  mode: follows train()/eval()\n"
        f"  {path}:1:1  freeze all  (reaches 2, decides 1)\n"
        f"  {path}:3:1  freeze body.bias  (reaches 1, decides 1)\n"
    )


def test_explain_unknown_name_suggests(capsys) -> None:
    status, _, err = run(["explain", PROBE, "--model", RESNET, "fc.wieght"], capsys)
    assert status == 2
    assert "'fc.wieght' is neither a parameter nor a module of this model; did you mean 'fc.weight'?" in err


def test_diff_from_stdin(capsys, monkeypatch) -> None:
    old = PROBE.read_bytes()
    argv = ["diff", "-", POLICIES / "bitfit.freeze", "--model", RESNET, "--stdin-filename", "main:probe.freeze"]
    status, out, _ = run(argv, capsys, stdin=old, monkeypatch=monkeypatch)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"main:probe.freeze → {POLICIES / 'bitfit.freeze'}: 21 parameter tensors change state"
    assert lines[1] == "trainable parameters: 513,000 → 5,800 (-507,200) of 11,689,512"
    assert "  fc.weight" in out and "trainable → frozen" in out


def test_diff_json_and_markdown(policy, capsys) -> None:
    old = policy("freeze all\nunfreeze head with lr=1e-3\n", "old.freeze")
    new = policy("freeze all\nunfreeze head with lr=1e-4\neval bn\n", "new.freeze")
    status, out, _ = run(["diff", old, new, "--model", CONVNET, "--format", "json"], capsys)
    document = json.loads(out)
    assert (document["version"], document["unit"], document["differ_at"]) == (2, None, [0])
    [stage] = document["stages"]
    assert stage["requires_grad"] == []
    assert [(c["name"], c["old"], c["new"]) for c in stage["options"]] == [
        ("head.weight", "lr=0.001", "lr=0.0001"),
        ("head.bias", "lr=0.001", "lr=0.0001"),
    ]
    assert [(c["name"], c["old"], c["new"]) for c in stage["pins"]] == [("bn", False, True)]
    status, out, _ = run(["diff", old, new, "--model", CONVNET, "--format", "markdown"], capsys)
    assert (
        "**no parameter changes state; optimizer options differ for 2 tensors; eval pins differ for 1 module**" in out
    )
    assert "| `head.weight` | lr=0.001 → lr=0.0001 |" in out


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_to_stdout_and_file(tmp_path: Path, capsys) -> None:
    status, out, _ = run(["manifest", "--model", CONVNET], capsys)
    assert status == 0
    document = json.loads(out)
    assert [m["name"] for m in document["modules"]] == ["", "conv", "bn", "bn_batch_stats", "inorm", "head"]
    target = tmp_path / "m.json"
    assert run(["manifest", "--model", CONVNET, "-o", target], capsys)[1] == ""
    assert target.read_text() == out


# --- pre-commit hooks ----------------------------------------------------------------------------


def read_hooks() -> list[dict[str, str]]:
    """The hooks of .pre-commit-hooks.yaml (a flat list of string maps: no YAML library needed)."""
    hooks: list[dict[str, str]] = []
    for line in (ROOT / ".pre-commit-hooks.yaml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"(- |  )(\w+): (.*)", line)
        assert match, line
        if match.group(1) == "- ":
            hooks.append({})
        value = match.group(3)
        hooks[-1][match.group(2)] = value[1:-1] if value[:1] == "'" else value
    return hooks


def test_pre_commit_hooks_are_declared() -> None:
    hooks = {hook["id"]: hook for hook in read_hooks()}
    assert set(hooks) == {"policyfreeze-lint", "policyfreeze-fmt"}
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert re.search(hook["files"], "policies/a.freeze")
        assert not re.search(hook["files"], "policies/a.freeze.bak")


@pytest.mark.parametrize(
    ("hook_id", "text", "expected_status", "rewritten"),
    [
        ("policyfreeze-lint", "freeze all\nunfreeze fc\n", 0, None),
        ("policyfreeze-lint", "freeze all\nunfrezee fc\n", 1, None),
        ("policyfreeze-fmt", "freeze all\nunfreeze fc\n", 0, "freeze all\nunfreeze fc\n"),
        ("policyfreeze-fmt", "freeze all;unfreeze fc", 0, "freeze all\nunfreeze fc\n"),
    ],
)
def test_pre_commit_hook_entries_run(hook_id: str, text: str, expected_status: int, rewritten, tmp_path: Path) -> None:
    """Run each hook's entry as pre-commit would: the entry, then the matching file names."""
    hook = next(h for h in read_hooks() if h["id"] == hook_id)
    path = tmp_path / "p.freeze"
    path.write_text(text)
    executable = shutil.which("policyfreeze", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    assert executable, "the policyfreeze console script is installed"
    entry = hook["entry"].split()
    result = subprocess.run([executable, *entry[1:], str(path)], capture_output=True, text=True)
    assert result.returncode == expected_status, result.stderr
    if rewritten is not None:
        assert path.read_text() == rewritten  # pre-commit fails the hook when a file changed


def test_parser_builds() -> None:
    assert build_parser().prog == "policyfreeze"


# --- every command on every policy in policies/ -------------------------------------------------


@pytest.mark.parametrize(
    "path", [p for p in sorted(POLICIES.glob("*.freeze")) if RESNET in header_specs(p)], ids=lambda p: p.name
)
def test_every_command_works_on_the_shipped_policies(path: Path, capsys) -> None:
    """The policies written for resnet18 (the others are checked against their models in test_own_checks.py)."""
    assert run(["lint", path], capsys)[0] == 0
    assert run(["lint", path, "--model", RESNET], capsys)[0] == 0  # warnings and info only
    for fmt in ("text", "json", "markdown", "tree"):
        assert run(["plan", path, "--model", RESNET, "--format", fmt], capsys)[0] == 0
    assert run(["explain", path, "--model", RESNET, "fc.weight", "layer1", "bn1"], capsys)[0] == 0
    assert run(["diff", PROBE, path, "--model", RESNET, "--format", "markdown"], capsys)[0] == 0
    assert run(["fmt", "--check", path], capsys)[0] in (0, 1)


def test_a_file_name_too_long_is_an_io_error(capsys):
    assert main(["lint", "a" * 5000 + ".freeze"]) == 2
    out, err = capsys.readouterr()
    assert "File name too long" in err
    assert "internal error" not in err
    assert out.strip() == "No findings (0 files; 1 could not be read)."


ENTRY_POINT_PROCESS = """
import importlib.util, os, sys
from policyfreeze.cli import _import_lark_without_regex
_import_lark_without_regex()
import lark.utils
has_regex = importlib.util.find_spec("regex") is not None
if has_regex:
    import regex  # still importable for whoever needs it (transformers does)
print(lark.utils._has_regex, has_regex)
"""


def test_the_executable_hides_regex_from_lark_only() -> None:
    done = subprocess.run([sys.executable, "-c", ENTRY_POINT_PROCESS], capture_output=True, text=True, check=True)
    lark_has_regex, installed = done.stdout.split()
    assert (lark_has_regex, installed) == ("False", "True")  # the dev environment has regex (transformers)


@pytest.mark.parametrize("user_setting", [None, ""])
def test_the_executable_lints_with_an_empty_cache_and_keeps_the_users_pydantic_setting(tmp_path, user_setting) -> None:
    env = {**os.environ, "POLICYFREEZE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    if user_setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = user_setting
    probe = "import os, runpy, sys; sys.argv = ['policyfreeze', 'lint', 'policies/'];"
    probe += "import atexit; atexit.register(lambda: print(repr(os.environ['PYDANTIC_DISABLE_PLUGINS'])));"
    probe += "runpy.run_module('policyfreeze', run_name='__main__')"
    for _ in range(2):  # the first run builds the parser without regex and caches it; the second loads it
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        assert "All checks passed" in done.stdout
        assert done.stdout.splitlines()[-1] == repr(user_setting if user_setting is not None else "__all__")
    assert list((tmp_path / "cache" / "parsers").glob("*.json"))
