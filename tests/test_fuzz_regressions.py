"""Every input that once crashed policyfreeze, replayed (tests/regressions/*.json).

The fuzz harness (fuzz/fuzz_policies.py) adds a file here for each failure it
finds; inputs found by hand carry the code they must now be reported with
(``"code": null``: the input is a valid policy) and, where the old help was
misleading, a word it must no longer contain.
"""

import json
from pathlib import Path

import pytest
from policy_strategies import check_input

from policyfreeze import PolicyError, parse

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))


def test_there_are_regressions():
    assert REGRESSIONS


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda path: path.stem)
def test_regression(path):
    record = json.loads(path.read_text(encoding="utf-8"))
    check_input(record["input"])
    if "code" not in record:
        return
    if record["code"] is None:
        parse(record["input"])
        return
    with pytest.raises(PolicyError) as info:
        parse(record["input"])
    assert info.value.code == record["code"]
    if "help_excludes" in record:
        assert record["help_excludes"] not in (info.value.help or "")
