"""The fuzz harness's hostile shapes at a small scale: long lines of errors, many schedule blocks,
repeated manifest children, long names against long globs (``fuzz/fuzz_policies.py --shapes`` runs them large)."""

import pytest
from hypothesis import HealthCheck, given, settings
from policy_strategies import Shape, chain_manifest, check_shape, hostile_shapes

from policyfreeze.errors import PolicyUsageError
from policyfreeze.model import manifest as manifests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_shapes(scale=40))
def test_hostile_shapes_end_in_a_result_or_a_short_policy_error(shape):
    check_shape(shape)


def test_the_chain_manifest_is_a_valid_tree_until_a_child_repeats():
    tree = manifests.to_tree(manifests.parse(chain_manifest(3)))
    assert [name for name in tree.names if name.endswith(".weight")] == [
        "lin.weight",
        "a.lin.weight",
        "a.a.lin.weight",
        "a.a.a.lin.weight",
    ]
    with pytest.raises(PolicyUsageError, match="module 'a' lists 'a' twice"):
        manifests.to_tree(manifests.parse(chain_manifest(3, repeat_at=1)))


def test_check_shape_fails_on_a_long_message(monkeypatch):
    monkeypatch.setattr("policy_strategies.MAX_RENDERED", 10)
    with pytest.raises(AssertionError):
        check_shape(Shape("long line", "freeze children[::0];" * 500 + "\n"))


def test_check_shape_fails_when_a_manifest_error_is_not_the_expected_one():
    with pytest.raises(AssertionError):
        check_shape(Shape("schedule blocks", "freeze all\n", chain_manifest(3, repeat_at=0)))
