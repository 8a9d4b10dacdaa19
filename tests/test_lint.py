"""The linter: each model-aware check, noqa, code selection, stages, and the no-torch start-up."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import models
import pytest
import torchvision
from hypothesis import HealthCheck, given, settings
from policy_strategies import policies

from policyfreeze.language.grammar import Comment
from policyfreeze.language.source import Source
from policyfreeze.lint import RULES, filter_codes, lint
from policyfreeze.lint.checks import CHECKS
from policyfreeze.lint.linter import Finding, noqa_lines
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of

ROOT = Path(__file__).parent.parent


def _load_corpus_models():
    # By path and under its own name: tests/models.py is imported as "models" elsewhere.
    path = Path(__file__).parent / "lint_corpus" / "models.py"
    spec = importlib.util.spec_from_file_location("lint_corpus_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus_models = _load_corpus_models()


@pytest.fixture(scope="module")
def trees() -> dict[str, ModelTree]:
    import torch

    with torch.device("meta"):
        resnet = torchvision.models.resnet18()
    return {
        "resnet18": tree_of(resnet),
        "tied": tree_of(corpus_models.tied()),
        "quantized": tree_of(corpus_models.quantized()),
        "convnet": tree_of(corpus_models.convnet()),
        "shared": tree_of(models.shared()),  # one Linear registered as a and b
    }


def found(text: str, tree: ModelTree | None) -> list[tuple[str, int]]:
    return [(f.code, f.line) for f in lint(Source("p.freeze", text), tree)]


# (model, policy, expected (code, line) findings in order)
CHECK_CASES = [
    # PF201: nothing selected, for parameters and for modules.
    ("resnet18", "freeze all\nunfreeze fc\nunfreeze layer5", [("PF206", 1), ("PF201", 3)]),
    ("resnet18", "eval type(BatchNorm3d)", [("PF201", 1)]),
    ("resnet18", "freeze relu", [("PF201", 1)]),  # a module with no parameter: no parameter selected
    ("resnet18", "eval relu", []),
    # PF202: dead only when every reached parameter is decided later.
    ("resnet18", "freeze layer4\nfreeze all\nunfreeze layer4, fc", [("PF202", 1), ("PF206", 2)]),
    ("resnet18", "freeze layer4\nunfreeze layer4.0\nfreeze conv1", [("PF206", 1)]),  # layer4.1's BatchNorms
    ("resnet18", "eval bn1\ntrain bn1", [("PF202", 1)]),
    # PF203: against the model as built and the statements before.
    ("resnet18", "unfreeze fc", [("PF203", 1)]),
    ("resnet18", "unfreeze fc with lr=0.1", []),
    ("resnet18", "freeze fc\nfreeze fc.bias", [("PF203", 2)]),
    ("resnet18", "freeze fc\nunfreeze fc with lr=1\nunfreeze fc with lr=1", [("PF202", 1), ("PF202", 2), ("PF203", 3)]),
    ("resnet18", "freeze fc\nunfreeze fc with lr=1\nunfreeze fc with lr=2", [("PF202", 1), ("PF202", 2)]),
    ("resnet18", "train layer1", [("PF203", 1)]),
    ("resnet18", "eval layer1\neval layer1.0", [("PF203", 2)]),
    # PF204: one tensor, two names, decided differently.
    # The statement that decides such a tensor against another name's statement is PF208's too.
    ("tied", "freeze all\nunfreeze embed", [("PF204", 1), ("PF208", 2)]),
    ("tied", "freeze embed\nunfreeze head", [("PF202", 1), ("PF204", 1), ("PF208", 2)]),  # one tensor: decided again
    ("tied", "unfreeze embed\nfreeze head", [("PF202", 1), ("PF203", 1), ("PF204", 1), ("PF208", 2)]),
    ("tied", "freeze all\nunfreeze embed, head", []),
    # PF208: one name of a tied tensor selected; the other selected by no statement or last the other way.
    ("tied", "freeze embed", [("PF208", 1)]),
    ("tied", "freeze all except (head, body)", [("PF208", 1)]),
    ("tied", "freeze embed, head", []),
    ("tied", "freeze embed\nfreeze head", [("PF202", 1), ("PF203", 2)]),  # both names, the same way
    ("tied", "freeze embed\nunfreeze all except embed", [("PF202", 1), ("PF204", 1), ("PF208", 2)]),
    ("shared", "unfreeze b", [("PF203", 1), ("PF208", 1)]),  # a shared module's parameters: one finding
    ("shared", "freeze all\nunfreeze a", [("PF204", 1), ("PF208", 2)]),  # one each for both tensors of the module
    # PF205: nothing left to train (not for a model without parameters to begin with).
    ("resnet18", "freeze all\neval type(BatchNorm2d)", [("PF205", 1)]),
    ("resnet18", "freeze all except fc\nfreeze fc\neval type(BatchNorm2d)", [("PF205", 2)]),
    # PF206: frozen norm layers with running statistics, not pinned.
    ("convnet", "freeze bn", [("PF206", 1)]),
    ("convnet", "freeze bn_batch_stats", []),
    ("convnet", "freeze bn.weight", []),  # bias still trains
    ("convnet", "freeze bn\neval bn", []),
    ("convnet", "freeze inorm", [("PF206", 1)]),
    ("convnet", "eval bn\nfreeze bn\ntrain bn", [("PF202", 1), ("PF206", 2)]),
    # PF207: an integer parameter.
    ("quantized", "unfreeze all", [("PF207", 1)]),
    ("quantized", "unfreeze table\nfreeze table", [("PF202", 1)]),
    ("quantized", "freeze table", [("PF203", 1)]),  # frozen as built
]


@pytest.mark.parametrize(("model", "policy", "expected"), CHECK_CASES)
def test_check(trees, model: str, policy: str, expected) -> None:
    assert found(policy, trees[model]) == expected


def test_tied_conflicts_between_two_statements_are_one_finding(trees) -> None:
    [finding] = [f for f in lint(Source("p.freeze", "freeze all\nunfreeze a"), trees["shared"]) if f.code == "PF204"]
    assert finding.message == (
        "'freeze all' freezes 2 tied parameters (b.weight, b.bias), but they are the same tensors as "
        "a.weight, a.bias, which the later 'unfreeze a' (line 2) unfreezes: they end up trainable"
    )


def test_every_model_aware_code_has_a_check() -> None:
    assert set(CHECKS) == {code for code in RULES if code.startswith("PF2")}
    assert all(rule.needs_model == code.startswith("PF2") for code, rule in RULES.items())


def test_without_a_model_only_syntax_and_validation(trees) -> None:
    assert found("freeze layer9", None) == []
    assert found("freeze layer9 with lr=1", None) == [("PF105", 1)]


def test_every_syntax_and_validation_error_is_reported() -> None:
    text = "freeze children[::0]\nunfreeze fc with lr_rate=0.1\nfreeze match /(a/\nfreeze all with lr=1\n"
    assert found(text, None) == [("PF103", 1), ("PF104", 2), ("PF102", 3), ("PF105", 4)]


def test_finding_region_covers_a_statement_over_several_lines(trees) -> None:
    [finding] = lint(Source("p.freeze", "unfreeze (layer8,\n   layer9)  # a comment\n"), trees["resnet18"])
    assert (finding.code, finding.line, finding.column, finding.end_line, finding.end_column) == ("PF201", 1, 1, 2, 11)


# --- schedules --------------------------------------------------------------------

SCHEDULE = """\
freeze all
unfreeze fc
unfreeze layer9
at epoch 2 {
    eval type(BatchNorm2d)
}
at epoch 5 {
    train type(BatchNorm2d)
    freeze fc
}
"""


def test_schedule_stage_findings_name_their_stages_and_appear_once(trees) -> None:
    findings = list(lint(Source("p.freeze", SCHEDULE), trees["resnet18"]))
    summary = [(f.code, f.line, f.stages) for f in findings]
    assert summary == [
        ("PF206", 1, (0, 5)),  # frozen, unpinned BatchNorm before epoch 2 and again from epoch 5
        ("PF201", 3, ()),  # a statement property: once, whatever the stage
        ("PF205", 9, ()),  # only stage 5 has this statement: no stage to name
    ]
    assert findings[0].message.endswith("(at epochs 0 and 5)")


def test_dead_statement_is_judged_in_its_own_stage(trees) -> None:
    # At epoch 3 every parameter 'freeze layer4' reached is unfrozen again: that is the schedule working.
    text = "freeze all\nunfreeze fc\neval type(BatchNorm2d)\nat epoch 3 { unfreeze all }"
    assert found(text, trees["resnet18"]) == []


# --- noqa ---------------------------------------------------------------------------

NOQA_CASES = [
    ("# noqa", None),
    ("#noqa", None),
    ("# NOQA", None),
    ("# noqa: PF201", frozenset({"PF201"})),
    ("# noqa:PF201,PF203", frozenset({"PF201", "PF203"})),
    ("# noqa: pf201 PF203", frozenset({"PF201", "PF203"})),
    ("# why this is fine  # noqa: PF202", frozenset({"PF202"})),
    ("# noqa: PF202 (reason)", frozenset({"PF202"})),
    ("# noqa: PF201  # noqa: PF203", frozenset({"PF201", "PF203"})),
    ("# noqa: PF201  # noqa", None),
    ("# noqa  # noqa: PF201", None),
    ("# noqa:", "absent"),  # no code after the colon: silences nothing
    ("# noqaa", "absent"),
    ("# a comment", "absent"),
]


@pytest.mark.parametrize(("text", "expected"), NOQA_CASES)
def test_noqa_comment(text: str, expected) -> None:
    lines = noqa_lines([Comment(3, 1, 0, text)])
    assert lines.get(3, "absent") == expected


def test_noqa_silences_only_model_findings(trees) -> None:
    # A syntax or validation error cannot be silenced: the policy would not load.
    assert found("freeze all with lr=1  # noqa", trees["resnet18"]) == [("PF105", 1)]
    assert found("freeze layer9  # noqa", trees["resnet18"]) == []


# --- --select / --ignore --------------------------------------------------------------


def _finding(code: str) -> Finding:
    from policyfreeze.errors import Location

    return Finding(code, RULES[code].severity, "m", Location("p", 1, 1), 1, 2)


FILTER_CASES = [
    ((), (), ["PF101", "PF201", "PF203", "PF206"]),
    (("PF2",), (), ["PF101", "PF201", "PF203", "PF206"]),
    (("PF201",), (), ["PF101", "PF201"]),
    ((), ("PF203",), ["PF101", "PF201", "PF206"]),
    (("PF2",), ("PF20",), ["PF101"]),
    (("PF206", "PF203"), (), ["PF101", "PF203", "PF206"]),
]


@pytest.mark.parametrize(("select", "ignore", "kept"), FILTER_CASES)
def test_filter_codes(select, ignore, kept) -> None:
    findings = [_finding(code) for code in ("PF101", "PF201", "PF203", "PF206")]
    assert [f.code for f in filter_codes(findings, select, ignore)] == kept


# --- start-up: no torch without a model -------------------------------------------------

NO_TORCH = """
import sys
from policyfreeze.cli import main
status = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
print("imported:", heavy)
sys.exit(status)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", "policies/"],
        ["lint", "tests/lint_corpus/multiple-errors.freeze"],
        ["fmt", "--check", "policies/resnet18-linear-probe.freeze"],
        ["manifest", "--schema"],
    ],
)
def test_lint_without_a_model_does_not_import_torch(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    assert "imported: []" in result.stdout


def test_lint_against_a_manifest_does_not_import_torch(tmp_path: Path) -> None:
    from policyfreeze.model.manifest import from_tree

    with_torch = tree_of(torchvision.models.resnet18())
    manifest = tmp_path / "resnet18.json"
    manifest.write_text(from_tree(with_torch).to_json())
    argv = ["lint", "policies/", "--manifest", str(manifest)]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], cwd=ROOT, capture_output=True, text=True)
    assert "imported: []" in result.stdout, result.stderr
    assert "PF206" in result.stdout


def test_import_policyfreeze_does_not_import_torch() -> None:
    # -X importtime lists every module imported, on stderr.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import policyfreeze, policyfreeze.cli, policyfreeze.lint"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "policyfreeze.lint.linter" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "torchvision")}


# --- properties over generated policies ---------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_lint_of_generated_policies_is_positioned_sorted_and_manifest_exact(text: str) -> None:
    from policy_strategies import fuzz_tree

    from policyfreeze.model.manifest import from_tree, to_tree

    source = Source("p.freeze", text)
    tree = fuzz_tree()
    findings = list(lint(source, tree))
    assert findings == sorted(findings, key=Finding.sort_key)
    lines = source.text.count("\n") + 1
    for f in findings:
        assert 1 <= f.line <= f.end_line <= lines
        assert f.help
    assert list(lint(source, to_tree(from_tree(tree)))) == findings
    silenced = "\n".join(line + "  # noqa" for line in source.text.split("\n"))
    assert [f.code for f in lint(Source("p.freeze", silenced), tree)] == []
