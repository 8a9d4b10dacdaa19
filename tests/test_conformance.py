"""The language conformance suite: every case in tests/conformance/*.json.

Each case names a model (tests/models.py), a policy, optionally the stage
("epoch", "step" or "phase"), and either the expected final state of *every*
parameter with the statement that decided it, or the expected error (code,
line, column). Statement numbers count the statements in force, 1-based;
"rest" stands for every parameter no other entry lists and "frozen" for the
case's expected frozen set. Parameters are named as the spec names them: on
a PEFT model, without the wrapper's prefix and the ``base_layer.`` segment.
"""

import json
import warnings
from pathlib import Path

import pytest
from models import FACTORIES

import policyfreeze
from policyfreeze import PolicyError

CASE_DIR = Path(__file__).parent / "conformance"


def _cases():
    cases = []
    for path in sorted(CASE_DIR.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for case in suite["cases"]:
            case.setdefault("model", suite.get("model"))
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


def _fresh_model(case):
    model = FACTORIES[case["model"]]()
    params = dict(zip(_names(model), model.parameters()))
    for name in case.get("initially_frozen", []):
        params[name].requires_grad_(False)
    return model


def _stage(case):
    return {key: case[key] for key in ("epoch", "step", "phase") if key in case}


def _names(model) -> list[str]:
    """``named_parameters()``'s names as the spec (§6.5) has them: a PeftModel's ``base_model.model.``
    prefix and its adapter layers' ``base_layer.`` segment are part of no name."""
    names = [name for name, _ in model.named_parameters()]
    if not type(model).__module__.startswith("peft."):
        return names
    return [name.removeprefix("base_model.model.").replace(".base_layer.", ".") for name in names]


def _flags(model) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in zip(_names(model), model.parameters())}


def _expected_frozen(case, names):
    if "trainable" in case:
        return set(names) - set(case["trainable"])
    return set(case["frozen"])


def _expected_deciders(case, names, frozen):
    deciders = dict.fromkeys(names)
    rest = None
    for ordinal, listed in case["decided_by"].items():
        if listed == "rest":
            rest = int(ordinal)
            continue
        for name in sorted(frozen) if listed == "frozen" else listed:
            assert name in deciders, f"case lists unknown parameter {name}"
            deciders[name] = int(ordinal)
    if rest is not None:
        listed = {
            n
            for group in case["decided_by"].values()
            if group not in ("rest",)
            for n in (sorted(frozen) if group == "frozen" else group)
        }
        for name in names:
            if name not in listed:
                deciders[name] = rest
    return deciders


@pytest.mark.parametrize("case", _cases())
def test_conformance(case):
    model = _fresh_model(case)
    before = _flags(model)

    if "error" in case:
        expected = case["error"]
        with pytest.raises(PolicyError) as info:
            policyfreeze.resolve(model, case["policy"], **_stage(case))
        error = info.value
        assert (error.code, error.line, error.column) == (expected["code"], expected["line"], expected["column"])
        if "help" in expected:
            assert error.help == expected["help"]
        with pytest.raises(PolicyError):
            policyfreeze.apply(model, case["policy"], **_stage(case))
        assert _flags(model) == before
        return

    plan = policyfreeze.resolve(model, case["policy"], **_stage(case))
    names = _names(model)
    frozen = _expected_frozen(case, names)
    assert list(plan.requires_grad) == names
    assert plan.requires_grad == {n: n not in frozen for n in names}
    assert _flags(model) == before, "resolve must not mutate"

    statements = plan.policy.stage(plan.at)
    ordinal = {(s.span.line, s.span.column): i for i, s in enumerate(statements, start=1)}
    actual = {n: (ordinal[(d.line, d.column)] if d else None) for n, d in plan.decisions.items()}
    assert actual == _expected_deciders(case, names, frozen)

    assert sorted(w.code for w in plan.warnings) == sorted(case.get("warnings", []))
    if "warning_help" in case:
        assert plan.warnings[0].help == case["warning_help"]

    if not _stage(case):
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            policyfreeze.apply(model, case["policy"])
        assert _flags(model) == plan.requires_grad
